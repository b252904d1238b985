#pragma once
// Affine fake quantization, q = clamp(round(x / s) + z, qmin, qmax), x' = (q - z) * s, with
// round half to even; forward and (straight-through) backward come from LibTorch's built-ins
// at::fake_quantize_per_tensor_affine / at::fake_quantize_per_channel_affine, which the numeric
// tests check against a plain scalar loop.
#include <ATen/core/Tensor.h>

#include <utility>

#include "qbench/quant/scheme.h"

namespace qbench::quant {

/// Scale and zero point for one tensor: per-tensor (0-d tensors) or per-channel (1-d, one per
/// channel along `ch_axis`).
struct QParams {
  at::Tensor scale;       ///< float32
  at::Tensor zero_point;  ///< int32
  QRange range;
  int64_t ch_axis = -1;   ///< -1: per-tensor
  bool per_channel() const { return ch_axis >= 0; }
};

/// Scale/zero point from observed ranges (0-d or 1-d min/max tensors), following PyTorch's
/// observers: the range is widened to include 0; symmetric signed uses s = max|x| / ((qmax-qmin)/2),
/// symmetric unsigned s = max / (qmax - qmin) with z = 0, asymmetric s = (max-min)/(qmax-qmin) and
/// z = qmin - round(min / s). s is floored at float epsilon. Throws qbench::Error on NaN/Inf.
/// The real range [lo, hi] of an affine grid: scale * (qmin - z) and scale * (qmax - z), per
/// channel where qp is (float32, the shape of qp.scale).
std::pair<at::Tensor, at::Tensor> grid_range(const QParams& qp);
/// max(|lo|, |hi|) of grid_range over every channel: one clipping level for the whole tensor.
double grid_abs_max(const QParams& qp);
/// The largest step of the grid (over channels): what a symmetric quantizer with its own level
/// count (n steps each side) takes as its range, n * step.
double grid_step(const QParams& qp);

QParams qparams_from_minmax(const at::Tensor& min_val, const at::Tensor& max_val, const QuantScheme& scheme,
                            int64_t ch_axis);

at::Tensor fake_quantize(const at::Tensor& x, const QParams& qp);

/// Integer range actually used once Auto signedness is resolved against an observed minimum.
QRange resolve_range(const QuantScheme& scheme, bool observed_nonnegative);

}  // namespace qbench::quant
