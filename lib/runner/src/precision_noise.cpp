// The precision noises through each layer's deploy hook (see precision_noise.h).
#include "qbench/runner/precision_noise.h"

#include <ATen/ATen.h>

#include "qbench/sysnoise/precision.h"

namespace qbench::runner {

at::Tensor round_to(const at::Tensor& x, ReducedPrecision precision) {
  if (!x.defined()) return x;
  if (!x.device().is_cpu())  // the same round-to-nearest-even conversion, on the device
    return x.to(precision == ReducedPrecision::kBf16 ? at::kBFloat16 : at::kHalf).to(at::kFloat);
  at::Tensor out = x.to(at::kFloat).contiguous().clone();
  float* p = out.data_ptr<float>();
  const auto n = static_cast<std::size_t>(out.numel());
  if (precision == ReducedPrecision::kBf16)
    sysnoise::round_to_bf16(p, n);
  else
    sysnoise::round_to_half(p, n);
  return out;
}

namespace {

/// The layer's input as it reaches the conv/linear: rounded, then through its input quantizer.
at::Tensor layer_input(quant::QuantLayer& layer, const at::Tensor& x, ReducedPrecision p) {
  at::Tensor xr = round_to(x, p);
  if (auto* q = layer.input_quantizer()) xr = round_to(q->forward(xr), p);
  return xr;
}

at::Tensor layer_weight(quant::QuantLayer& layer, at::Tensor w, ReducedPrecision p) {
  if (auto* q = layer.weight_quantizer()) w = q->forward(w);
  return round_to(w, p);
}

/// bf16 runs the op natively on bfloat16 operands; fp16 (emulated) runs it in float on operands
/// already rounded to half.
template <class Op>
at::Tensor run_op(ReducedPrecision p, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, Op op) {
  if (p == ReducedPrecision::kBf16) {
    const auto bf = [](const at::Tensor& t) { return t.defined() ? t.to(at::kBFloat16) : t; };
    return op(bf(x), bf(w), bf(b)).to(at::kFloat);
  }
  return op(x, w, b);
}

}  // namespace

void set_reduced_precision(quant::QuantModel& model, ReducedPrecision p) {
  for (const auto& ref : model.quant_layers()) {
    quant::QuantLayer* layer = ref.layer;
    if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(layer)) {
      conv->set_deploy([conv, p](const at::Tensor& x) {
        // folded_weight_bias: the running-statistics fold for strategies 0..4, else the raw ones.
        auto [w, b] = conv->folded_weight_bias();
        const auto& o = conv->options();
        at::Tensor y = run_op(p, layer_input(*conv, x, p), layer_weight(*conv, w, p), round_to(b, p),
                              [&o](const at::Tensor& xi, const at::Tensor& wi, const at::Tensor& bi) {
                                return at::conv2d(xi, wi, bi, {o.stride, o.stride}, {o.padding, o.padding}, {1, 1},
                                                  o.groups);
                              });
        y = round_to(y, p);
        if (conv->bn() && conv->bn_fold() < 0) y = conv->bn()->forward(y);  // unfolded: BN after the conv
        return round_to(quant::apply_act(y, conv->act()), p);
      });
    } else if (auto* linear = dynamic_cast<quant::QLinearImpl*>(layer)) {
      linear->set_deploy([linear, p](const at::Tensor& x) {
        at::Tensor y = run_op(p, layer_input(*linear, x, p), layer_weight(*linear, linear->weight, p),
                              round_to(linear->bias, p),
                              [](const at::Tensor& xi, const at::Tensor& wi, const at::Tensor& bi) {
                                return at::linear(xi, wi, bi);
                              });
        return round_to(y, p);
      });
    }
  }
}

void clear_reduced_precision(quant::QuantModel& model) {
  for (const auto& ref : model.quant_layers()) ref.layer->set_deploy({});
}

}  // namespace qbench::runner
