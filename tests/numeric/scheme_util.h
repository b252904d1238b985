#pragma once
// What the quantizer tests share: one way to spell a scheme, the plain reference of affine fake
// quantization, and the observe -> freeze -> quantize protocol that readies a quantizer.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "qbench/quant/scheme.h"

namespace qbench::test {

/// bits, signedness, optional per-channel; symmetric, no narrow range, channel axis 0.
inline quant::QuantScheme test_scheme(int bits, quant::Signedness sg = quant::Signedness::Signed,
                                      bool per_channel = false) {
  quant::QuantScheme s;
  s.bits = bits;
  s.signedness = sg;
  s.granularity = per_channel ? quant::Granularity::PerChannel : quant::Granularity::PerTensor;
  return s;
}

/// Every field the affine tests vary.
inline quant::QuantScheme scheme(int bits, bool sym, quant::Signedness sg, bool per_channel = false,
                                 bool narrow = false, int64_t ch_axis = 0) {
  quant::QuantScheme s = test_scheme(bits, sg, per_channel);
  s.symmetric = sym;
  s.narrow_range = narrow;
  s.ch_axis = ch_axis;
  return s;
}

/// The reference: q = clamp(nearbyint(x * (1/s)) + z, qmin, qmax); x' = (q - z) * s, round half
/// to even (the C default rounding mode), written as a loop over floats. PyTorch multiplies by
/// the float inverse scale rather than dividing; so does this, so that ties round identically.
inline float ref_fq(float x, float s, int z, int64_t qmin, int64_t qmax) {
  const float inv_s = 1.0f / s;
  float q = std::nearbyint(x * inv_s) + static_cast<float>(z);
  q = std::min<float>(std::max<float>(q, static_cast<float>(qmin)), static_cast<float>(qmax));
  return (q - static_cast<float>(z)) * s;
}

/// A tensor's values as floats, in order.
inline std::vector<float> floats(const at::Tensor& t) {
  auto c = t.detach().to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

inline double clampd(double u, double lo, double hi) { return std::min(std::max(u, lo), hi); }

/// u within `margin` of a rounding tie (k + 0.5): float and double evaluations of x / s may round
/// those differently, so exact comparisons skip them.
inline bool near_tie(double u, double margin = 1e-4) { return std::fabs(u - std::floor(u) - 0.5) < margin; }

/// Observes `batches` (an observing quantizer passes its input through unchanged), computes the
/// qparams and turns quantization on: the protocol of quant::calibrate on one quantizer.
template <typename Q>
void observe_and_init(Q& q, const std::vector<at::Tensor>& batches) {
  q.set_observing(true);
  for (const auto& b : batches) REQUIRE(q.forward(b).is_same(b));
  q.set_observing(false);
  q.compute_qparams();
  q.set_quantizing(true);
}

/// Runs `x` through the readied quantizer `q` with gradients on and back-propagates
/// sum(y * upstream) (sum(y) when `upstream` is undefined); checks that the output and x's gradient
/// are finite and returns the output, detached. The gradients of q's own parameters are left for
/// the caller to check.
template <typename Q>
at::Tensor forward_backward_finite(Q& q, const at::Tensor& x, const at::Tensor& upstream = at::Tensor()) {
  auto xr = x.clone().set_requires_grad(true);
  at::Tensor y = q.forward(xr);
  (upstream.defined() ? (y * upstream).sum() : y.sum()).backward();
  CHECK(at::isfinite(y).all().item<bool>());
  CHECK(at::isfinite(xr.grad()).all().item<bool>());
  return y.detach();
}

/// `q`, readied on `x` (the same protocol, without checking what observing returns).
template <typename Q>
std::shared_ptr<Q> ready(std::shared_ptr<Q> q, const at::Tensor& x) {
  q->set_observing(true);
  q->forward(x);
  q->set_observing(false);
  q->compute_qparams();
  q->set_quantizing(true);
  return q;
}

}  // namespace qbench::test
