// ResNet-18/34/50 as torchvision defines them (He et al. 2016, arXiv:1512.03385; torchvision
// models/resnet.py, "ResNet v1.5": the stride of a bottleneck sits on its 3x3 conv). Parameter and
// buffer names match torchvision's state dict: conv1, bn1, layer{1..4}.{i}.conv{1,2,3},
// .bn{1,2,3}, .downsample.{0,1}, fc.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>

#include "layers.h"

namespace qbench::models {
namespace {

using namespace detail;

class ResBlockImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  ResBlockImpl(bool bottleneck, int64_t in, int64_t planes, int64_t stride) : bottleneck_(bottleneck) {
    const int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      c1_ = conv_bn(*this, "conv1", "bn1", conv_opts(in, planes, 1), Act::ReLU);
      c2_ = conv_bn(*this, "conv2", "bn2", conv_opts(planes, planes, 3, stride), Act::ReLU);
      c3_ = conv_bn(*this, "conv3", "bn3", conv_opts(planes, out, 1), Act::None);
    } else {
      c1_ = conv_bn(*this, "conv1", "bn1", conv_opts(in, planes, 3, stride), Act::ReLU);
      c2_ = conv_bn(*this, "conv2", "bn2", conv_opts(planes, planes, 3), Act::None);
    }
    if (stride != 1 || in != out)
      down_ = register_module("downsample", ConvBnAct(conv_opts(in, out, 1, stride), Act::None));
    add_ = register_module("add", quant::QAdd(/*relu_after=*/true));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto y = c2_(c1_(x));
    if (bottleneck_) y = c3_(y);
    return add_->forward(y, down_ ? down_->forward(x) : x);
  }
  const char* block_kind() const override { return bottleneck_ ? "bottleneck" : "basic"; }
  at::Tensor forward_block(const at::Tensor& x) override { return forward(x); }

 private:
  bool bottleneck_;
  ConvBn c1_, c2_, c3_;
  ConvBnAct down_{nullptr};
  quant::QAdd add_{nullptr};
};
TORCH_MODULE(ResBlock);

class ResNet : public quant::QuantModel {
 public:
  ResNet(bool bottleneck, std::vector<int> depths, const ModelSpec& spec) : small_(spec.stem == Stem::Small) {
    auto ch = [&](int64_t c) { return std::max<int64_t>(8, static_cast<int64_t>(c * spec.width + 0.5)); };
    const int64_t stem = ch(64);
    stem_ = small_ ? conv_bn(*this, "conv1", "bn1", conv_opts(spec.in_channels, stem, 3, 1), Act::ReLU)
                   : conv_bn(*this, "conv1", "bn1", QConv2dOptions{spec.in_channels, stem, 7, 2, 3}, Act::ReLU);
    int64_t in = stem;
    for (int s = 0; s < 4; ++s) {
      const int64_t planes = ch(64 << s);
      torch::nn::Sequential stage;
      for (int b = 0; b < depths[s]; ++b) {
        stage->push_back(ResBlock(bottleneck, in, planes, (s > 0 && b == 0) ? 2 : 1));
        in = bottleneck ? planes * 4 : planes;
      }
      stages_.push_back(register_module("layer" + std::to_string(s + 1), stage));
    }
    fc_ = register_module("fc", quant::QLinear(in, spec.num_classes));
  }
  at::Tensor forward(const at::Tensor& x) override {
    auto y = stem_(x);
    if (!small_) {
      const bool ceil = pooling_modes().ceil_mode(false, {y.size(2), y.size(3)}, {3, 3}, {2, 2}, {1, 1});
      y = at::max_pool2d(y, {3, 3}, {2, 2}, {1, 1}, {1, 1}, ceil);
    }
    for (auto& s : stages_) y = s->forward(y);
    return fc_->forward(at::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

 private:
  bool small_;
  ConvBn stem_;
  std::vector<torch::nn::Sequential> stages_;
  quant::QLinear fc_{nullptr};
};

}  // namespace

void register_resnet(Registry<ArchEntry>& r) {
  const std::string src = "torchvision.models.resnet (state-dict names and shapes)";
  r.add("resnet18", {"ResNet-18 (torchvision): basic blocks [2,2,2,2]",
                     [](const ModelSpec& s) { return std::make_shared<ResNet>(false, std::vector<int>{2, 2, 2, 2}, s); },
                     11689512, 1.814, src});
  r.add("resnet34", {"ResNet-34 (torchvision): basic blocks [3,4,6,3]",
                     [](const ModelSpec& s) { return std::make_shared<ResNet>(false, std::vector<int>{3, 4, 6, 3}, s); },
                     21797672, 3.664, src});
  r.add("resnet50", {"ResNet-50 (torchvision, v1.5): bottlenecks [3,4,6,3]",
                     [](const ModelSpec& s) { return std::make_shared<ResNet>(true, std::vector<int>{3, 4, 6, 3}, s); },
                     25557032, 4.089, src});
}

}  // namespace qbench::models
