#pragma once
// Building blocks shared by the zoo: a conv + BN (+ activation) triple registered either flat in
// its parent under given names (torchvision ResNet "conv1"/"bn1", timm "conv_pw"/"bn1") or as a
// child module with its own names (torchvision Conv2dNormActivation "0"/"1", timm ConvNormAct
// "conv"/"bn"). Either way the conv declares its BN partner and activation.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "qbench/models/models.h"

namespace qbench::models::detail {

using quant::Act;
using quant::QConv2d;
using quant::QConv2dOptions;

/// Dropout whose mask is drawn from the CPU's default generator on every device: on the CPU it is
/// at::dropout itself (which draws noise = bernoulli(1 - p) / (1 - p) there and multiplies); on
/// another device the same noise is drawn on the CPU and moved, so a seed trains with the same
/// masks on a GPU as on the CPU (at::dropout would use the GPU's own generator and fused kernel).
inline at::Tensor dropout(const at::Tensor& x, double p, bool train) {
  if (!train || p <= 0.0 || x.device().is_cpu()) return at::dropout(x, p, train);
  if (p >= 1.0) return x * 0.0;
  auto noise = at::empty(x.sizes(), x.options().device(at::kCPU));
  noise.bernoulli_(1.0 - p);
  noise.div_(1.0 - p);
  return x * noise.to(x.device());
}

/// A conv + BN pair registered flat in `parent`.
struct ConvBn {
  QConv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  Act act = Act::None;
  /// conv -> BN -> act, with the BN folded the way the conv is set to (QConv2dImpl::forward_fused).
  at::Tensor operator()(const at::Tensor& x) { return conv->forward_fused(x); }
  explicit operator bool() const { return static_cast<bool>(conv); }
};

inline ConvBn conv_bn(torch::nn::Module& parent, const std::string& conv_name, const std::string& bn_name,
                      const QConv2dOptions& o, Act act, double bn_eps = 1e-5) {
  ConvBn c;
  c.conv = parent.register_module(conv_name, QConv2d(o));
  c.bn = parent.register_module(bn_name, torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(o.out_channels).eps(bn_eps)));
  c.act = act;
  c.conv->set_partner(c.bn.get(), act);
  return c;
}

/// A conv + BN (+ act) as its own module with named children (an nn.Sequential in torchvision).
class ConvBnActImpl : public torch::nn::Module {
 public:
  ConvBnActImpl(const QConv2dOptions& o, Act act, const std::string& conv_name = "0", const std::string& bn_name = "1")
      : cb_(conv_bn(*this, conv_name, bn_name, o, act)) {}
  at::Tensor forward(const at::Tensor& x) { return cb_(x); }

 private:
  ConvBn cb_;
};
TORCH_MODULE(ConvBnAct);

inline QConv2dOptions conv_opts(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t groups = 1) {
  return QConv2dOptions{in, out, k, stride, k / 2, groups};
}

/// torchvision / timm `_make_divisible`: round to the nearest multiple of `divisor`, never more
/// than 10% below the unrounded value.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t n = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/// BN weights 1 and biases 0; linear N(0, 0.01), zero bias (torchvision MobileNetV2 / timm init).
void init_bn_and_linear(torch::nn::Module& m, double linear_std);

}  // namespace qbench::models::detail
