// Pillow's antialiased resize (src/libImaging/Resample.c, ImagingResample) for 8-bit images,
// written from its documented algorithm. Bit-exactness depends on doing the same arithmetic in
// the same order: the filter and its normalisation in double, the coefficients quantised once per
// output index, the sums in 32-bit integers, and the intermediate image stored as 8 bits.
#include <cmath>
#include <cstdint>
#include <vector>

#include "internal.h"
#include "qbench/sysnoise/resize.h"

namespace qbench::sysnoise {

namespace {

// 8 bits of result and 2 bits of headroom (bicubic's lobes can push a sum below 0 or above 1).
constexpr int kPrecisionBits = 32 - 8 - 2;

double triangle_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Keys' cubic convolution with a = -0.5 (Pillow's choice; OpenCV's INTER_CUBIC uses -0.75).
double cubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output index along one axis: the first input index it reads, how many it reads, and
// their fixed-point weights (stride `stride`).
struct Taps {
  std::vector<int> first, count;
  std::vector<int32_t> weights;
  int stride = 0;
};

Taps make_taps(int in_size, int out_size, bool bicubic) {
  double (*filter)(double) = bicubic ? cubic_filter : triangle_filter;
  const double base_support = bicubic ? 2.0 : 1.0;
  // Pillow takes the source box as floats (0, in_size) and the scale in double.
  const float box0 = 0.0f, box1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(box1 - box0) / out_size;
  const double filter_scale = scale < 1.0 ? 1.0 : scale;  // widen the kernel only on downscale
  const double support = base_support * filter_scale;
  Taps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<std::size_t>(out_size) * taps.stride, 0);
  std::vector<double> w(taps.stride);
  for (int i = 0; i < out_size; ++i) {
    const double center = box0 + (i + 0.5) * scale;
    const double inv = 1.0 / filter_scale;
    // Bounds rounded half up by truncation (both are >= -0.5 before the clamp matters).
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double sum = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = filter((k + lo - center + 0.5) * inv);
      sum += w[k];
    }
    for (int k = 0; k < n; ++k) {
      if (sum != 0.0) w[k] /= sum;
      const double fixed = w[k] * (1 << kPrecisionBits);
      taps.weights[static_cast<std::size_t>(i) * taps.stride + k] =
          static_cast<int32_t>(w[k] < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.first[i] = lo;
    taps.count[i] = n;
  }
  return taps;
}

inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;  // arithmetic shift: floor division
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

Image horizontal_pass(const Image& in, int width, bool bicubic) {
  const Taps taps = make_taps(in.width, width, bicubic);
  Image out(width, in.height, in.channels);
  const int ch = in.channels;
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = &in.at(0, y, 0);
    for (int x = 0; x < width; ++x) {
      const int32_t* k = &taps.weights[static_cast<std::size_t>(x) * taps.stride];
      const uint8_t* src = row + static_cast<std::size_t>(taps.first[x]) * ch;
      for (int c = 0; c < ch; ++c) {
        int32_t sum = 1 << (kPrecisionBits - 1);
        for (int t = 0; t < taps.count[x]; ++t) sum += src[t * ch + c] * k[t];
        out.at(x, y, c) = clip8(sum);
      }
    }
  }
  return out;
}

Image vertical_pass(const Image& in, int height, bool bicubic) {
  const Taps taps = make_taps(in.height, height, bicubic);
  Image out(in.width, height, in.channels);
  const std::size_t row_bytes = in.row_bytes();
  for (int y = 0; y < height; ++y) {
    const int32_t* k = &taps.weights[static_cast<std::size_t>(y) * taps.stride];
    const uint8_t* src = &in.at(0, taps.first[y], 0);
    uint8_t* dst = &out.at(0, y, 0);
    for (std::size_t i = 0; i < row_bytes; ++i) {
      int32_t sum = 1 << (kPrecisionBits - 1);
      for (int t = 0; t < taps.count[y]; ++t) sum += src[t * row_bytes + i] * k[t];
      dst[i] = clip8(sum);
    }
  }
  return out;
}

}  // namespace

Image pil_resize(const Image& image, int width, int height, bool bicubic) {
  detail::check_resize(image, width, height, "pil_resize");
  // Like Pillow, an axis whose size does not change is not filtered at all.
  Image out = width != image.width ? horizontal_pass(image, width, bicubic) : image;
  if (height != image.height) out = vertical_pass(out, height, bicubic);
  return out;
}

}  // namespace qbench::sysnoise
