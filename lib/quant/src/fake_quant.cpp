#include "qbench/quant/fake_quant.h"

#include <ATen/ATen.h>

#include <limits>

#include "qbench/common/errors.h"

namespace qbench::quant {

QRange resolve_range(const QuantScheme& scheme, bool observed_nonnegative) {
  bool is_signed = scheme.signedness == Signedness::Signed ||
                   (scheme.signedness == Signedness::Auto && !observed_nonnegative);
  return integer_range(scheme.bits, is_signed, scheme.narrow_range);
}

std::pair<at::Tensor, at::Tensor> grid_range(const QParams& qp) {
  const auto z = qp.zero_point.to(at::kFloat);
  const auto s = qp.scale.to(at::kFloat);
  return {s * (static_cast<double>(qp.range.qmin) - z), s * (static_cast<double>(qp.range.qmax) - z)};
}

double grid_abs_max(const QParams& qp) {
  const auto [lo, hi] = grid_range(qp);
  return std::max(lo.abs().max().item<double>(), hi.abs().max().item<double>());
}

double grid_step(const QParams& qp) { return qp.scale.max().item<double>(); }

QParams qparams_from_minmax(const at::Tensor& min_val, const at::Tensor& max_val, const QuantScheme& scheme,
                            int64_t ch_axis) {
  auto mn = min_val.to(at::kFloat), mx = max_val.to(at::kFloat);
  if (!at::isfinite(mn).all().item<bool>() || !at::isfinite(mx).all().item<bool>())
    throw Error("cannot compute quantization parameters: observed range is NaN or infinite");
  const bool nonneg = mn.min().item<float>() >= 0.f;
  QParams qp;
  qp.range = resolve_range(scheme, nonneg);
  qp.ch_axis = ch_axis;
  const double qmin = static_cast<double>(qp.range.qmin), qmax = static_cast<double>(qp.range.qmax);
  // Widen to include zero so that 0 is exactly representable (padding, ReLU outputs).
  auto lo = at::clamp_max(mn, 0.0), hi = at::clamp_min(mx, 0.0);
  const float eps = std::numeric_limits<float>::epsilon();
  if (scheme.symmetric) {
    auto amax = at::maximum(-lo, hi);
    const bool is_signed = qp.range.qmin < 0;
    auto denom = is_signed ? (qmax - qmin) / 2.0 : (qmax - qmin);
    qp.scale = at::clamp_min(amax / denom, eps);
    qp.zero_point = at::zeros_like(qp.scale, at::kInt);
  } else {
    qp.scale = at::clamp_min((hi - lo) / (qmax - qmin), eps);
    auto zp = (qmin - at::round(lo / qp.scale)).clamp(qmin, qmax);
    qp.zero_point = zp.to(at::kInt);
  }
  qp.scale = qp.scale.contiguous();
  qp.zero_point = qp.zero_point.contiguous();
  return qp;
}

at::Tensor fake_quantize(const at::Tensor& x, const QParams& qp) {
  if (!qp.scale.defined()) throw Error("fake_quantize: quantizer has no parameters (not calibrated)");
  if (qp.per_channel()) {
    return at::fake_quantize_per_channel_affine(x, qp.scale, qp.zero_point, qp.ch_axis, qp.range.qmin,
                                                qp.range.qmax);
  }
  // Off the CPU, the tensor-qparams overload keeps scale and zero point on the device (no host
  // sync per forward); the CPU keeps the scalar overload it has always used.
  if (!x.device().is_cpu() && qp.scale.device() == x.device())
    return at::fake_quantize_per_tensor_affine(x, qp.scale.reshape({}), qp.zero_point.reshape({}), qp.range.qmin,
                                               qp.range.qmax);
  return at::fake_quantize_per_tensor_affine(x, qp.scale.item<float>(), qp.zero_point.item<int>(), qp.range.qmin,
                                             qp.range.qmax);
}

}  // namespace qbench::quant
