#pragma once
// JPEG bytes in and out through libjpeg-turbo (Debian libjpeg62-turbo), so that a decode noise is
// the *same bytes* decoded differently: the delta measures the decoder, not the quality.
#include <cstdint>
#include <string>
#include <vector>

#include "qbench/sysnoise/image.h"

namespace qbench::sysnoise {

/// The decoders SysNoise compares. kIslow is the reference.
enum class Decoder {
  kIslow,         ///< libjpeg-turbo, JDCT_ISLOW (accurate integer IDCT), fancy upsampling on
  kIfast,         ///< JDCT_IFAST (the fast, less accurate integer IDCT), fancy upsampling on
  kFloat,         ///< JDCT_FLOAT (floating-point IDCT), fancy upsampling on
  kIslowNoFancy,  ///< JDCT_ISLOW with do_fancy_upsampling = FALSE (box-replicated chroma; colour only)
  kOpencv,        ///< cv::imdecode (OpenCV's own settings over whichever libjpeg it was built with)
};

/// "islow", "ifast", "float", "islow-nofancy", "opencv".
const char* decoder_name(Decoder decoder);

/// Baseline JPEG with fixed settings, so the same pixels and quality always give the same bytes:
/// quality 1..100 through jpeg_set_quality (baseline-forced tables), the standard Huffman tables
/// (no optimize_coding), sequential (not progressive), JDCT_ISLOW forward DCT, a JFIF header; a
/// grey image is one component, a colour one YCbCr with 4:2:0 chroma (luma sampled 2x2, each
/// chroma 1x1). These are libjpeg's defaults and the settings of Pillow's `save(quality=q,
/// subsampling="4:2:0")`. Throws qbench::Error on a bad image or quality.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality);

/// Decodes `bytes` to 8-bit grey (one-component JPEG) or RGB (three-component). Every decoder
/// refuses what libjpeg cannot decode cleanly: a header or scan error, and also what libjpeg only
/// warns about (truncated data, corrupt entropy data), because it would fill the gaps with grey
/// and the decoders would then be compared on made-up pixels. kOpencv first validates the bytes
/// the same way. Throws qbench::DataError, whose message starts "corrupt JPEG data: ". CMYK and
/// other component counts are refused.
Image decode_jpeg(const std::vector<uint8_t>& bytes, Decoder decoder = Decoder::kIslow);

}  // namespace qbench::sysnoise
