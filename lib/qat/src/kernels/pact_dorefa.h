// The fused PACT and DoReFa activation kernels: raw-array loops, torch-free, in their own translation unit so that they
// can be compiled with the flags that let them vectorise (common.h). Used by src/methods/pact_dorefa.cpp.
#pragma once

#include <cstdint>

namespace qbench::qat::kernels {

/// PACT (Choi et al. 2018), Eqs. 1-2 with the straight-through output of qat_pact_dorefa.cpp:
/// y = clip(x, 0 or -a, a), q = round_half_even(y * inv) * step, po[i] = y + (q - y), where the
/// caller computes inv = n / a and step = a / n with the same tensor ops as the composed form.
void pact_forward_kernel(const float* px, float* po, int64_t n, float a, float inv, float step, bool is_signed);

/// PACT's Eq. 3: pgx[i] = pg[i] where 0 (or -a) < x < a (x = 0 passes when unsigned) else 0;
/// returns d/dalpha = sum of pg where x >= a, minus the sum where x <= -a when signed.
double pact_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float a, bool is_signed);

/// DoReFa activations on a range r (Zhou et al. 2016, Eq. 11 when r = 1):
/// po[i] = round_half_even(clamp(px[i] / r, lo, 1) * levels) / levels * r (lo = 0, or -1 for the
/// signed extension); r = 1 skips the division and the product, as the composed form does.
void dorefa_act_forward_kernel(const float* px, float* po, int64_t n, float r, float levels, float lo);

/// Its STE (Eq. 6): pgx[i] = pg[i] where lo <= px[i] / r <= 1, else 0.
void dorefa_act_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float r, float lo);

}  // namespace qbench::qat::kernels
