#include "qbench/quant/qmodules.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "qbench/common/errors.h"

namespace qbench::quant {

void QuantLayer::attach(std::shared_ptr<FakeQuantizer> weight_q, std::shared_ptr<FakeQuantizer> input_q) {
  auto& m = as_module();
  auto put = [&m](const char* name, std::shared_ptr<FakeQuantizer>& slot, std::shared_ptr<FakeQuantizer> q) {
    if (!q) return;
    if (slot)
      m.replace_module(name, q);
    else
      m.register_module(name, q);
    slot = std::move(q);
  };
  put("weight_quant", weight_q_, std::move(weight_q));
  put("input_quant", input_q_, std::move(input_q));
}

QConv2dImpl::QConv2dImpl(const QConv2dOptions& o) : opt_(o) {
  if (o.in_channels % o.groups || o.out_channels % o.groups)
    throw Error("QConv2d: channels must be divisible by groups");
  weight = register_parameter("weight", at::empty({o.out_channels, o.in_channels / o.groups, o.kernel_size,
                                                   o.kernel_size}));
  // torchvision's ResNet init: Kaiming normal, fan_out, ReLU gain.
  torch::nn::init::kaiming_normal_(weight, 0.0, torch::kFanOut, torch::kReLU);
  if (o.bias) bias = register_parameter("bias", at::zeros({o.out_channels}));
}

at::Tensor QConv2dImpl::forward(const at::Tensor& x) {
  auto xq = quantized_input(x);
  auto w = quantized_weight(weight);
  auto y = at::conv2d(xq, w, bias, {opt_.stride, opt_.stride}, {opt_.padding, opt_.padding}, {1, 1}, opt_.groups);
  macs_ = y.size(1) * y.size(2) * y.size(3) * (opt_.in_channels / opt_.groups) * opt_.kernel_size * opt_.kernel_size;
  return y;
}

QLinearImpl::QLinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", at::empty({out_features, in_features}));
  // nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  torch::nn::init::uniform_(weight, -bound, bound);
  if (with_bias) {
    bias = register_parameter("bias", at::empty({out_features}));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

at::Tensor QLinearImpl::forward(const at::Tensor& x) {
  auto y = at::linear(quantized_input(x), quantized_weight(weight), bias);
  macs_ = weight.size(0) * weight.size(1);
  return y;
}

std::vector<LayerRef> QuantModel::quant_layers() {
  std::vector<LayerRef> out;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* layer = dynamic_cast<QuantLayer*>(item.value().get())) out.push_back({item.key(), layer});
  }
  if (!out.empty()) {
    out.front().is_first = true;
    out.back().is_last = true;
  }
  return out;
}

std::vector<FakeQuantizer*> QuantModel::quantizers() {
  std::vector<FakeQuantizer*> out;
  for (auto& ref : quant_layers()) {
    if (auto* q = ref.layer->input_quantizer()) out.push_back(q);
    if (auto* q = ref.layer->weight_quantizer()) out.push_back(q);
  }
  return out;
}

}  // namespace qbench::quant
