#pragma once
// Resizing to a model's input size, as different deployment stacks do it. The OpenCV kernels are
// cv::resize; the PIL ones are an implementation of Pillow's ImagingResample (the antialiased
// resize behind Image.resize and torchvision's PIL transforms), bit-exact against Debian's
// python3-pil (9.4) on the committed fixtures.
#include "qbench/sysnoise/image.h"

namespace qbench::sysnoise {

enum class ResizeKernel {
  kCvNearest,    ///< cv::INTER_NEAREST
  kCvBilinear,   ///< cv::INTER_LINEAR (no antialiasing: 2 taps whatever the scale)
  kCvArea,       ///< cv::INTER_AREA (pixel-area averaging on downscale)
  kCvBicubic,    ///< cv::INTER_CUBIC (a = -0.75, 4 taps, no antialiasing)
  kCvLanczos,    ///< cv::INTER_LANCZOS4 (8 taps, no antialiasing)
  kPilBilinear,  ///< Pillow BILINEAR: triangle filter, support 1 scaled by the downscale factor
  kPilBicubic,   ///< Pillow BICUBIC: cubic a = -0.5, support 2 scaled by the downscale factor
};

/// "cv-nearest", "cv-bilinear", "cv-area", "cv-bicubic", "cv-lanczos", "pil-bilinear", "pil-bicubic".
const char* resize_kernel_name(ResizeKernel kernel);

/// `image` resized to width x height with `kernel`; channels are resized independently, so RGB
/// and BGR give the same result. Throws qbench::Error on an invalid image or size.
Image resize(const Image& image, int width, int height, ResizeKernel kernel);

/// Pillow's ImagingResample for 8-bit images: separable, the horizontal pass first (into 8-bit
/// rows, rounded and clipped), then the vertical one. Per output pixel: the filter is centred at
/// (i + 0.5) * scale in input coordinates, its support scaled by max(scale, 1); taps outside the
/// image are dropped and the rest normalised to sum 1, then quantised to signed fixed point with
/// 22 fractional bits (PRECISION_BITS = 32 - 8 - 2, rounded half away from zero); each sum starts
/// at 2^21 (rounding) and is shifted right by 22 and clipped to 0..255.
/// `bicubic` false is BILINEAR, true is BICUBIC.
Image pil_resize(const Image& image, int width, int height, bool bicubic);

}  // namespace qbench::sysnoise
