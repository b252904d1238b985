#pragma once
// ONNX import: a model file parsed with Debian's libonnx (ONNX 1.12), checked by the ONNX checker,
// shape-inferred for the dataset's input shape, and reduced to the nodes that run (the
// Shape/Gather/Unsqueeze/Concat chains exporters emit for dynamic reshapes are folded to constant
// or batch-proportional shapes). Float32 graphs of the supported operators only; everything else
// is refused with every offending node named. The protobuf types stay inside src/import.cpp.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qbench/common/errors.h"

namespace qbench::onnx {

/// An ONNX file that cannot be used: message starts with the file's name (`mynet.onnx: ...`).
class OnnxError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

/// A dimension or shape-tensor element: coef * N^pow, N the batch size (pow 0 or 1).
struct SymInt {
  int64_t coef = 0;
  int pow = 0;
  bool operator==(const SymInt& o) const { return coef == o.coef && pow == o.pow; }
  std::string str() const;  ///< "32", "N", "4*N"
};

struct ImportOptions {
  /// Shape of one sample of the first graph input, without the batch (C, H, W for an image). It
  /// fills the file's dynamic dimensions and must equal its static ones. Empty: the file's shape
  /// must be static apart from the batch.
  std::vector<int64_t> input_shape;
  /// Dimension 0 of the first input is the batch (any size at run time), even where the file
  /// fixes it. Off for graphs with a fixed leading dimension (the conformance cases).
  bool dynamic_batch = true;
  /// Graph inputs replaced by these constant values before anything else (the conformance cases
  /// feed a conv's weight as an input; binding it makes the weight an initializer).
  std::map<std::string, at::Tensor> bind;
};

/// One ONNX attribute (the kinds the supported operators use).
struct Attribute {
  enum class Kind { Int, Float, String, Ints, Floats, Tensor, Other } kind = Kind::Other;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  at::Tensor t;
};

/// A node that runs (after folding). Inputs name graph inputs, constants or other nodes'
/// outputs; "" is an omitted optional input.
struct Node {
  std::string name;  ///< the file's node name ("" when the file has none)
  std::string op;    ///< ONNX op_type
  std::vector<std::string> inputs, outputs;
  std::map<std::string, Attribute> attrs;
  const Attribute* attr(const std::string& key) const {
    auto it = attrs.find(key);
    return it == attrs.end() ? nullptr : &it->second;
  }
  int64_t attr_i(const std::string& key, int64_t dflt) const;
  float attr_f(const std::string& key, float dflt) const;
  std::vector<int64_t> attr_ints(const std::string& key, std::vector<int64_t> dflt = {}) const;
  std::string attr_s(const std::string& key, const std::string& dflt = "") const;
  std::string label() const;  ///< "'name' (Op)" for messages
  /// Input k is given: present, and not the empty name that skips an optional input.
  bool has_input(size_t k) const { return inputs.size() > k && !inputs[k].empty(); }
  /// A Slice's starts, ends, axes and steps: before opset 10 its attributes (no steps), from
  /// opset 10 its inputs 1 to 4 as `ints_of` reads them (an optional input not given: empty).
  struct SliceArgs {
    std::vector<int64_t> starts, ends, axes, steps;
  };
  SliceArgs slice_args(int64_t opset, const std::function<std::vector<int64_t>(const std::string&)>& ints_of) const;
};

struct ImportedGraph {
  std::string path;       ///< as given
  std::string file_name;  ///< base name, the prefix of every message
  int64_t opset = 0;      ///< default-domain opset
  int64_t ir_version = 0;
  std::string producer;   ///< producer_name producer_version
  std::string sha256;     ///< of the file's bytes (what a baseline key names the architecture by)
  std::vector<std::string> inputs, outputs;  ///< runtime graph inputs / outputs, in file order
  /// Shapes (batch symbolic) of the runtime inputs and of every value shape inference resolved.
  std::map<std::string, std::vector<SymInt>> shapes;
  std::vector<Node> nodes;  ///< nodes that run, in topological order
  /// Constant tensors: initializers, Constant nodes and folded shape chains (float32 or int64).
  std::map<std::string, at::Tensor> constants;
  /// Folded int64 shape tensors whose value depends on the batch (Reshape targets): each element.
  std::map<std::string, std::vector<SymInt>> sym_values;
  /// Names of the initializers (what make_model may name parameters after).
  std::vector<std::string> initializer_names;
  int64_t folded_nodes = 0;  ///< nodes folded away at import

  bool is_constant(const std::string& v) const { return constants.count(v) > 0; }
  /// The error type with the file's name in front.
  OnnxError error(const std::string& msg) const;
};

/// The operators make_model executes (sorted), as listed in refusals.
const std::vector<std::string>& supported_ops();

/// Reads, checks and shape-infers `path`; folds shape chains; refuses unsupported content.
/// Throws OnnxError naming the file: missing/unreadable, truncated or corrupt (protobuf parse),
/// checker failure, opset outside 9..17, non-float32 tensors, unsupported operators or attribute
/// forms (every offending node listed, one a line), a dynamic dimension that the options do not
/// resolve.
ImportedGraph import_file(const std::string& path, const ImportOptions& options = {});

/// What a file declares, without checking it: the default-domain opset and the graph's inputs
/// (initializers that are also inputs included) and outputs, in file order. Throws OnnxError when
/// the file cannot be read or parsed.
struct FileSummary {
  int64_t opset = 0;
  std::vector<std::string> inputs, outputs;
  std::vector<std::string> ops;  ///< op_type of every node, in file order
};
FileSummary peek_file(const std::string& path);

/// Reads a serialized onnx TensorProto (the conformance data's input_*.pb / output_*.pb) into a
/// tensor (float32, float64, int32, int64, bool, uint8, int8 data). Throws DataError.
at::Tensor read_tensor_pb(const std::string& path);

}  // namespace qbench::onnx
