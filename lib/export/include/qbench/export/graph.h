#pragma once
// The exporter's graph: ONNX nodes and initializers held in plain C++ (no protobuf), between the
// tracer that builds it (src/trace.cpp) and the writer that serializes, checks and shape-infers it
// (src/write.cpp, the only file that sees libonnx). Tests read it directly: node counts, axes,
// initializer dtypes, bias scales.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qbench/common/errors.h"

namespace qbench::exporter {

/// A model that cannot be exported in the format asked for (a non-affine quantizer, a scheme the
/// format cannot express, an operator without an ONNX form): the message says which and why.
/// A ConfigError: `qbench export` exits 2.
class ExportError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

/// One ONNX attribute (the kinds the exporter writes).
struct XAttr {
  enum class Kind { Int, Float, Ints, Floats, String } kind = Kind::Int;
  int64_t i = 0;
  float f = 0;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::string s;
  static XAttr of(int64_t v) { XAttr a; a.kind = Kind::Int; a.i = v; return a; }
  static XAttr of_f(float v) { XAttr a; a.kind = Kind::Float; a.f = v; return a; }
  static XAttr of(std::vector<int64_t> v) { XAttr a; a.kind = Kind::Ints; a.ints = std::move(v); return a; }
  static XAttr of_s(std::string v) { XAttr a; a.kind = Kind::String; a.s = std::move(v); return a; }
};

struct XNode {
  std::string name;  ///< unique; derived from the module path where there is one
  std::string op;    ///< ONNX op_type (default domain)
  std::vector<std::string> inputs, outputs;
  std::map<std::string, XAttr> attrs;
};

/// What a QuantizeLinear/DequantizeLinear pair stands for: one fake quantizer of the simulation.
struct XQuant {
  std::string site;        ///< "layer1.0.conv1:input", "layer1.0.add:out", "fc:weight"
  std::string tensor;      ///< the float tensor it quantizes (a graph value or a weight initializer)
  std::string quantized;   ///< the integer tensor (QuantizeLinear's output or the weight initializer)
  std::string scale, zero_point;  ///< their initializers
  int64_t qmin = 0, qmax = 0;
  bool is_unsigned = false;  ///< uint8 container (else int8)
  int64_t axis = -1;         ///< per-channel axis; -1 per-tensor
  double amax = 0;           ///< scale * max(|qmin|, qmax) (the largest per channel)
};

struct XGraph {
  std::string name;
  std::string input = "input", output = "logits";
  std::vector<int64_t> input_shape;   ///< dimension 0 is the batch (written as the symbol N)
  std::vector<int64_t> output_shape;  ///< dimension 0 is the batch
  std::vector<XNode> nodes;            ///< in topological order
  std::vector<std::pair<std::string, at::Tensor>> initializers;  ///< float32, int8, uint8, int32, int64 (CPU)
  std::vector<XQuant> quants;          ///< every quantizer the graph carries, in node order
  std::vector<std::string> notes;      ///< choices made, e.g. how a sub-8-bit grid is kept
  /// Each conv/linear layer's output before its activation (after BN when BN is not folded): the
  /// tensor a diagnostic model exposes (module path -> tensor name).
  struct LayerOutput {
    std::string layer, tensor;
    std::vector<int64_t> shape;  ///< as traced; dimension 0 is the batch
  };
  std::vector<LayerOutput> layer_outputs;
  /// Further graph outputs (a diagnostic model's intermediate tensors), with their traced shapes.
  std::vector<std::pair<std::string, std::vector<int64_t>>> extra_outputs;

  const XNode* find(const std::string& name) const;
  int count(const std::string& op) const;
  const at::Tensor* initializer(const std::string& name) const;
};

}  // namespace qbench::exporter
