// The fused APoT activation kernels: raw-array loops, torch-free, in their own translation unit so that they can be
// compiled with the flags that let them vectorise (common.h). Used by src/methods/apot.cpp.
#pragma once

#include <cstdint>

namespace qbench::qat::kernels {

/// APoT activations (Li et al. 2020: uniform levels with a learnable clip alpha):
/// po[i] = (a * round_half_even(clamp(px[i] / a, lo, 1) * m)) / m, lo = 0 or -1.
void apot_act_forward_kernel(const float* px, float* po, int64_t n, float a, float m, float lo);

/// Its RCF gradients: pgx[i] = pg[i] where lo <= v <= 1 (v = px[i] / a) else 0; returns
/// d/d alpha = sum pg * (q - v inside, the clipped bound outside), q = round(v m) / m.
double apot_act_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float a, float m, float lo);

}  // namespace qbench::qat::kernels
