// Raw-array loops of the fused per-tensor LSQ fake quantizer (qat_lsq.cpp). Torch-free, in their
// own translation unit so they can be compiled with the flags that let them vectorise.
#pragma once

#include <cstdint>

namespace qbench::quant {

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

/// APoT activations (Li et al. 2020: uniform levels with a learnable clip alpha):
/// po[i] = (a * round_half_even(clamp(px[i] / a, lo, 1) * m)) / m, lo = 0 or -1.
void apot_act_forward_kernel(const float* px, float* po, int64_t n, float a, float m, float lo);

/// Its RCF gradients: pgx[i] = pg[i] where lo <= v <= 1 (v = px[i] / a) else 0; returns
/// d/d alpha = sum pg * (q - v inside, the clipped bound outside), q = round(v m) / m.
double apot_act_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, float a, float m, float lo);

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

}  // namespace qbench::quant
