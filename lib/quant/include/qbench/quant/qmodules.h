#pragma once
// Quantizable layers and the model interface the quantization work walks. Every architecture
// builds its conv/linear layers from QConv2d/QLinear and registers modules in execution order,
// so "first" and "last" layer come from the module tree, not from per-model code.
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qbench/quant/pooling.h"
#include "qbench/quant/quantizer.h"

namespace qbench::quant {

/// The activation that follows a layer (after its BatchNorm partner, if any), as the architecture
/// declares it: what integer lowering fuses and what BN folding must keep in place.
enum class Act { None, ReLU, ReLU6 };
const char* act_name(Act a);
at::Tensor apply_act(const at::Tensor& x, Act a);

/// A conv or linear layer whose weight and input can carry fake quantizers.
class QuantLayer {
 public:
  virtual ~QuantLayer() = default;
  /// Declares the BatchNorm that follows this layer and the activation after it. The BN stays
  /// owned by the architecture's module tree; the pointer is valid as long as the model is.
  void set_partner(torch::nn::BatchNorm2dImpl* bn, Act act) {
    bn_ = bn;
    act_ = act;
  }
  torch::nn::BatchNorm2dImpl* bn() const { return bn_; }
  Act act() const { return act_; }
  virtual const char* layer_type() const = 0;  ///< "conv2d" | "linear"
  virtual at::Tensor& weight_tensor() = 0;
  void attach(std::shared_ptr<FakeQuantizer> weight_q, std::shared_ptr<FakeQuantizer> input_q);
  /// Removes the input quantizer (attach never clears a slot): for measurements that tap a
  /// layer's input for a while (lib/mixed).
  void detach_input();
  FakeQuantizer* weight_quantizer() const { return weight_q_.get(); }
  FakeQuantizer* input_quantizer() const { return input_q_.get(); }
  /// Multiply-accumulates for one sample, recorded by the last forward pass.
  int64_t macs_per_sample() const { return macs_; }
  /// Input and output elements per sample, recorded by the last forward pass (roofline model).
  int64_t in_elems_per_sample() const { return in_elems_; }
  int64_t out_elems_per_sample() const { return out_elems_; }

  /// Integer deployment (lib/deploy): when set, the layer's whole fused computation (conv, its
  /// folded BatchNorm and activation; or linear) is this function instead of the float one. The
  /// tensors it receives and returns may be quantized (at::kQUInt8) tensors.
  using DeployFn = std::function<at::Tensor(const at::Tensor&)>;
  void set_deploy(DeployFn f) { deploy_ = std::move(f); }
  bool deployed() const { return static_cast<bool>(deploy_); }

  /// Observes what the layer computes before its activation (after its BatchNorm, folded or not;
  /// the linear output) on every float forward pass: how PTQ methods that correct a layer's
  /// output statistics (bias correction) see it. May throw to stop the forward pass there. The
  /// deploy path does not call it. Empty: nothing is observed.
  using OutputTap = std::function<void(const at::Tensor&)>;
  void set_output_tap(OutputTap f) { tap_ = std::move(f); }

  /// Integer bias (a profile's `bias: int32`): while both quantizers are quantizing and affine, the
  /// bias is rounded to the accumulator's grid s_in * s_w (per output channel for per-channel
  /// weights), as runtimes that add an int32 bias compute it; the gradient passes straight through.
  void set_bias_int32(bool on) { bias_int32_ = on; }
  bool bias_int32() const { return bias_int32_; }

