#pragma once
// A camera or video pipeline hands the model RGB that went through 8-bit YUV (Y'CbCr): each
// conversion rounds to 8 bits, and limited ("studio", "TV") range squeezes 256 levels into
// 16..235 (luma) and 16..240 (chroma), so the round trip is lossy even for grey.
#include "qbench/sysnoise/image.h"

namespace qbench::sysnoise {

enum class YuvStandard {
  kBt601,  ///< Kr = 0.299,  Kb = 0.114  (SD video, JPEG/JFIF)
  kBt709,  ///< Kr = 0.2126, Kb = 0.0722 (HD video)
};

enum class YuvRange {
  kFull,     ///< Y, Cb, Cr in 0..255, chroma centred at 128 (JFIF)
  kLimited,  ///< Y in 16..235 (scale 219/255), Cb, Cr in 16..240 (scale 224/255), centred at 128
};

/// RGB -> 8-bit Y'CbCr -> RGB. With Kg = 1 - Kr - Kb and R, G, B in 0..255 (gamma-encoded, as
/// stored):
///   Y' = Kr R + Kg G + Kb B,  Cb = (B - Y') / (2 (1 - Kb)),  Cr = (R - Y') / (2 (1 - Kr));
///   full:    Y = round(Y'),                 U = round(128 + Cb),              V = round(128 + Cr)
///   limited: Y = round(16 + Y' * 219/255),  U = round(128 + Cb * 224/255),    V = round(128 + Cr * 224/255)
/// each clipped to 0..255; and back, from the 8-bit codes:
///   Y' = Y (full) or (Y - 16) * 255/219;  Cb, Cr = (U, V - 128) (full) or * 255/224;
///   R = Y' + 2 (1 - Kr) Cr,  B = Y' + 2 (1 - Kb) Cb,  G = (Y' - Kr R - Kb B) / Kg  (R, B unrounded),
/// each rounded and clipped to 0..255. round() is floor(x + 0.5), computed in double. BT.601 full
/// range is JFIF's conversion (G = Y' - 0.344136 Cb - 0.714136 Cr). Requires 3 channels: throws
/// qbench::Error on a grey image (replicate it to RGB first, as a camera pipeline would).
Image yuv_round_trip(const Image& rgb, YuvStandard standard, YuvRange range);

/// `grey` (1 channel) replicated to 3 channels.
Image grey_to_rgb(const Image& grey);

}  // namespace qbench::sysnoise
