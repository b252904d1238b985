// CIFAR-style ResNets (He et al. 2016, arXiv:1512.03385, Sec. 4.2): a 3x3 stem with 16 channels,
// three stages of 2n 3x3 convs at 16/32/64 channels (stride 2 at each stage change), global
// average pooling and a linear classifier; depth = 6n + 2 (ResNet-20: n = 3). Shortcuts that
// change shape use a 1x1 conv + BN (option B), so every layer is a quantizable conv. On 28x28
// input the stages run at 28, 14 and 7 pixels.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>

#include "qbench/models/models.h"

namespace qbench::models {
namespace {

using quant::QConv2d;
using quant::QConv2dOptions;

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module("conv1", QConv2d(QConv2dOptions{in, out, 3, stride, 1}));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2 = register_module("conv2", QConv2d(QConv2dOptions{out, out, 3, 1, 1}));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      down_conv = register_module("downsample_conv", QConv2d(QConv2dOptions{in, out, 1, stride, 0}));
      down_bn = register_module("downsample_bn", torch::nn::BatchNorm2d(out));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    auto y = at::relu(bn1->forward(conv1->forward(x)));
    y = bn2->forward(conv2->forward(y));
    auto identity = down_conv ? down_bn->forward(down_conv->forward(x)) : x;
    return at::relu(y + identity);
  }
  QConv2d conv1{nullptr}, conv2{nullptr}, down_conv{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, down_bn{nullptr};
};
TORCH_MODULE(BasicBlock);

class CifarResNet : public quant::QuantModel {
 public:
  CifarResNet(int64_t blocks_per_stage, double width, const ModelSpec& spec) {
    auto ch = [width](int64_t c) { return std::max<int64_t>(4, static_cast<int64_t>(c * width + 0.5)); };
    const int64_t c1 = ch(16), c2 = ch(32), c3 = ch(64);
    conv1 = register_module("conv1", QConv2d(QConv2dOptions{spec.in_channels, c1, 3, 1, 1}));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(c1));
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
    auto y = at::relu(bn1->forward(conv1->forward(x)));
    for (auto& stage : stages) y = stage->forward(y);
    y = at::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
    return fc->forward(y);
  }

 private:
  QConv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> stages;
  quant::QLinear fc{nullptr};
};

}  // namespace

void register_cifar_resnets(Registry<ArchEntry>& r) {
  r.add("resnet20", {"CIFAR-style ResNet-20 (3x3 basic blocks, 16/32/64 channels, ~0.27M params)",
                     [](const ModelSpec& s) { return std::make_shared<CifarResNet>(3, 1.0, s); }});
  r.add("resnet8", {"CIFAR-style ResNet-8 (one basic block per stage, ~0.08M params): fast runs and tests",
                    [](const ModelSpec& s) { return std::make_shared<CifarResNet>(1, 1.0, s); }});
  r.add("resnet8-w0.5", {"ResNet-8 at half width (8/16/32 channels): a tiny model for end-to-end tests",
                         [](const ModelSpec& s) { return std::make_shared<CifarResNet>(1, 0.5, s); }});
}

}  // namespace qbench::models
