#pragma once
// An imported ONNX graph as a qbench QuantModel: an execution plan (one step per fused group of
// ONNX nodes, values in a flat slot array, no maps or strings touched per forward) whose convs,
// Gemms and MatMuls with constant weights are QConv2d / QLinear modules, a Conv followed by
// BatchNormalization declares it as its BN partner (with the Relu / Clip(0,6) after it), residual
// Adds of two activations are QAdd modules (with the Relu after them), and the single-entry,
// single-exit regions around residual Adds and branch Concats are BlockModules.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "qbench/onnx/import.h"
#include "qbench/quant/qmodules.h"

namespace qbench::onnx {

/// What one plan step is, for inspect and the tests.
struct StepInfo {
  std::string node;           ///< ONNX node name of the step's main node
  std::string op;             ///< ONNX op ("Conv", "Add", ...); fused nodes joined by "+"
  std::vector<std::string> fused;  ///< the names of the nodes the step covers
  std::string module;         ///< module path of its QConv2d / QLinear / QAdd ("" for float ops)
  std::vector<int64_t> out_shape;  ///< per-sample output shape (batch 1) from the probe pass
  int64_t params = 0;         ///< parameters the step owns (weights, biases, BN affine, slopes)
  int64_t macs = 0;           ///< multiply-accumulates per sample (conv, linear, matmul)
};

class OnnxModel : public quant::QuantModel {
 public:
  OnnxModel(const ImportedGraph& g, bool use_initializers);
  ~OnnxModel() override;
  /// The first runtime input -> the first output (the classifier's logits).
  at::Tensor forward(const at::Tensor& x) override;
  /// Every runtime input (in file order) -> every output (in file order).
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs);
  /// True when at least one conv declares a BatchNorm partner (folding strategies apply).
  bool has_bn() const { return has_bn_; }
  const std::vector<StepInfo>& steps() const;
  const std::string& file_name() const { return file_name_; }
  /// Module::to, and the graph's constant operands (Gemm matrix biases, constant Mul/Add operands,
  /// pool divisors) go along, so the executor runs on any device.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;
  const std::vector<int64_t>& sample_shape() const { return sample_shape_; }

  struct Plan;  // in model.cpp

 private:
  std::unique_ptr<Plan> plan_;
  bool has_bn_ = false;
  std::string file_name_;
  std::vector<int64_t> sample_shape_;
};

/// Builds the executor. use_initializers: copy the file's weights (an FP32 model to quantize) or
/// draw fresh ones from torch's global generator with the zoo's rules (convs Kaiming-normal
/// fan_out, biases zero; linear layers nn.Linear's uniform; BN weight 1, bias 0; PReLU 0.25), so
/// `train: true` trains the structure. Throws OnnxError listing every node whose attributes the
/// executor cannot honour exactly, when the probe pass (batch 2) fails, and for graphs that are
/// no classifier to quantize (not one input and one output, or no quantizable layer; the
/// OnnxModel constructor itself executes any graph, which run() serves).
std::shared_ptr<OnnxModel> make_model(const ImportedGraph& g, bool use_initializers);

}  // namespace qbench::onnx
