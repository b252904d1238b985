// See mse_search.h. Compiled with -fno-trapping-math (so that GCC if-converts the clamps and
// vectorises), OpenMP (at::parallel_for runs in parallel only where _OPENMP is defined) and no
// precompiled header; target_clones adds an AVX2 copy of the loop beside the baseline one. No
// -ffast-math and no FMA contraction (-std=c++17), so both copies give the same bits.
#include "mse_search.h"

#include "qbench/quant/kernel_math.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QBENCH_MSE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QBENCH_MSE_CLONES
#endif

namespace qbench::quant::detail {
namespace {

constexpr int kLanes = 16;

using kernel_math::exp2_any;
using kernel_math::log2_pos;
using kernel_math::round_even;

/// One (row, candidate): sum over j of dev(fq(x_j) - x_j) in kLanes double lanes, then the tail and
/// the lanes, in that order. Mode 2: d * d; 1: |d|; 0: |d|^p.
template <int Mode>
QBENCH_KERNEL_INLINE double row_sum(const float* __restrict x, int64_t n, float s, float z, float qmin, float qmax,
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
    const float r = exp2_any(p * log2_pos(a > 0.0f ? a : 1.0f));
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
