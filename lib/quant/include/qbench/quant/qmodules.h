#pragma once
// Quantizable layers and the model interface the quantization work walks. Every architecture
// builds its conv/linear layers from QConv2d/QLinear and registers modules in execution order,
// so "first" and "last" layer come from the module tree, not from per-model code.
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>

#include <memory>
#include <string>
#include <vector>

#include "qbench/quant/quantizer.h"

namespace qbench::quant {

/// A conv or linear layer whose weight and input can carry fake quantizers.
class QuantLayer {
 public:
  virtual ~QuantLayer() = default;
  virtual const char* layer_type() const = 0;  ///< "conv2d" | "linear"
  virtual at::Tensor& weight_tensor() = 0;
  void attach(std::shared_ptr<FakeQuantizer> weight_q, std::shared_ptr<FakeQuantizer> input_q);
  FakeQuantizer* weight_quantizer() const { return weight_q_.get(); }
  FakeQuantizer* input_quantizer() const { return input_q_.get(); }
  /// Multiply-accumulates for one sample, recorded by the last forward pass.
  int64_t macs_per_sample() const { return macs_; }

 protected:
  at::Tensor quantized_input(const at::Tensor& x) { return input_q_ ? input_q_->forward(x) : x; }
  at::Tensor quantized_weight(const at::Tensor& w) { return weight_q_ ? weight_q_->forward(w) : w; }
  virtual torch::nn::Module& as_module() = 0;
  std::shared_ptr<FakeQuantizer> weight_q_, input_q_;
  int64_t macs_ = 0;
};

struct QConv2dOptions {
  int64_t in_channels, out_channels, kernel_size, stride = 1, padding = 0, groups = 1;
  bool bias = false;
};

class QConv2dImpl : public torch::nn::Module, public QuantLayer {
 public:
  explicit QConv2dImpl(const QConv2dOptions& o);
  at::Tensor forward(const at::Tensor& x);
  const char* layer_type() const override { return "conv2d"; }
  at::Tensor& weight_tensor() override { return weight; }
  const QConv2dOptions& options() const { return opt_; }
  at::Tensor weight, bias;  ///< torchvision names: "weight" (O, I/groups, k, k), "bias" (O)

 private:
  torch::nn::Module& as_module() override { return *this; }
  QConv2dOptions opt_;
};
TORCH_MODULE(QConv2d);

class QLinearImpl : public torch::nn::Module, public QuantLayer {
 public:
  QLinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x);
  const char* layer_type() const override { return "linear"; }
  at::Tensor& weight_tensor() override { return weight; }
  at::Tensor weight, bias;

 private:
  torch::nn::Module& as_module() override { return *this; }
};
TORCH_MODULE(QLinear);

struct LayerRef {
  std::string name;  ///< module path, e.g. "layer1.0.conv1"
  QuantLayer* layer = nullptr;
  bool is_first = false, is_last = false;
};

/// What every architecture implements.
class QuantModel : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// Conv/linear layers in execution (registration) order; first and last marked.
  std::vector<LayerRef> quant_layers();
  /// All fake quantizers attached to the model's layers.
  std::vector<FakeQuantizer*> quantizers();
};

}  // namespace qbench::quant
