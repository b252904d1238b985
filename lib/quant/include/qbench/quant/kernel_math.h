// Float helpers of the fused CPU loops (torch-free): round half to even without libm, and log2 /
// exp2 as float polynomials, so that a loop raising to a non-integer power vectorises. Every
// helper is always_inline: a loop built with target_clones("avx2", "default") must inline its
// helpers, or the AVX2 clone would call code compiled for the baseline target. Used by the MSE
// observer's search (lib/quant/src/mse_search.cpp) and reconstruction's regulariser
// (lib/ptq/src/kernels/recon.cpp). Valid only without -ffast-math.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__)
#define QBENCH_KERNEL_INLINE inline __attribute__((always_inline))
#else
#define QBENCH_KERNEL_INLINE inline
#endif

namespace qbench::quant::kernel_math {

QBENCH_KERNEL_INLINE float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
QBENCH_KERNEL_INLINE uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/// Nearest integer, ties to even, for |v| < 2^22: adding and subtracting 1.5 * 2^23 under the
/// default rounding mode, exactly as std::nearbyint there.
QBENCH_KERNEL_INLINE float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

/// log2(a) for a normal, finite a > 0: a = m 2^e with m in [sqrt(1/2), sqrt(2)), log2(m) =
/// 2 atanh(t) / ln 2, t = (m - 1) / (m + 1), |t| <= 0.1716, atanh's series to t^9 (error < 1e-9).
QBENCH_KERNEL_INLINE float log2_pos(float a) {
  const uint32_t b = float_to_bits(a);
  float e = static_cast<float>(static_cast<int32_t>((b >> 23) & 0xffu) - 127);
  float m = bits_to_float((b & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1.0f : e;
  const float t = (m - 1.0f) / (m + 1.0f);
  const float t2 = t * t;
  const float series = 1.0f + t2 * (0.333333333f + t2 * (0.2f + t2 * (0.142857143f + t2 * 0.111111111f)));
  return e + t * series * 2.88539008f;  // 2 / ln 2
}

/// 2^y: y = n + f, n = round(y), |f| <= 1/2, 2^f = exp(f ln 2) by its Taylor series to degree 7
/// (error < 1e-8); 0 below 2^-126 (no subnormals), inf above 2^127.
QBENCH_KERNEL_INLINE float exp2_any(float y) {
  const float yc = std::min(std::max(y, -126.0f), 127.0f);
  const float n = round_even(yc);
  const float x = (yc - n) * 0.693147181f;
  const float p =
      1.0f + x * (1.0f + x * (0.5f + x * (0.166666667f + x * (0.0416666667f + x * (0.00833333333f +
                                                                               x * (0.00138888889f + x * 0.000198412698f))))));
  const float scale = bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  const float r = p * scale;
  return y < -126.0f ? 0.0f : (y > 127.0f ? INFINITY : r);
}

}  // namespace qbench::quant::kernel_math
