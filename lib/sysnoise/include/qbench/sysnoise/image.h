#pragma once
// An 8-bit image as the deployment stack sees it before normalisation: rows of interleaved
// channels (HWC), 1 (grey) or 3 (RGB, in that order) channels. Torch-free on purpose, so the noise
// functions can be tested in seconds and used by any component.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qbench::sysnoise {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;             ///< 1 or 3
  std::vector<uint8_t> pixels;  ///< width * height * channels bytes, row-major, channels interleaved

  Image() = default;
  /// A zero-filled image; throws qbench::Error unless width, height > 0 and channels is 1 or 3.
  Image(int width, int height, int channels);

  std::size_t row_bytes() const { return static_cast<std::size_t>(width) * channels; }
  uint8_t& at(int x, int y, int c) { return pixels[y * row_bytes() + static_cast<std::size_t>(x) * channels + c]; }
  const uint8_t& at(int x, int y, int c) const { return pixels[y * row_bytes() + static_cast<std::size_t>(x) * channels + c]; }
};

/// Throws qbench::Error naming `what` unless the dimensions are valid and `pixels` has their size.
void check_image(const Image& image, const char* what);

/// An image file (PNG, JPEG, BMP, PPM: what cv::imread reads) as grey or RGB: a file with one
/// channel stays grey, anything else becomes RGB (alpha dropped). For fixtures and tools; the
/// decode noises go through decode_jpeg. Throws qbench::DataError when it cannot be read.
Image load_image(const std::string& path);

}  // namespace qbench::sysnoise