 protected:
  at::Tensor quantized_input(const at::Tensor& x) { return input_q_ ? input_q_->forward(x) : x; }
  at::Tensor quantized_weight(const at::Tensor& w) { return weight_q_ ? weight_q_->forward(w) : w; }
  at::Tensor quantized_bias(const at::Tensor& b) const;
  virtual torch::nn::Module& as_module() = 0;
  std::shared_ptr<FakeQuantizer> weight_q_, input_q_;
  int64_t macs_ = 0, in_elems_ = 0, out_elems_ = 0;
  torch::nn::BatchNorm2dImpl* bn_ = nullptr;
  Act act_ = Act::None;
  DeployFn deploy_;
  OutputTap tap_;
  bool bias_int32_ = false;
};

struct QConv2dOptions {
  int64_t in_channels, out_channels, kernel_size, stride = 1, padding = 0, groups = 1;
  bool bias = false;
};

class QConv2dImpl : public torch::nn::Module, public QuantLayer {
 public:
  explicit QConv2dImpl(const QConv2dOptions& o);
  /// The conv alone (quantized input and weight, own bias): what the layer computes when its BN
  /// is not folded.
  at::Tensor forward(const at::Tensor& x);
  /// conv -> BN partner -> activation, with the BN folded as set_bn_fold says: what the
  /// architectures call. With no partner: conv -> activation.
  at::Tensor forward_fused(const at::Tensor& x);
  /// MQBench's BN folding strategies (Li et al. 2021, "MQBench", sec. 3.3; mqbench/nn/intrinsic/qat):
  ///  -1  no folding: the raw weight is quantized, BN stays a float op after the conv
  ///   0  merged once: W <- W*gamma/sigma_run, bias <- beta + (b - mu_run)*gamma/sigma_run; BN gone,
  ///      statistics and BN parameters frozen (done at set_bn_fold(0); the conv gains a bias)
  ///   1  folded on the fly with the frozen running statistics; gamma and beta train
  ///   2  Jacob et al. 2018: training mode runs an extra float conv for the batch statistics and
  ///      folds with them (running statistics updated); eval folds with the running ones
  ///   3  Krishnamoorthi 2018: quantize the running-statistics fold, then correct the output by
  ///      sigma_run/sigma_batch and the batch mean during training (extra float conv for the stats)
  ///   4  PyTorch QAT ConvBn: quantize W*gamma/sigma_run, divide the output by gamma/sigma_run, then
  ///      a real BN on batch statistics (training); eval equals the running-statistics fold
  /// Needs a BN partner (no-op without one). Switching away from 0 after merging throws.
  void set_bn_fold(int strategy);
  int bn_fold() const { return fold_; }
  /// The weight and bias the layer uses at inference (eval mode): for strategies 0..4 the
  /// running-statistics fold, otherwise the raw weight and bias (zeros when the conv has none).
  std::pair<at::Tensor, at::Tensor> folded_weight_bias() const;
  const char* layer_type() const override { return "conv2d"; }
  at::Tensor& weight_tensor() override { return weight; }
  const QConv2dOptions& options() const { return opt_; }
  at::Tensor weight, bias;  ///< torchvision names: "weight" (O, I/groups, k, k), "bias" (O)

 private:
  torch::nn::Module& as_module() override { return *this; }
  at::Tensor conv(const at::Tensor& xq, const at::Tensor& w, const at::Tensor& b);
  at::Tensor forward_folded(const at::Tensor& x);
  /// The running-statistics fold: W * gamma / sigma_run and beta + (b - mu_run) * gamma / sigma_run.
  /// Kept from the last call while its six inputs are the same tensors at the same versions and
  /// storage, and none needs a gradient (reconstruction and evaluation: frozen weights and BN,
  /// every batch).
  std::pair<at::Tensor, at::Tensor> running_fold();
  struct FoldCache {
    std::vector<at::Tensor> inputs;  ///< weight, bias, gamma, beta, running mean, running var
    std::vector<int64_t> versions;
    std::vector<const void*> data;  ///< storage of each input (a move to another device swaps it)
    at::Tensor w, b;
  };
  QConv2dOptions opt_;
  int fold_ = -1;
  FoldCache fold_cache_;
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

/// A residual add (optionally followed by ReLU, as in ResNet blocks), declared as a module so the
/// structure walk finds every add, and integer lowering maps it to quantized::add / add_relu.
/// Holds no parameters: it does not change a state dict's names.
class QAddImpl : public torch::nn::Module {
 public:
  explicit QAddImpl(bool relu_after) : relu_(relu_after) {}
  at::Tensor forward(const at::Tensor& a, const at::Tensor& b);
  /// Integer deployment (lib/deploy): when set, replaces forward (operands and result may be
  /// quantized tensors).
  using DeployFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;
  void set_deploy(DeployFn f) { deploy_ = std::move(f); }
  bool relu_after() const { return relu_; }
  /// Optional fake quantizer on the add's output (profiles that quantize adds attach one).
  void attach_output(std::shared_ptr<FakeQuantizer> q);
  /// Optional fake quantizers on the add's two operands (TensorRT-style placement).
  void attach_inputs(std::shared_ptr<FakeQuantizer> qa, std::shared_ptr<FakeQuantizer> qb);
  FakeQuantizer* output_quantizer() const { return out_q_.get(); }
  FakeQuantizer* input_quantizer(int i) const { return (i == 0 ? in_a_ : in_b_).get(); }
  /// Reconstruction's fused kernels (lib/ptq): when set, tried first with the raw operands; a
  /// defined result replaces the operand quantizers, the add and the ReLU (the output quantizer
  /// still applies), an undefined one declines. Cleared with nullptr.
  using FusedFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;
  void set_fused(FusedFn f) { fused_ = std::move(f); }

