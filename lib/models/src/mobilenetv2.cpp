// MobileNetV2 as torchvision defines it (Sandler et al. 2018, arXiv:1801.04381, Table 2;
// torchvision models/mobilenetv2.py). Names match torchvision's state dict: features.0.{0,1}
// (stem conv, BN), features.{1..17}.conv.{...} (inverted residuals), features.18.{0,1},
// classifier.1 (after a dropout at classifier.0).
#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>

#include "layers.h"

namespace qbench::models {
namespace {

using namespace detail;

class InvertedResidualImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand) {
    const int64_t hidden = in * expand;
    auto seq = register_module("conv", std::make_shared<torch::nn::Module>());
    int idx = 0;
    auto next = [&idx] { return std::to_string(idx++); };
    if (expand != 1) pw_ = seq->register_module(next(), ConvBnAct(conv_opts(in, hidden, 1), Act::ReLU6));
    dw_ = seq->register_module(next(), ConvBnAct(conv_opts(hidden, hidden, 3, stride, hidden), Act::ReLU6));
    const std::string conv_name = next(), bn_name = next();
    pwl_ = conv_bn(*seq, conv_name, bn_name, conv_opts(hidden, out, 1), Act::None);
    if (stride == 1 && in == out) add_ = register_module("add", quant::QAdd(/*relu_after=*/false));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto y = pwl_(dw_->forward(pw_ ? pw_->forward(x) : x));
    return add_ ? add_->forward(y, x) : y;
  }
  const char* block_kind() const override { return "inverted_residual"; }
  at::Tensor forward_block(const at::Tensor& x) override { return forward(x); }

 private:
  ConvBnAct pw_{nullptr}, dw_{nullptr};
  ConvBn pwl_;
  quant::QAdd add_{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2 : public quant::QuantModel {
 public:
  explicit MobileNetV2(const ModelSpec& spec) {
    const bool small = spec.stem == Stem::Small;
    // t (expansion), c (channels), n (repeats), s (stride of the first repeat): Table 2.
    const int64_t cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                               {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    auto features = register_module("features", std::make_shared<torch::nn::Module>());
    int64_t in = make_divisible(32 * spec.width);
    const int64_t last = make_divisible(1280 * std::max(1.0, spec.width));
    stem_ = features->register_module("0", ConvBnAct(conv_opts(spec.in_channels, in, 3, small ? 1 : 2), Act::ReLU6));
    int idx = 1;
    for (int st = 0; st < 7; ++st) {
      const int64_t out = make_divisible(cfg[st][1] * spec.width);
      // Small inputs: the 24-channel stage keeps the resolution too (the usual CIFAR adaptation).
      const int64_t s = (small && st == 1) ? 1 : cfg[st][3];
      for (int64_t i = 0; i < cfg[st][2]; ++i) {
        blocks_.push_back(features->register_module(std::to_string(idx++),
                                                    InvertedResidual(in, out, i == 0 ? s : 1, cfg[st][0])));
        in = out;
      }
    }
    head_ = features->register_module(std::to_string(idx), ConvBnAct(conv_opts(in, last, 1), Act::ReLU6));
    auto classifier = register_module("classifier", std::make_shared<torch::nn::Module>());
    fc_ = classifier->register_module("1", quant::QLinear(last, spec.num_classes));
    detail::init_bn_and_linear(*this, 0.01);
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = stem_->forward(x);
    for (auto& b : blocks_) y = b->forward(y);
    y = at::adaptive_avg_pool2d(head_->forward(y), {1, 1}).flatten(1);
    return fc_->forward(detail::dropout(y, 0.2, is_training()));
  }

 private:
  ConvBnAct stem_{nullptr}, head_{nullptr};
  std::vector<InvertedResidual> blocks_;
  quant::QLinear fc_{nullptr};
};

}  // namespace

void detail::init_bn_and_linear(torch::nn::Module& m, double linear_std) {
  at::NoGradGuard ng;
  for (const auto& item : m.named_modules("", /*include_self=*/false)) {
    if (auto* l = dynamic_cast<quant::QLinearImpl*>(item.value().get())) {
      torch::nn::init::normal_(l->weight, 0.0, linear_std);
      if (l->bias.defined()) l->bias.zero_();
    }
  }
}

void register_mobilenetv2(Registry<ArchEntry>& r) {
  r.add("mobilenetv2", {"MobileNetV2 1.0 (torchvision): inverted residuals, ReLU6, 1280-d head",
                        [](const ModelSpec& s) { return std::make_shared<MobileNetV2>(s); }, 3504872, 0.3007,
                        "torchvision.models.mobilenet_v2 (state-dict names and shapes)"});
}

}  // namespace qbench::models
