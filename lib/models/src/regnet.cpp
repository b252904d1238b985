// RegNetX-600MF as pycls / timm define it (Radosavovic et al. 2020, arXiv:2003.13678, the X block:
// 1x1 -> grouped 3x3 -> 1x1 bottleneck, bottleneck ratio 1, no SE). Config from pycls
// RegNetX-600MF (w0 48, wa 36.97, wm 2.24, group width 24, depth 16) resolves to stage depths
// [1, 3, 5, 7] and widths [48, 96, 240, 528]. Names match timm's regnetx_006 state dict:
// stem.{conv,bn}, s{1..4}.b{1..d}.conv{1,2,3}.{conv,bn}, .downsample.{conv,bn}, head.fc.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include "layers.h"

namespace qbench::models {
namespace {

using namespace detail;

class XBlockImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  XBlockImpl(int64_t in, int64_t out, int64_t stride, int64_t group_width) {
    const int64_t groups = out / group_width;
    c1_ = register_module("conv1", ConvBnAct(conv_opts(in, out, 1), Act::ReLU, "conv", "bn"));
    c2_ = register_module("conv2", ConvBnAct(conv_opts(out, out, 3, stride, groups), Act::ReLU, "conv", "bn"));
    c3_ = register_module("conv3", ConvBnAct(conv_opts(out, out, 1), Act::None, "conv", "bn"));
    if (stride != 1 || in != out)
      down_ = register_module("downsample", ConvBnAct(conv_opts(in, out, 1, stride), Act::None, "conv", "bn"));
    add_ = register_module("add", quant::QAdd(/*relu_after=*/true));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto y = c3_->forward(c2_->forward(c1_->forward(x)));
    return add_->forward(y, down_ ? down_->forward(x) : x);
  }
  const char* block_kind() const override { return "regnet_x"; }
  at::Tensor forward_block(const at::Tensor& x) override { return forward(x); }

 private:
  ConvBnAct c1_{nullptr}, c2_{nullptr}, c3_{nullptr}, down_{nullptr};
  quant::QAdd add_{nullptr};
};
TORCH_MODULE(XBlock);

class RegNetX : public quant::QuantModel {
 public:
  RegNetX(std::vector<int64_t> depths, std::vector<int64_t> widths, int64_t group_width, const ModelSpec& spec) {
    const bool small = spec.stem == Stem::Small;
    stem_ = register_module("stem", ConvBnAct(conv_opts(spec.in_channels, 32, 3, small ? 1 : 2), Act::ReLU, "conv", "bn"));
    int64_t in = 32;
    for (size_t s = 0; s < depths.size(); ++s) {
      // Width multiplier: keep every stage a whole number of groups.
      const int64_t out = std::max<int64_t>(group_width, static_cast<int64_t>(widths[s] * spec.width / group_width + 0.5) * group_width);
      auto stage = register_module("s" + std::to_string(s + 1), std::make_shared<torch::nn::Module>());
      for (int64_t b = 0; b < depths[s]; ++b) {
        const int64_t stride = (b == 0 && !(small && s == 0)) ? 2 : 1;
        blocks_.push_back(stage->register_module("b" + std::to_string(b + 1), XBlock(in, out, stride, group_width)));
        in = out;
      }
    }
    auto head = register_module("head", std::make_shared<torch::nn::Module>());
    fc_ = head->register_module("fc", quant::QLinear(in, spec.num_classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = stem_->forward(x);
    for (auto& b : blocks_) y = b->forward(y);
    return fc_->forward(at::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

 private:
  ConvBnAct stem_{nullptr};
  std::vector<XBlock> blocks_;
  quant::QLinear fc_{nullptr};
};

}  // namespace

void register_regnet(Registry<ArchEntry>& r) {
  r.add("regnetx-600mf", {"RegNetX-600MF (pycls/timm regnetx_006): X blocks, depths [1,3,5,7], widths [48,96,240,528]",
                          [](const ModelSpec& s) {
                            return std::make_shared<RegNetX>(std::vector<int64_t>{1, 3, 5, 7},
                                                             std::vector<int64_t>{48, 96, 240, 528}, 24, s);
                          },
                          6196040, 0.5996, "timm regnetx_006 / pycls RegNetX-600MF (state-dict names and shapes)"});
}

}  // namespace qbench::models
