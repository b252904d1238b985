#include "qbench/sysnoise/colour.h"

#include <cmath>

#include "qbench/common/errors.h"

namespace qbench::sysnoise {

namespace {

inline uint8_t round_clip(double v) {
  const double r = std::floor(v + 0.5);
  return static_cast<uint8_t>(r < 0.0 ? 0.0 : (r > 255.0 ? 255.0 : r));
}

}  // namespace

Image yuv_round_trip(const Image& rgb, YuvStandard standard, YuvRange range) {
  check_image(rgb, "yuv_round_trip");
  if (rgb.channels != 3) throw Error("yuv_round_trip: needs an RGB image (3 channels), got 1 channel");
  const double kr = standard == YuvStandard::kBt601 ? 0.299 : 0.2126;
  const double kb = standard == YuvStandard::kBt601 ? 0.114 : 0.0722;
  const double kg = 1.0 - kr - kb;
  const bool limited = range == YuvRange::kLimited;
  const double y_scale = limited ? 219.0 / 255.0 : 1.0, y_offset = limited ? 16.0 : 0.0;
  const double c_scale = limited ? 224.0 / 255.0 : 1.0;
  Image out = rgb;
  for (std::size_t i = 0; i < rgb.pixels.size(); i += 3) {
    const double r = rgb.pixels[i], g = rgb.pixels[i + 1], b = rgb.pixels[i + 2];
    const double luma = kr * r + kg * g + kb * b;
    const uint8_t y8 = round_clip(y_offset + luma * y_scale);
    const uint8_t u8 = round_clip(128.0 + (b - luma) / (2.0 * (1.0 - kb)) * c_scale);
    const uint8_t v8 = round_clip(128.0 + (r - luma) / (2.0 * (1.0 - kr)) * c_scale);
    const double luma2 = (y8 - y_offset) / y_scale;
    const double cb = (u8 - 128.0) / c_scale, cr = (v8 - 128.0) / c_scale;
    const double r2 = luma2 + 2.0 * (1.0 - kr) * cr;
    const double b2 = luma2 + 2.0 * (1.0 - kb) * cb;
    const double g2 = (luma2 - kr * r2 - kb * b2) / kg;
    out.pixels[i] = round_clip(r2);
    out.pixels[i + 1] = round_clip(g2);
    out.pixels[i + 2] = round_clip(b2);
  }
  return out;
}

Image grey_to_rgb(const Image& grey) {
  check_image(grey, "grey_to_rgb");
  if (grey.channels != 1) throw Error("grey_to_rgb: needs a 1-channel image");
  Image out(grey.width, grey.height, 3);
  for (std::size_t i = 0; i < grey.pixels.size(); ++i)
    out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = grey.pixels[i];
  return out;
}

}  // namespace qbench::sysnoise
