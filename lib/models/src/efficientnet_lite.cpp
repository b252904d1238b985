// EfficientNet-Lite0 as timm defines it (Tan & Le 2019, arXiv:1905.11946, Table 1, with the
// "Lite" changes for integer hardware: no squeeze-and-excitation, ReLU6 instead of swish, stem
// and head fixed at 32 and 1280 channels; timm efficientnet.py `_gen_efficientnet_lite`).
// Names match timm's state dict: conv_stem, bn1, blocks.{stage}.{i}.{conv_dw, bn1, conv_pw, bn2}
// (depthwise-separable first stage) or .{conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3} (MBConv),
// conv_head, bn2, classifier.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include "layers.h"

namespace qbench::models {
namespace {

using namespace detail;

class MBConvImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  MBConvImpl(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t expand) : ds_(expand == 1) {
    if (ds_) {  // timm DepthwiseSeparableConv: dw -> BN -> ReLU6 -> pw -> BN
      a_ = conv_bn(*this, "conv_dw", "bn1", conv_opts(in, in, k, stride, in), Act::ReLU6);
      b_ = conv_bn(*this, "conv_pw", "bn2", conv_opts(in, out, 1), Act::None);
    } else {    // timm InvertedResidual: pw -> BN -> ReLU6 -> dw -> BN -> ReLU6 -> pwl -> BN
      const int64_t mid = in * expand;
      a_ = conv_bn(*this, "conv_pw", "bn1", conv_opts(in, mid, 1), Act::ReLU6);
      b_ = conv_bn(*this, "conv_dw", "bn2", conv_opts(mid, mid, k, stride, mid), Act::ReLU6);
      c_ = conv_bn(*this, "conv_pwl", "bn3", conv_opts(mid, out, 1), Act::None);
    }
    if (stride == 1 && in == out) add_ = register_module("add", quant::QAdd(/*relu_after=*/false));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto y = b_(a_(x));
    if (c_) y = c_(y);
    return add_ ? add_->forward(y, x) : y;
  }
  const char* block_kind() const override { return ds_ ? "ds_conv" : "mbconv"; }
  at::Tensor forward_block(const at::Tensor& x) override { return forward(x); }

 private:
  bool ds_;
  ConvBn a_, b_, c_;
  quant::QAdd add_{nullptr};
};
TORCH_MODULE(MBConv);

class EfficientNetLite : public quant::QuantModel {
 public:
  explicit EfficientNetLite(const ModelSpec& spec) {
    const bool small = spec.stem == Stem::Small;
    // expansion, kernel, stride, channels, repeats (timm arch_def "ds_r1_k3_s1_e1_c16", ...).
    const int64_t cfg[7][5] = {{1, 3, 1, 16, 1}, {6, 3, 2, 24, 2}, {6, 5, 2, 40, 2}, {6, 3, 2, 80, 3},
                               {6, 5, 1, 112, 3}, {6, 5, 2, 192, 4}, {6, 3, 1, 320, 1}};
    const int64_t stem = 32, head = 1280;  // fixed in the Lite variants
    stem_ = conv_bn(*this, "conv_stem", "bn1", conv_opts(spec.in_channels, stem, 3, small ? 1 : 2), Act::ReLU6);
    auto blocks = register_module("blocks", std::make_shared<torch::nn::Module>());
    int64_t in = stem;
    for (int st = 0; st < 7; ++st) {
      auto stage = blocks->register_module(std::to_string(st), std::make_shared<torch::nn::Module>());
      const int64_t out = make_divisible(cfg[st][3] * spec.width);
      const int64_t s = (small && st == 1) ? 1 : cfg[st][2];
      for (int64_t i = 0; i < cfg[st][4]; ++i) {
        blocks_.push_back(stage->register_module(std::to_string(i), MBConv(in, out, cfg[st][1], i == 0 ? s : 1, cfg[st][0])));
        in = out;
      }
    }
    head_ = conv_bn(*this, "conv_head", "bn2", conv_opts(in, head, 1), Act::ReLU6);
    fc_ = register_module("classifier", quant::QLinear(head, spec.num_classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = stem_(x);
    for (auto& b : blocks_) y = b->forward(y);
    y = at::adaptive_avg_pool2d(head_(y), {1, 1}).flatten(1);
    return fc_->forward(detail::dropout(y, 0.2, is_training()));
  }

 private:
  ConvBn stem_, head_;
  std::vector<MBConv> blocks_;
  quant::QLinear fc_{nullptr};
};

}  // namespace

void register_efficientnet_lite(Registry<ArchEntry>& r) {
  r.add("efficientnet-lite0", {"EfficientNet-Lite0 (timm): MBConv, ReLU6, no SE, fixed stem/head",
                               [](const ModelSpec& s) { return std::make_shared<EfficientNetLite>(s); }, 4652008,
                               0.3856, "timm efficientnet_lite0 (state-dict names and shapes)"});
}

}  // namespace qbench::models
