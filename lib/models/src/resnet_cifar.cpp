// CIFAR-style ResNets (He et al. 2016, arXiv:1512.03385, Sec. 4.2): a 3x3 stem with 16 channels,
// three stages of 2n 3x3 convs at 16/32/64 channels (stride 2 at each stage change), global
// average pooling and a linear classifier; depth = 6n + 2 (ResNet-20: n = 3). Shortcuts that
// change shape use a 1x1 conv + BN (option B), so every layer is a quantizable conv. On 28x28
// input the stages run at 28, 14 and 7 pixels.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>

#include "layers.h"

namespace qbench::models {
namespace {

using namespace detail;

class BasicBlockImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    c1_ = conv_bn(*this, "conv1", "bn1", conv_opts(in, out, 3, stride), Act::ReLU);
    c2_ = conv_bn(*this, "conv2", "bn2", conv_opts(out, out, 3), Act::None);
    if (stride != 1 || in != out)
      down_ = conv_bn(*this, "downsample_conv", "downsample_bn", conv_opts(in, out, 1, stride), Act::None);
    add_ = register_module("add", quant::QAdd(/*relu_after=*/true));
  }
  at::Tensor forward(const at::Tensor& x) { return add_->forward(c2_(c1_(x)), down_ ? down_(x) : x); }
  const char* block_kind() const override { return "basic"; }
  at::Tensor forward_block(const at::Tensor& x) override { return forward(x); }

 private:
  ConvBn c1_, c2_, down_;
  quant::QAdd add_{nullptr};
};
TORCH_MODULE(BasicBlock);

class CifarResNet : public quant::QuantModel {
 public:
  CifarResNet(int64_t blocks_per_stage, double base_width, const ModelSpec& spec) {
    const double width = base_width * spec.width;
    auto ch = [width](int64_t c) { return std::max<int64_t>(4, static_cast<int64_t>(c * width + 0.5)); };
    const int64_t c1 = ch(16), c2 = ch(32), c3 = ch(64);
    stem_ = conv_bn(*this, "conv1", "bn1", conv_opts(spec.in_channels, c1, 3), Act::ReLU);
    int64_t in = c1;
    const int64_t widths[3] = {c1, c2, c3};
    for (int s = 0; s < 3; ++s) {
      torch::nn::Sequential stage;
      for (int64_t b = 0; b < blocks_per_stage; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(BasicBlock(in, widths[s], stride));
        in = widths[s];
      }
      stages.push_back(register_module("layer" + std::to_string(s + 1), stage));
    }
    fc = register_module("fc", quant::QLinear(in, spec.num_classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = stem_(x);
    for (auto& stage : stages) y = stage->forward(y);
    y = at::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
    return fc->forward(y);
  }

 private:
  ConvBn stem_;
  std::vector<torch::nn::Sequential> stages;
  quant::QLinear fc{nullptr};
};

}  // namespace

void register_resnet_cifar(Registry<ArchEntry>& r) {
  r.add("resnet20", {"CIFAR-style ResNet-20 (3x3 basic blocks, 16/32/64 channels, ~0.27M params)",
                     [](const ModelSpec& s) { return std::make_shared<CifarResNet>(3, 1.0, s); }});
  r.add("resnet8", {"CIFAR-style ResNet-8 (one basic block per stage, ~0.08M params): fast runs and tests",
                    [](const ModelSpec& s) { return std::make_shared<CifarResNet>(1, 1.0, s); }});
  r.add("resnet8-w0.5", {"ResNet-8 at half width (8/16/32 channels): a tiny model for end-to-end tests",
                         [](const ModelSpec& s) { return std::make_shared<CifarResNet>(1, 0.5, s); }});
}

}  // namespace qbench::models
