#include "qbench/quant/quantizer.h"

#include <ATen/ATen.h>

#include "qbench/common/errors.h"

namespace qbench::quant {

void FakeQuantizer::set_quantizing(bool on) {
  if (on && !ready_) throw Error("quantizer enabled before its parameters were computed");
  quantizing_ = on;
}

QuantizerImpl::QuantizerImpl(QuantScheme scheme, std::unique_ptr<Observer> observer)
    : FakeQuantizer(scheme), observer_(std::move(observer)) {
  if (!observer_) throw Error("quantizer needs an observer");
}

at::Tensor QuantizerImpl::forward(const at::Tensor& x) {
  if (observing_) observer_->update(x);
  if (!quantizing_) return x;
  return fake_quantize(x, qparams_);
}

namespace {
/// Power-of-two scales for a symmetric scheme: s -> 2^ceil(log2 s), at least 2^-max_frac_bits.
/// Rounding up keeps every observed value in range (Vitis' MinMaxFloorObserver floors the
/// fractional bits, which is the same thing).
QParams pot_qparams(QParams qp, const QuantScheme& s) {
  if (!s.symmetric) throw Error("power-of-two scales need a symmetric scheme");
  if (qp.zero_point.ne(0).any().item<bool>()) throw Error("power-of-two scales need zero points of 0");
  auto e = at::ceil(at::log2(qp.scale.to(at::kDouble)));
  e = at::clamp_min(e, -static_cast<double>(s.pot_max_frac_bits));
  qp.scale = at::pow(2.0, e).to(at::kFloat).contiguous();
  return qp;
}
}  // namespace

void QuantizerImpl::compute_qparams() {
  QParams qp = observer_->compute();
  set_qparams(scheme_.pot_scale ? pot_qparams(qp, scheme_) : qp);
}

void QuantizerImpl::set_qparams(const QParams& qp) {
  qparams_ = qp;
  ready_ = true;
  // Buffers make the frozen parameters part of state_dict / checkpoints. qparams_ holds the
  // buffers themselves, so Module::to(device) (which moves buffers in place) moves them too.
  auto buffers = named_buffers(false);
  if (buffers.contains("scale")) {
    buffers["scale"].set_data(qp.scale);
    buffers["zero_point"].set_data(qp.zero_point);
    qparams_.scale = buffers["scale"];
    qparams_.zero_point = buffers["zero_point"];
  } else {
    qparams_.scale = register_buffer("scale", qp.scale);
    qparams_.zero_point = register_buffer("zero_point", qp.zero_point);
  }
}

std::string QuantizerImpl::describe() const {
  std::string s = scheme_.describe() + " (" + observer_->name() + ")";
  if (ready_ && !qparams_.per_channel())
    s += " scale=" + std::to_string(qparams_.scale.item<float>()) +
         " zp=" + std::to_string(qparams_.zero_point.item<int>()) + " range=[" + std::to_string(qparams_.range.qmin) +
         "," + std::to_string(qparams_.range.qmax) + "]";
  return s;
}

}  // namespace qbench::quant
