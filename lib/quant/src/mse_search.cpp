// See mse_search.h. Compiled with -fno-trapping-math (so that GCC if-converts the clamps and
// vectorises), OpenMP (at::parallel_for runs in parallel only where _OPENMP is defined) and no
// precompiled header; target_clones adds an AVX2 copy of the loop beside the baseline one. No
// -ffast-math and no FMA contraction (-std=c++17), so both copies give the same bits.
#include "mse_search.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QBENCH_MSE_CLONES __attribute__((target_clones("avx2", "default")))
#define QBENCH_MSE_INLINE inline __attribute__((always_inline))
#else
#define QBENCH_MSE_CLONES
#define QBENCH_MSE_INLINE inline
#endif

namespace qbench::quant::detail {
namespace {

constexpr int kLanes = 16;

QBENCH_MSE_INLINE float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
QBENCH_MSE_INLINE uint32_t to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Nearest integer, ties to even, for |v| < 2^22 (v is clamped first): adding and subtracting
// 1.5 * 2^23 under the default rounding mode, as std::nearbyint.
QBENCH_MSE_INLINE float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// log2(a) for a normal a > 0: a = m 2^e, m in [sqrt(1/2), sqrt(2)), log2(m) = 2 atanh(t) / ln 2 with
// t = (m - 1) / (m + 1), |t| <= 0.1716, atanh's series to t^9.
QBENCH_MSE_INLINE float log2_pos(float a) {
  const uint32_t b = to_bits(a);
  float e = static_cast<float>(static_cast<int32_t>((b >> 23) & 0xffu) - 127);
  float m = from_bits((b & 0x7fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1.0f : e;
  const float t = (m - 1.0f) / (m + 1.0f);
  const float t2 = t * t;
  const float series = 1.0f + t2 * (0.333333333f + t2 * (0.2f + t2 * (0.142857143f + t2 * 0.111111111f)));
  return e + t * series * 2.88539008f;
}

// 2^y for y in [-126, 127] (clamped): y = k + f, |f| <= 1/2, 2^f by exp's Taylor series to degree 7.
QBENCH_MSE_INLINE float exp2_clamped(float y) {
  const float yc = std::min(std::max(y, -126.0f), 127.0f);
  const float k = round_even(yc);
  const float x = (yc - k) * 0.693147181f;
  const float poly =
      1.0f + x * (1.0f + x * (0.5f + x * (0.166666667f + x * (0.0416666667f + x * (0.00833333333f +
                                                                               x * (0.00138888889f + x * 0.000198412698f))))));
  return poly * from_bits(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23);
}

/// One (row, candidate): sum over j of dev(fq(x_j) - x_j) in kLanes double lanes, then the tail and
/// the lanes, in that order. Mode 2: d * d; 1: |d|; 0: |d|^p.
template <int Mode>
QBENCH_MSE_INLINE double row_sum(const float* __restrict x, int64_t n, float s, float z, float qmin, float qmax,
                                 float p) {
  const float inv = 1.0f / s;
  // ATen clamps z + nearbyint(x / s) to [qmin, qmax]; in codes relative to z that is [lo, hi],
  // and clamping x / s to one past them first changes nothing (and keeps round_even exact).
  const float lo = qmin - z, hi = qmax - z, vlo = lo - 1.0f, vhi = hi + 1.0f;
  auto dev = [&](float v) {
    const float t = std::min(std::max(v * inv, vlo), vhi);
    const float q = std::min(std::max(round_even(t), lo), hi);
    const float d = q * s - v;
    const float a = std::fabs(d);
    if (Mode == 2) return d * d;
    if (Mode == 1) return a;
    const float r = exp2_clamped(p * log2_pos(a > 0.0f ? a : 1.0f));
    return a >= 1.17549435e-38f ? r : 0.0f;  // 0 and subnormal |d|: 0 (pow gives below 1e-45 there)
  };
  double lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    float v[kLanes];
    for (int l = 0; l < kLanes; ++l) v[l] = dev(x[j + l]);
    for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<double>(v[l]);
  }
  double tail = 0.0;
  for (; j < n; ++j) tail += static_cast<double>(dev(x[j]));
  double sum = tail;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

QBENCH_MSE_CLONES
double row_sum_sq(const float* x, int64_t n, float s, float z, float qmin, float qmax) {
  return row_sum<2>(x, n, s, z, qmin, qmax, 2.0f);
}
QBENCH_MSE_CLONES
double row_sum_abs(const float* x, int64_t n, float s, float z, float qmin, float qmax) {
  return row_sum<1>(x, n, s, z, qmin, qmax, 1.0f);
}
QBENCH_MSE_CLONES
double row_sum_pow(const float* x, int64_t n, float s, float z, float qmin, float qmax, float p) {
  return row_sum<0>(x, n, s, z, qmin, qmax, p);
}

}  // namespace

void mse_candidate_errors(const float* rows, int64_t nrows, int64_t n, const float* scale, const float* zp,
                          int64_t ncand, float qmin, float qmax, double p, double* err) {
  const float pf = static_cast<float>(p);
  at::parallel_for(0, nrows * ncand, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t % nrows;
      const float* x = rows + r * n;
      const double sum = p == 2.0   ? row_sum_sq(x, n, scale[t], zp[t], qmin, qmax)
                         : p == 1.0 ? row_sum_abs(x, n, scale[t], zp[t], qmin, qmax)
                                    : row_sum_pow(x, n, scale[t], zp[t], qmin, qmax, pf);
      err[t] = n > 0 ? sum / static_cast<double>(n) : 0.0;
    }
  });
}

}  // namespace qbench::quant::detail
