// The fused per-tensor LSQ and LSQ+ kernels: raw-array loops, torch-free, in their own translation unit so that they
// can be compiled with the flags that let them vectorise (common.h). Used by src/methods/lsq.cpp.
#pragma once

#include <cstdint>

namespace qbench::qat::kernels {

/// po[i] = round_half_even(clamp(px[i] / s, lo, hi)) * s for i < n.
void lsq_forward_kernel(const float* px, float* po, int64_t n, float s, float lo, float hi);

/// pgx[i] = pg[i] where lo <= px[i] / s <= hi, else 0; returns
/// sum_i pg[i] * (round(v) - v inside, the clipped bound outside), v = px[i] / s: the step
/// gradient of LSQ Eq. 3 before the gradient scale g.
double lsq_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float s, float lo, float hi);

/// LSQ+ with offset b: po[i] = round_half_even(clamp((px[i] - b) / s, lo, hi)) * s + b.
void lsq_plus_forward_kernel(const float* px, float* po, int64_t n, float s, float b, float lo, float hi);

/// Sums of the LSQ+ backward (Bhalgat et al. 2020), before the gradient scale g.
struct LsqPlusGradSums {
  double ds = 0.0;     ///< sum dy * (round(u) - u inside, the clipped bound outside)
  double dbeta = 0.0;  ///< sum dy outside [lo, hi] (inside, d/dbeta = -1 + 1 = 0 under the STE)
  LsqPlusGradSums& operator+=(const LsqPlusGradSums& o) {
    ds += o.ds;
    dbeta += o.dbeta;
    return *this;
  }
};

/// pgx[i] = pg[i] where lo <= u <= hi else 0, u = (px[i] - b) / s; returns the two sums.
LsqPlusGradSums lsq_plus_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float s, float b,
                                         float lo, float hi);

}  // namespace qbench::qat::kernels
