#include "qbench/quant/qmodules.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "qbench/common/errors.h"
#include "qbench/quant/device.h"

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
  if (deploy_) return deploy_(a_in, b_in);
  if (fused_) {
    auto y = fused_(a_in, b_in);
    if (y.defined()) return out_q_ ? out_q_->forward(y) : y;
  }
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
  // A quantizer joins the layer on the layer's device (quantizers are built on the CPU).
  const at::Device device = weight_tensor().device();
  for (auto* q : {&weight_q, &input_q})
    if (*q && module_device(**q) != device) (*q)->to(device);
  put_quantizer(as_module(), "weight_quant", weight_q_, std::move(weight_q));
  put_quantizer(as_module(), "input_quant", input_q_, std::move(input_q));
}

void QuantLayer::detach_input() {
  if (!input_q_) return;
  as_module().unregister_module("input_quant");
  input_q_.reset();
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

at::Tensor QuantLayer::quantized_bias(const at::Tensor& b) const {
  if (!bias_int32_ || !b.defined() || !input_q_ || !weight_q_ || !input_q_->quantizing() || !weight_q_->quantizing())
    return b;
  const auto qi = input_q_->affine_qparams(), qw = weight_q_->affine_qparams();
  if (!qi || !qw) return b;
  // The accumulator's grid in float32, as the runtime multiplies the two scales.
  const at::Tensor s = (qi->scale.to(at::kFloat) * qw->scale.to(at::kFloat)).to(b.options().dtype()).to(b.device());
  return b + (at::round(b.detach() / s) * s - b.detach());
}

at::Tensor QConv2dImpl::conv(const at::Tensor& xq, const at::Tensor& w, const at::Tensor& b) {
  auto y = at::conv2d(xq, w, quantized_bias(b), {opt_.stride, opt_.stride}, {opt_.padding, opt_.padding}, {1, 1}, opt_.groups);
  macs_ = y.size(1) * y.size(2) * y.size(3) * (opt_.in_channels / opt_.groups) * opt_.kernel_size * opt_.kernel_size;
  in_elems_ = xq.numel() / std::max<int64_t>(1, xq.size(0));
  out_elems_ = y.numel() / std::max<int64_t>(1, y.size(0));
  return y;
}

at::Tensor QConv2dImpl::forward(const at::Tensor& x) {
  return conv(quantized_input(x), quantized_weight(weight), bias);
}

at::Tensor QConv2dImpl::forward_fused(const at::Tensor& x) {
  if (deploy_) return deploy_(x);
  at::Tensor pre;
  if (!bn_ || fold_ < 0) {
    auto y = forward(x);
    pre = bn_ ? bn_->forward(y) : y;
  } else {
    pre = forward_folded(x);
  }
  if (tap_) tap_(pre);
  return apply_act(pre, act_);
}

namespace {
at::Tensor per_out(const at::Tensor& v) { return v.reshape({-1, 1, 1, 1}); }  // scales weight rows
at::Tensor per_chan(const at::Tensor& v) { return v.reshape({1, -1, 1, 1}); }  // scales activations

/// Per-channel mean and biased variance of a conv output over batch and space.
std::pair<at::Tensor, at::Tensor> batch_stats(const at::Tensor& y) {
  auto var_mean = at::var_mean(y, {0, 2, 3}, /*unbiased=*/false);
  return {std::get<1>(var_mean), std::get<0>(var_mean)};
}

/// BatchNorm's running-statistics update (momentum m, unbiased variance), as nn.BatchNorm2d does.
void update_running(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& mean, const at::Tensor& var, int64_t n) {
  const double m = bn.options.momentum().value_or(0.1);
  at::NoGradGuard ng;
  const double unbias = n > 1 ? static_cast<double>(n) / static_cast<double>(n - 1) : 1.0;
  bn.running_mean.mul_(1.0 - m).add_(mean.detach(), m);
  bn.running_var.mul_(1.0 - m).add_(var.detach() * unbias, m);
}
}  // namespace

at::Tensor QConv2dImpl::forward_folded(const at::Tensor& x) {
  auto& bn = *bn_;
  const double eps = bn.options.eps();
  auto xq = quantized_input(x);
  if (fold_ == 0) return conv(xq, quantized_weight(weight), bias);  // merged at set_bn_fold(0)

  const bool batch = is_training() && fold_ >= 2;
  if (!batch) {  // strategy 1, and 2..4 at inference: the running-statistics fold
    const auto [w, b] = running_fold();
    return conv(xq, quantized_weight(w), b);
  }
  const at::Tensor b0 = bias.defined() ? bias : at::zeros({opt_.out_channels}, weight.options());
  const at::Tensor gamma = bn.weight, beta = bn.bias;
  const at::Tensor sigma_run = at::sqrt(bn.running_var + eps);
  if (fold_ == 4) {
    const auto scale = gamma / sigma_run;
    auto y = conv(xq, quantized_weight(weight * per_out(scale)), {}) / per_chan(scale) + per_chan(b0);
    return at::batch_norm(y, gamma, beta, bn.running_mean, bn.running_var, /*training=*/true,
                          bn.options.momentum().value_or(0.1), eps, /*cudnn_enabled=*/false);
  }
  // Strategies 2 and 3: an extra float conv gives the batch statistics (the bias cancels in BN).
  at::Tensor mean, var;
  {
    auto y0 = at::conv2d(xq, weight, {}, {opt_.stride, opt_.stride}, {opt_.padding, opt_.padding}, {1, 1}, opt_.groups);
    std::tie(mean, var) = batch_stats(y0);
    update_running(bn, mean, var, y0.numel() / y0.size(1));
  }
  const at::Tensor sigma_b = at::sqrt(var + eps);
  if (fold_ == 2)
    return conv(xq, quantized_weight(weight * per_out(gamma / sigma_b)), beta - mean * gamma / sigma_b);
  // fold_ == 3: y = conv(x, q(W*gamma/sigma_run)) * sigma_run/sigma_batch + beta - gamma*mean/sigma_batch
  auto y = conv(xq, quantized_weight(weight * per_out(gamma / sigma_run)), {});
  return y * per_chan(sigma_run / sigma_b) + per_chan(beta - mean * gamma / sigma_b);
}

std::pair<at::Tensor, at::Tensor> QConv2dImpl::running_fold() {
  auto& bn = *bn_;
  std::vector<at::Tensor> in{weight, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var};
  bool grad = false;
  for (const auto& t : in) grad = grad || (t.defined() && t.requires_grad());
  grad = grad && at::GradMode::is_enabled();
  // Versions and storage: Module::to() swaps a parameter's data (set_data) without a new version.
  std::vector<int64_t> versions;
  std::vector<const void*> data;
  for (const auto& t : in) {
    versions.push_back(t.defined() ? static_cast<int64_t>(t._version()) : -1);
    data.push_back(t.defined() ? t.data_ptr() : nullptr);
  }
  auto& c = fold_cache_;
  if (!grad && c.w.defined() && versions == c.versions && data == c.data) {
    bool same = true;
    for (size_t i = 0; i < in.size(); ++i) same = same && in[i].defined() == c.inputs[i].defined() &&
                                                  (!in[i].defined() || in[i].is_same(c.inputs[i]));
    if (same) return {c.w, c.b};
  }
  const at::Tensor b0 = bias.defined() ? bias : at::zeros({opt_.out_channels}, weight.options());
  const auto scale = bn.weight / at::sqrt(bn.running_var + bn.options.eps());
  at::Tensor w = weight * per_out(scale), b = bn.bias + (b0 - bn.running_mean) * scale;
  if (grad) {
    c = FoldCache{};
  } else {
    c.inputs = std::move(in);
    c.versions = std::move(versions);
    c.data = std::move(data);
    c.w = w;
    c.b = b;
  }
  return {w, b};
}

void QConv2dImpl::set_bn_fold(int strategy) {
  if (strategy < -1 || strategy > 4)
    throw Error("BN folding strategy must be -1..4 (MQBench's ids), got " + std::to_string(strategy));
  if (!bn_ || strategy == fold_) return;
  if (fold_ == 0) throw Error("BN folding: a conv whose BN was merged (strategy 0) cannot change strategy");
  if (strategy == 0) {  // merge once into the conv's weight and (new) bias
    at::NoGradGuard ng;
    auto& bn = *bn_;
    const auto scale = bn.weight / at::sqrt(bn.running_var + bn.options.eps());
    const at::Tensor b0 = bias.defined() ? bias.clone() : at::zeros({opt_.out_channels}, weight.options());
    weight.mul_(per_out(scale));
    auto merged = bn.bias + (b0 - bn.running_mean) * scale;
    if (bias.defined())
      bias.copy_(merged);
    else
      bias = register_parameter("bias", merged.detach().clone());
    for (auto& p : bn.parameters()) p.set_requires_grad(false);
  }
  fold_ = strategy;
}

std::pair<at::Tensor, at::Tensor> QConv2dImpl::folded_weight_bias() const {
  at::NoGradGuard ng;
  const at::Tensor b0 = bias.defined() ? bias : at::zeros({opt_.out_channels}, weight.options());
  if (!bn_ || fold_ <= 0) return {weight.detach(), b0.detach()};
  const auto scale = bn_->weight / at::sqrt(bn_->running_var + bn_->options.eps());
  return {(weight * per_out(scale)).detach(), (bn_->bias + (b0 - bn_->running_mean) * scale).detach()};
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
  if (deploy_) return deploy_(x);
  auto y = at::linear(quantized_input(x), quantized_weight(weight), quantized_bias(bias));
  macs_ = weight.size(0) * weight.size(1);
  in_elems_ = weight.size(1);
  out_elems_ = weight.size(0);
  if (tap_) tap_(y);
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

int apply_bn_fold(QuantModel& model, int strategy) {
  int n = 0;
  for (auto& ref : model.quant_layers()) {
    auto* conv = dynamic_cast<QConv2dImpl*>(ref.layer);
    if (!conv || !conv->bn()) continue;
    conv->set_bn_fold(strategy);
    ++n;
  }
  return n;
}

}  // namespace qbench::quant
