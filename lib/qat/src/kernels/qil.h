// The fused unsigned QIL activation kernels: raw-array loops, torch-free, in their own translation unit so that they
// can be compiled with the flags that let them vectorise (common.h). Used by src/methods/qil.cpp.
#pragma once

#include <cstdint>

namespace qbench::qat::kernels {

/// QIL activations (Jung et al. 2019, T_X then the discretiser, rescaled):
/// t = clamp((px[i] - edge) / width, 0, 1), po[i] = round_half_even(t q) / q * scale, where
/// edge = c - d and width = 2 d (the caller computes them as the composed form does).
void qil_act_forward_kernel(const float* px, float* po, int64_t n, float edge, float width, float q, float scale);

/// Sums of the QIL activation backward: inside the interval (0 <= t <= 1) gp = dy * scale,
/// pgx[i] = gp / width (0 outside); sum_gp = sum gp, sum_gp_pos = sum gp * (1 - 2 t), from which
/// d/dc = -sum_gp / width and d/dd = sum_gp_pos / width.
struct QilGradSums {
  double sum_gp = 0.0, sum_gp_pos = 0.0;
  QilGradSums& operator+=(const QilGradSums& o) {
    sum_gp += o.sum_gp;
    sum_gp_pos += o.sum_gp_pos;
    return *this;
  }
};
QilGradSums qil_act_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float edge, float width,
                                    float scale);

}  // namespace qbench::qat::kernels
