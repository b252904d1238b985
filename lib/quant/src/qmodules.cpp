#include "qbench/quant/qmodules.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <map>

#include "qbench/common/errors.h"

namespace qbench::quant {

const char* act_name(Act a) {
  switch (a) {
    case Act::ReLU: return "relu";
    case Act::ReLU6: return "relu6";
    default: return "none";
  }
}

at::Tensor apply_act(const at::Tensor& x, Act a) {
  switch (a) {
    case Act::ReLU: return at::relu(x);
    case Act::ReLU6: return at::hardtanh(x, 0.0, 6.0);
    default: return x;
  }
}

at::Tensor QAddImpl::forward(const at::Tensor& a_in, const at::Tensor& b_in) {
  const auto a = in_a_ ? in_a_->forward(a_in) : a_in;
  const auto b = in_b_ ? in_b_->forward(b_in) : b_in;
  auto y = relu_ ? at::relu(a + b) : a + b;
  return out_q_ ? out_q_->forward(y) : y;
}

namespace {
void put_quantizer(torch::nn::Module& m, const char* name, std::shared_ptr<FakeQuantizer>& slot,
                   std::shared_ptr<FakeQuantizer> q) {
  if (!q) return;
  if (slot)
    m.replace_module(name, q);
  else
    m.register_module(name, q);
  slot = std::move(q);
}
}  // namespace

void QAddImpl::attach_output(std::shared_ptr<FakeQuantizer> q) { put_quantizer(*this, "output_quant", out_q_, std::move(q)); }

void QAddImpl::attach_inputs(std::shared_ptr<FakeQuantizer> qa, std::shared_ptr<FakeQuantizer> qb) {
  put_quantizer(*this, "input_quant_a", in_a_, std::move(qa));
  put_quantizer(*this, "input_quant_b", in_b_, std::move(qb));
}

void QuantLayer::attach(std::shared_ptr<FakeQuantizer> weight_q, std::shared_ptr<FakeQuantizer> input_q) {
  put_quantizer(as_module(), "weight_quant", weight_q_, std::move(weight_q));
  put_quantizer(as_module(), "input_quant", input_q_, std::move(input_q));
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

namespace {
bool inside(const std::string& path, const std::string& prefix) {
  return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && path[prefix.size()] == '.';
}
}  // namespace

std::vector<LayerRef> QuantModel::quant_layers() {
  std::vector<LayerRef> out;
  std::map<const torch::nn::Module*, std::string> path_of;
  std::vector<std::string> block_paths;
  const auto mods = named_modules("", /*include_self=*/false);
  for (const auto& item : mods) {
    path_of[item.value().get()] = item.key();
    if (dynamic_cast<BlockModule*>(item.value().get())) block_paths.push_back(item.key());
  }
  for (const auto& item : mods) {
    auto* layer = dynamic_cast<QuantLayer*>(item.value().get());
    if (!layer) continue;
    LayerRef ref{item.key(), layer};
    if ((ref.bn = layer->bn())) {
      auto it = path_of.find(ref.bn);
      if (it == path_of.end())
        throw Error("layer " + item.key() + " declares a BatchNorm partner that is not part of the model");
      ref.bn_name = it->second;
    }
    ref.act = layer->act();
    for (const auto& b : block_paths)
      if (inside(ref.name, b) && b.size() > ref.block.size()) ref.block = b;
    out.push_back(std::move(ref));
  }
  if (!out.empty()) {
    out.front().is_first = true;
    out.back().is_last = true;
  }
  return out;
}

std::vector<BlockRef> QuantModel::blocks() {
  std::vector<BlockRef> out;
  const auto layers = quant_layers();
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    auto* b = dynamic_cast<BlockModule*>(item.value().get());
    if (!b) continue;
    BlockRef ref{item.key(), b->block_kind(), b, item.value().get(), {}};
    for (const auto& l : layers)
      if (inside(l.name, ref.name)) ref.layers.push_back(l.name);
    out.push_back(std::move(ref));
  }
  return out;
}

std::vector<AddRef> QuantModel::adds() {
  std::vector<AddRef> out;
  for (const auto& item : named_modules("", /*include_self=*/false))
    if (auto* a = dynamic_cast<QAddImpl*>(item.value().get())) out.push_back({item.key(), a});
  return out;
}

std::vector<FakeQuantizer*> QuantModel::quantizers() {
  std::vector<FakeQuantizer*> out;
  for (auto& ref : quant_layers()) {
    if (auto* q = ref.layer->input_quantizer()) out.push_back(q);
    if (auto* q = ref.layer->weight_quantizer()) out.push_back(q);
  }
  for (auto& ref : adds())
    for (auto* q : {ref.add->input_quantizer(0), ref.add->input_quantizer(1), ref.add->output_quantizer()})
      if (q) out.push_back(q);
  return out;
}

}  // namespace qbench::quant
