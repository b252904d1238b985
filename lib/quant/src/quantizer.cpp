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

void QuantizerImpl::compute_qparams() { set_qparams(observer_->compute()); }

void QuantizerImpl::set_qparams(const QParams& qp) {
  qparams_ = qp;
  ready_ = true;
  // Buffers make the frozen parameters part of state_dict / checkpoints.
  if (named_buffers(false).contains("scale")) {
    named_buffers(false)["scale"].set_data(qp.scale);
    named_buffers(false)["zero_point"].set_data(qp.zero_point);
  } else {
    register_buffer("scale", qp.scale);
    register_buffer("zero_point", qp.zero_point);
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