 private:
  bool relu_;
  std::shared_ptr<FakeQuantizer> out_q_, in_a_, in_b_;
  DeployFn deploy_;
  FusedFn fused_;
};
TORCH_MODULE(QAdd);

/// Marks a module as one of the architecture's blocks (the unit of block reconstruction):
/// "basic" and "bottleneck" (ResNet), "inverted_residual" (MobileNetV2), "ds_conv" and "mbconv"
/// (EfficientNet), "regnet_x" (RegNetX).
class BlockModule {
 public:
  virtual ~BlockModule() = default;
  virtual const char* block_kind() const = 0;
  virtual at::Tensor forward_block(const at::Tensor& x) = 0;
};

struct LayerRef {
  std::string name;  ///< module path, e.g. "layer1.0.conv1"
  QuantLayer* layer = nullptr;
  bool is_first = false, is_last = false;
  std::string bn_name;  ///< module path of the declared BatchNorm partner ("" when none)
  torch::nn::BatchNorm2dImpl* bn = nullptr;
  Act act = Act::None;
  std::string block;  ///< path of the innermost block containing the layer ("" when none)
};

struct BlockRef {
  std::string name;  ///< module path, e.g. "layer2.0"
  std::string kind;  ///< BlockModule::block_kind()
  BlockModule* block = nullptr;
  torch::nn::Module* module = nullptr;
  std::vector<std::string> layers;  ///< quant layers inside, in execution order
};

struct AddRef {
  std::string name;  ///< module path, e.g. "layer1.0.add"
  QAddImpl* add = nullptr;
};

/// One layer's widths chosen by mixed precision (lib/mixed): weight and input activation.
struct LayerBits {
  int w = 8, a = 8;
};

/// What every architecture implements.
class QuantModel : public torch::nn::Module {
 public:
  /// Per-layer widths by layer name (mixed precision): attach_quantizers takes them over the
  /// cell's widths for the layers named; empty (the default) leaves every layer at the cell's.
  void set_bit_allocation(std::map<std::string, LayerBits> widths) { bit_allocation_ = std::move(widths); }
  const std::map<std::string, LayerBits>& bit_allocation() const { return bit_allocation_; }

  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// Conv/linear layers in execution (registration) order; first and last marked, each with its
  /// declared BatchNorm partner, activation and enclosing block.
  std::vector<LayerRef> quant_layers();
  /// The declared blocks, in execution order (nested blocks are not used by the zoo).
  std::vector<BlockRef> blocks();
  /// The residual adds, in execution order.
  std::vector<AddRef> adds();
  /// All fake quantizers attached to the model: its layers' (input, weight), then its adds'
  /// (operands, output).
  std::vector<FakeQuantizer*> quantizers();
  /// The pooling attributes flipped at inference (SysNoise's ceil-mode and count-include-pad):
  /// every pooling call of the architecture asks these which value to run with.
  PoolingModes& pooling_modes() { return pooling_modes_; }
  const PoolingModes& pooling_modes() const { return pooling_modes_; }

 private:
  std::map<std::string, LayerBits> bit_allocation_;
  PoolingModes pooling_modes_;
};

/// Sets BN folding strategy `strategy` (-1..4, see QConv2dImpl::set_bn_fold) on every conv that
/// declares a BN partner. Returns the number of convs folded.
int apply_bn_fold(QuantModel& model, int strategy);

}  // namespace qbench::quant
