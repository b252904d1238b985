// The fused per-tensor DSQ kernels: raw-array loops, torch-free, in their own translation unit so that they can be
// compiled with the flags that let them vectorise (common.h). Used by src/methods/dsq.cpp.
#pragma once

#include <cstdint>

namespace qbench::qat::kernels {

/// The per-tensor constants of one DSQ quantizer, computed by the caller in float exactly as the
/// composed form computes them (src/methods/dsq.cpp, dsq_curve).
struct DsqConsts {
  float l = 0.f, u = 1.f;  ///< the clipping range [l, u]
  float delta = 1.f;       ///< cell width: max(u - l, kMinRange) / n
  float last = 0.f;        ///< index of the last cell, n - 1
  float kd = 1.f;          ///< k * Delta = log(2 / alpha - 1)
  float s = 1.f;           ///< 1 / (1 - alpha)
  float slope = 0.f;       ///< 0.5 * s * kd: dsoft/dt = slope * (1 - tanh^2(z))
};

/// Per element, as the composed form: xc = min(max(x, l), u), t = (xc - l) / delta,
/// i = clamp(floor(t), 0, n - 1), z = kd * (t - i - 0.5),
/// soft = i + 0.5 * (s * tanh(z) + 1), po = l + delta * round_half_even(soft).
void dsq_forward_kernel(const float* px, float* po, int64_t n, const DsqConsts& c);

/// Sums of the DSQ backward (the soft curve's gradient), from which the caller forms
///   d/delta = delta_sum,  d/l = dy + l - pass * d/delta / n,  d/u = u + pass * d/delta / n,
///   d/alpha = delta * 0.5 * (ds/dalpha * tanh + s * dkd/dalpha * kd),
/// pass = (u - l >= kMinRange) (clamp_min's gradient). With A = dy * dsoft/dt and the clamp's
/// weights wx, wl, wu (LibTorch's maximum/minimum: 1 to the larger/smaller input, 1/2 to each at
/// a tie, 0 to the other):
struct DsqGradSums {
  double dy = 0.0;     ///< sum dy                           (l in q_soft = l + delta * soft)
  double l = 0.0;      ///< sum A * (wl - 1)                 (l through t, direct and via the clip)
  double u = 0.0;      ///< sum A * wu                       (u via the clip)
  double delta = 0.0;  ///< sum dy * soft - A * t            (delta in q_soft and in t)
  double tanh = 0.0;   ///< sum dy * tanh(z)                 (d soft / d s = tanh(z) / 2)
  double kd = 0.0;     ///< sum dy * (1 - tanh^2(z)) * (t - i - 0.5)   (d soft / d kd / (s / 2))
  DsqGradSums& operator+=(const DsqGradSums& o) {
    dy += o.dy;
    l += o.l;
    u += o.u;
    delta += o.delta;
    tanh += o.tanh;
    kd += o.kd;
    return *this;
  }
};

/// pgx[i] = A * wx (wx = 1 strictly inside (l, u), 1/2 at x == l or x == u, 0 outside); returns
/// the sums above.
DsqGradSums dsq_backward_kernel(const float* px, const float* pg, float* pgx, int64_t n, const DsqConsts& c);

}  // namespace qbench::qat::kernels
