// Loops of the fused per-tensor LSQ and LSQ+ quantizers (see lsq.h).
#include "lsq.h"

#include "common.h"

namespace qbench::qat::kernels {

QBENCH_CLONES
void lsq_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float s, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(px[i] / s, lo), hi);
    po[i] = round_even(v) * s;
  }
}

// The sum runs in kLanes independent float lanes, a fixed order whatever the vector width, so
// the compiler vectorises it without reassociating anything; the lanes and the tail are added
// in double at the end. inside <=> clamp(v) == v (v is finite: the quantizer input is checked).
QBENCH_CLONES
double lsq_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx, int64_t n,
                           float s, float lo, float hi) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = px[i + k] / s;
      const float vc = std::min(std::max(v, lo), hi);
      const bool inside = vc == v;
      const float term = inside ? round_even(vc) - vc : vc;
      pgx[i + k] = inside ? pg[i + k] : 0.f;
      lanes[k] += pg[i + k] * term;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const float v = px[i] / s;
    const float vc = std::min(std::max(v, lo), hi);
    const bool inside = vc == v;
    pgx[i] = inside ? pg[i] : 0.f;
    sum += static_cast<double>(pg[i] * (inside ? round_even(vc) - vc : vc));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}

QBENCH_CLONES
void lsq_plus_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float s, float b, float lo,
                             float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float u = std::min(std::max((px[i] - b) / s, lo), hi);
    po[i] = round_even(u) * s + b;
  }
}

// As lsq_backward_kernel, with a second set of lanes for the offset's sum.
QBENCH_CLONES
LsqPlusGradSums lsq_plus_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                         int64_t n, float s, float b, float lo, float hi) {
  constexpr int kLanes = 16;
  float lanes_s[kLanes] = {}, lanes_b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float u = (px[i + k] - b) / s;
      const float uc = std::min(std::max(u, lo), hi);
      const bool inside = uc == u;
      const float term = inside ? round_even(uc) - uc : uc;
      const float pass = inside ? pg[i + k] : 0.f;
      pgx[i + k] = pass;
      lanes_s[k] += pg[i + k] * term;
      lanes_b[k] += pg[i + k] - pass;  // dy outside, exactly 0 inside (finite dy)
    }
  }
  LsqPlusGradSums sums;
  for (; i < n; ++i) {
    const float u = (px[i] - b) / s;
    const float uc = std::min(std::max(u, lo), hi);
    const bool inside = uc == u;
    pgx[i] = inside ? pg[i] : 0.f;
    sums.ds += static_cast<double>(pg[i] * (inside ? round_even(uc) - uc : uc));
    sums.dbeta += inside ? 0.0 : static_cast<double>(pg[i]);
  }
  for (int k = 0; k < kLanes; ++k) {
    sums.ds += static_cast<double>(lanes_s[k]);
    sums.dbeta += static_cast<double>(lanes_b[k]);
  }
  return sums;
}

}  // namespace qbench::qat::kernels
