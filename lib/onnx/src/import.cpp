// ONNX import (see import.h). The only translation unit that sees protobuf and libonnx.
#include "qbench/onnx/import.h"

#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "qbench/common/strings.h"

namespace qbench::onnx {

namespace op = ::onnx;

std::string SymInt::str() const {
  if (pow == 0) return std::to_string(coef);
  return coef == 1 ? "N" : std::to_string(coef) + "*N";
}

int64_t Node::attr_i(const std::string& key, int64_t dflt) const {
  auto* a = attr(key);
  return a && a->kind == Attribute::Kind::Int ? a->i : dflt;
}
float Node::attr_f(const std::string& key, float dflt) const {
  auto* a = attr(key);
  return a && a->kind == Attribute::Kind::Float ? a->f : dflt;
}
std::vector<int64_t> Node::attr_ints(const std::string& key, std::vector<int64_t> dflt) const {
  auto* a = attr(key);
  return a && a->kind == Attribute::Kind::Ints ? a->ints : dflt;
}
std::string Node::attr_s(const std::string& key, const std::string& dflt) const {
  auto* a = attr(key);
  return a && a->kind == Attribute::Kind::String ? a->s : dflt;
}
std::string Node::label() const { return "'" + name + "' (" + op + ")"; }
Node::SliceArgs Node::slice_args(int64_t opset,
                                 const std::function<std::vector<int64_t>(const std::string&)>& ints_of) const {
  SliceArgs a;
  if (opset < 10) {
    a.starts = attr_ints("starts");
    a.ends = attr_ints("ends");
    a.axes = attr_ints("axes");
  } else {
    a.starts = ints_of(inputs[1]);
    a.ends = ints_of(inputs[2]);
    if (has_input(3)) a.axes = ints_of(inputs[3]);
    if (has_input(4)) a.steps = ints_of(inputs[4]);
  }
  return a;
}

OnnxError ImportedGraph::error(const std::string& msg) const { return OnnxError(file_name + ": " + msg); }

const std::vector<std::string>& supported_ops() {
  static const std::vector<std::string> ops = [] {
    std::vector<std::string> v{"Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "LeakyRelu",
                               "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softmax", "Add", "Sub",
                               "Mul", "Div", "Pow", "Sqrt", "MaxPool", "AveragePool", "GlobalAveragePool",
                               "ReduceMean", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat",
                               "Split", "Slice", "Pad", "Cast", "Identity", "Dropout", "Constant"};
    std::sort(v.begin(), v.end());
    return v;
  }();
  return ops;
}

namespace {

// Operators that may appear only where they fold away (shape arithmetic on constant shapes).
const std::set<std::string>& fold_only_ops() {
  static const std::set<std::string> s{"Shape", "Gather"};
  return s;
}

const char* type_name(int t) {
  switch (t) {
    case op::TensorProto::FLOAT: return "float32";
    case op::TensorProto::UINT8: return "uint8";
    case op::TensorProto::INT8: return "int8";
    case op::TensorProto::UINT16: return "uint16";
    case op::TensorProto::INT16: return "int16";
    case op::TensorProto::INT32: return "int32";
    case op::TensorProto::INT64: return "int64";
    case op::TensorProto::STRING: return "string";
    case op::TensorProto::BOOL: return "bool";
    case op::TensorProto::FLOAT16: return "float16";
    case op::TensorProto::DOUBLE: return "float64";
    case op::TensorProto::UINT32: return "uint32";
    case op::TensorProto::UINT64: return "uint64";
    case op::TensorProto::BFLOAT16: return "bfloat16";
    default: return "undefined";
  }
}

template <typename T>
void copy_le(const std::string& raw, T* dst, int64_t n) {
  std::memcpy(dst, raw.data(), static_cast<size_t>(n) * sizeof(T));  // x86-64: little endian like ONNX
}

/// TensorProto -> tensor. Throws std::runtime_error with a short reason.
at::Tensor to_tensor(const op::TensorProto& t) {
  if (t.data_location() == op::TensorProto::EXTERNAL)
    throw std::runtime_error("tensor '" + t.name() + "' keeps its data in an external file (not supported)");
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  int64_t n = 1;
  for (auto d : dims) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d)) throw std::runtime_error("tensor '" + t.name() + "' has an invalid shape");
    n *= d;
  }
  const bool raw = t.has_raw_data();
  {  // the data must be there before anything is allocated (a corrupt file can claim any shape)
    int64_t have = raw ? static_cast<int64_t>(t.raw_data().size())
                       : std::max<int64_t>({t.float_data_size(), t.double_data_size(), t.int64_data_size(),
                                            t.int32_data_size()}) * 8;
    if (n > have && !(n == 0))
      throw std::runtime_error("tensor '" + t.name() + "' holds fewer values than its shape needs");
  }
  auto check_raw = [&](size_t elem) {
    if (t.raw_data().size() != static_cast<size_t>(n) * elem)
      throw std::runtime_error("tensor '" + t.name() + "' holds " + std::to_string(t.raw_data().size()) +
                               " bytes, its shape needs " + std::to_string(n * static_cast<int64_t>(elem)));
  };
  auto check_count = [&](int count) {
    if (count != n)
      throw std::runtime_error("tensor '" + t.name() + "' holds " + std::to_string(count) + " values, its shape needs " +
                               std::to_string(n));
  };
  at::Tensor out;
  // An element type stored as itself: raw_data (little endian) or the typed field `values`;
  // `tag` is a value of the element type, only its type is used.
  auto read_as = [&](auto tag, at::ScalarType type, const auto& values) {
    using T = decltype(tag);
    out = at::empty(dims, type);
    if (raw) {
      check_raw(sizeof(T));
      copy_le(t.raw_data(), out.data_ptr<T>(), n);
    } else {
      check_count(values.size());
      std::copy(values.begin(), values.end(), out.data_ptr<T>());
    }
  };
  switch (t.data_type()) {
    case op::TensorProto::FLOAT: read_as(float{}, at::kFloat, t.float_data()); break;
    case op::TensorProto::DOUBLE: read_as(double{}, at::kDouble, t.double_data()); break;
    case op::TensorProto::INT64: read_as(int64_t{}, at::kLong, t.int64_data()); break;
    case op::TensorProto::INT32: read_as(int32_t{}, at::kInt, t.int32_data()); break;
    case op::TensorProto::INT8:
    case op::TensorProto::UINT8:
    case op::TensorProto::BOOL: {
      const auto st = t.data_type() == op::TensorProto::INT8   ? at::kChar
                      : t.data_type() == op::TensorProto::UINT8 ? at::kByte
                                                                : at::kBool;
      out = at::empty(dims, st);
      if (raw) {
        check_raw(1);
        std::memcpy(out.data_ptr(), t.raw_data().data(), static_cast<size_t>(n));
      } else {
        check_count(t.int32_data_size());
        auto* p = static_cast<uint8_t*>(out.data_ptr());
        for (int64_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(t.int32_data(static_cast<int>(i)));
      }
      break;
    }
    default:
      throw std::runtime_error(std::string("tensor '") + t.name() + "' is " + type_name(t.data_type()) +
                               " (only float32 graphs, with int64/int32 shape tensors, are supported)");
  }
  return out;
}

// ---- symbolic shape arithmetic ----------------------------------------------------------------

/// A folded integer tensor of rank 0 or 1 whose elements may be batch-proportional.
struct SymTensor {
  std::vector<SymInt> v;
  bool scalar = false;
};

struct Unresolvable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

SymInt sym_binary(const std::string& o, SymInt a, SymInt b) {
  if (o == "Add" || o == "Sub") {
    const int64_t bc = o == "Add" ? b.coef : -b.coef;
    if (a.pow == b.pow) return {a.coef + bc, a.coef + bc == 0 ? 0 : a.pow};
    if (a.pow == 0 && a.coef == 0) return {bc, b.pow};
    if (b.pow == 0 && b.coef == 0) return a;
    throw Unresolvable("adds a batch-dependent and a constant dimension");
  }
  if (o == "Mul") {
    if (a.pow + b.pow > 1) throw Unresolvable("multiplies the batch size by itself");
    const int64_t c = a.coef * b.coef;
    return {c, c == 0 ? 0 : a.pow + b.pow};
  }
  if (o == "Div") {
    if (b.coef == 0) throw Unresolvable("divides by zero");
    if (b.pow > a.pow) throw Unresolvable("divides by the batch size");
    if (b.pow == 1) return {a.coef / b.coef, 0};
    if (a.pow == 1 && a.coef % b.coef != 0) throw Unresolvable("divides the batch size unevenly");
    // ONNX integer Div truncates toward zero like C++.
    return {a.coef / b.coef, a.pow};
  }
  throw Unresolvable("operator " + o + " on a shape");
}

int64_t literal(const SymInt& s) {
  if (s.pow != 0) throw Unresolvable("needs a batch-independent value here");
  return s.coef;
}

SymTensor sym_of_tensor(const at::Tensor& t) {
  if (t.dim() > 1) throw Unresolvable("a shape tensor of rank " + std::to_string(t.dim()));
  auto l = t.to(at::kLong).contiguous();
  SymTensor s;
  s.scalar = t.dim() == 0;
  for (int64_t i = 0; i < l.numel(); ++i) s.v.push_back({l.data_ptr<int64_t>()[i], 0});
  return s;
}

std::string base_name(const std::string& path) {
  auto p = path.find_last_of('/');
  return p == std::string::npos ? path : path.substr(p + 1);
}

Attribute convert_attr(const op::AttributeProto& a) {
  Attribute r;
  switch (a.type()) {
    case op::AttributeProto::INT: r.kind = Attribute::Kind::Int; r.i = a.i(); break;
    case op::AttributeProto::FLOAT: r.kind = Attribute::Kind::Float; r.f = a.f(); break;
    case op::AttributeProto::STRING: r.kind = Attribute::Kind::String; r.s = a.s(); break;
    case op::AttributeProto::INTS:
      r.kind = Attribute::Kind::Ints;
      r.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case op::AttributeProto::FLOATS:
      r.kind = Attribute::Kind::Floats;
      r.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case op::AttributeProto::TENSOR: r.kind = Attribute::Kind::Tensor; r.t = to_tensor(a.t()); break;
    default: r.kind = Attribute::Kind::Other; break;
  }
  return r;
}

struct ValueType {
  int elem = 0;
  bool has_shape = false;
  std::vector<SymInt> dims;
  bool dims_known = false;  ///< every dim is a number or the batch symbol
};

constexpr const char* kBatch = "N";

ValueType value_type(const op::ValueInfoProto& vi) {
  ValueType t;
  if (!vi.type().has_tensor_type()) return t;
  const auto& tt = vi.type().tensor_type();
  t.elem = tt.elem_type();
  if (!tt.has_shape()) return t;
  t.has_shape = true;
  t.dims_known = true;
  for (const auto& d : tt.shape().dim()) {
    if (d.has_dim_value())
      t.dims.push_back({d.dim_value(), 0});
    else if (d.has_dim_param() && d.dim_param() == kBatch)
      t.dims.push_back({1, 1});
    else if (d.has_dim_param() && d.dim_param().rfind("N*", 0) == 0)
      t.dims.push_back({std::stoll(d.dim_param().substr(2)), 1});
    else {
      t.dims.push_back({-1, 0});
      t.dims_known = false;
    }
  }
  return t;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

at::Tensor read_tensor_pb(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  op::TensorProto t;
  if (!t.ParseFromString(ss.str())) throw DataError(path + ": not a serialized onnx TensorProto");
  try {
    return to_tensor(t);
  } catch (const std::runtime_error& e) {
    throw DataError(path + ": " + e.what());
  }
}

FileSummary peek_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw OnnxError(base_name(path) + ": cannot open the file (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << f.rdbuf();
  op::ModelProto m;
  if (!m.ParseFromString(ss.str())) throw OnnxError(base_name(path) + ": not an ONNX model: the protobuf does not parse");
  FileSummary s;
  for (const auto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") s.opset = o.version();
  std::set<std::string> inits;
  for (const auto& t : m.graph().initializer()) inits.insert(t.name());
  for (const auto& i : m.graph().input())
    if (!inits.count(i.name())) s.inputs.push_back(i.name());
  for (const auto& o : m.graph().output()) s.outputs.push_back(o.name());
  for (const auto& n : m.graph().node()) s.ops.push_back(n.op_type());
  return s;
}

ImportedGraph import_file(const std::string& path, const ImportOptions& options) {
  ImportedGraph g;
  g.path = path;
  g.file_name = base_name(path);
  auto fail = [&](const std::string& msg) -> OnnxError { return g.error(msg); };

  // 1. Bytes and protobuf.
  std::ifstream f(path, std::ios::binary);
  if (!f) throw fail("cannot open the file (" + std::string(std::strerror(errno)) + ")");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  if (bytes.empty()) throw fail("the file is empty");
  g.sha256 = sha256_hex(bytes);
  op::ModelProto m;
  if (!m.ParseFromString(bytes))
    throw fail("not an ONNX model: the protobuf does not parse (truncated or corrupt file, " +
               std::to_string(bytes.size()) + " bytes)");
  if (!m.has_graph() || m.graph().node_size() == 0)
    throw fail("not an ONNX model: no graph (is this an ONNX file? " + std::to_string(bytes.size()) + " bytes)");
  g.ir_version = m.ir_version();
  g.producer = m.producer_name() + (m.producer_version().empty() ? "" : " " + m.producer_version());
  for (const auto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") g.opset = o.version();
  auto* graph = m.mutable_graph();

  // 2. The checker, on the file as it is.
  try {
    op::checker::check_model(m);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw fail("the ONNX checker rejects the model: " + msg);
  }
  if (g.opset < 9 || g.opset > 17)
    throw fail("opset " + std::to_string(g.opset) + " is not supported (opsets 9..17 are)");

  // 3. Runtime inputs and their shapes (the batch becomes the symbol N).
  std::set<std::string> init_names;
  for (const auto& t : graph->initializer()) init_names.insert(t.name());
  std::vector<int> runtime_inputs;
  for (int i = 0; i < graph->input_size(); ++i) {
    const auto& name = graph->input(i).name();
    if (init_names.count(name) || options.bind.count(name)) continue;
    runtime_inputs.push_back(i);
  }
  for (const auto& [name, t] : options.bind) {
    bool found = false;
    for (const auto& in : graph->input()) found = found || in.name() == name;
    if (!found) throw fail("bind: the graph has no input '" + name + "'");
  }
  std::vector<std::string> problems;  // every offending node / value, one a line
  for (size_t k = 0; k < runtime_inputs.size(); ++k) {
    auto* in = graph->mutable_input(runtime_inputs[k]);
    g.inputs.push_back(in->name());
    if (!in->type().has_tensor_type()) throw fail("input '" + in->name() + "' is not a tensor");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    if (tt->elem_type() != op::TensorProto::FLOAT)
      problems.push_back("input '" + in->name() + "' is " + type_name(tt->elem_type()) +
                         ": only float32 graphs are supported");
    if (!tt->has_shape()) throw fail("input '" + in->name() + "' has no shape (its rank must be known)");
    auto* shape = tt->mutable_shape();
    if (k == 0 && !options.input_shape.empty()) {
      if (shape->dim_size() != static_cast<int>(options.input_shape.size()) + 1)
        throw fail("input '" + in->name() + "' has rank " + std::to_string(shape->dim_size()) +
                   ", the dataset gives samples of shape " + ints_str(options.input_shape) + " (rank " +
                   std::to_string(options.input_shape.size() + 1) + " with the batch)");
      for (int d = 1; d < shape->dim_size(); ++d) {
        auto* dim = shape->mutable_dim(d);
        const int64_t want = options.input_shape[static_cast<size_t>(d - 1)];
        if (dim->has_dim_value() && dim->dim_value() != want) {
          std::vector<int64_t> file_dims;
          for (const auto& dd : shape->dim()) file_dims.push_back(dd.has_dim_value() ? dd.dim_value() : -1);
          throw fail("input '" + in->name() + "' has shape " + ints_str(file_dims) +
                     " (-1 = dynamic), the dataset gives samples of shape " + ints_str(options.input_shape));
        }
        dim->set_dim_value(want);
      }
    }
    for (int d = 0; d < shape->dim_size(); ++d) {
      auto* dim = shape->mutable_dim(d);
      if (d == 0 && k == 0 && options.dynamic_batch) {
        dim->set_dim_param(kBatch);  // clears dim_value (oneof)
        continue;
      }
      if (!dim->has_dim_value())
        throw fail("unresolvable dynamic shape: input '" + in->name() + "' dimension " + std::to_string(d) + " ('" +
                   dim->dim_param() + "') is dynamic and no input shape was given for it");
    }
  }
  for (const auto& o : graph->output()) {
    g.outputs.push_back(o.name());
    if (o.type().has_tensor_type() && o.type().tensor_type().elem_type() != op::TensorProto::FLOAT)
      problems.push_back("output '" + o.name() + "' is " + type_name(o.type().tensor_type().elem_type()) +
                         ": only float32 graphs are supported");
  }

  // 4. Shape inference for these input shapes (data propagation resolves reshape chains).
  try {
    graph->clear_value_info();
    op::shape_inference::InferShapes(m, op::OpSchemaRegistry::Instance(),
                                     op::ShapeInferenceOptions(/*check_type=*/true, /*error_mode=*/1,
                                                               /*data_prop=*/true));
  } catch (const std::exception& e) {
    throw fail(std::string("ONNX shape inference fails for this input shape: ") + e.what());
  }
  std::map<std::string, ValueType> types;
  auto collect_types = [&]() {
    types.clear();
    for (const auto& vi : graph->input()) types[vi.name()] = value_type(vi);
    for (const auto& vi : graph->value_info()) types[vi.name()] = value_type(vi);
    for (const auto& vi : graph->output()) types[vi.name()] = value_type(vi);
  };
  collect_types();
  // ONNX's data propagation stops at integer Div (PyTorch's `c // 2`): a Reshape whose target this
  // walk folds gets its output shape written here, and inference runs again from there.
  auto set_shape_and_reinfer = [&](const std::string& value, const std::vector<SymInt>& dims) {
    op::ValueInfoProto* vi = nullptr;
    for (auto& v : *graph->mutable_value_info())
      if (v.name() == value) vi = &v;
    for (auto& v : *graph->mutable_output())
      if (v.name() == value) vi = &v;
    if (!vi) vi = graph->add_value_info();
    vi->set_name(value);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(op::TensorProto::FLOAT);
    auto* shape = tt->mutable_shape();
    shape->clear_dim();
    for (const auto& d : dims) {
      auto* dim = shape->add_dim();
      if (d.pow == 0) dim->set_dim_value(d.coef);
      else dim->set_dim_param(d.coef == 1 ? std::string(kBatch) : "N*" + std::to_string(d.coef));
    }
    op::shape_inference::InferShapes(m, op::OpSchemaRegistry::Instance(),
                                     op::ShapeInferenceOptions(true, 1, true));
    collect_types();
  };

  // 5. Constants: initializers and bound inputs.
  std::map<std::string, SymTensor> sym;  // folded integer shape values
  try {
    for (const auto& t : graph->initializer()) {
      g.constants[t.name()] = to_tensor(t);
      g.initializer_names.push_back(t.name());
    }
  } catch (const std::runtime_error& e) {
    throw fail(e.what());
  }
  for (const auto& [name, t] : options.bind) g.constants[name] = t.contiguous();

  // 6. Walk the nodes: fold shape arithmetic and constants-only Identity/Cast/Constant; keep the rest.
  const auto& sup = supported_ops();
  auto is_const = [&](const std::string& v) { return v.empty() || g.constants.count(v) || sym.count(v); };
  auto get_sym = [&](const std::string& v) -> SymTensor {
    if (auto it = sym.find(v); it != sym.end()) return it->second;
    return sym_of_tensor(g.constants.at(v));
  };
  const std::set<std::string> sym_ops{"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast",
                                      "Identity", "Add", "Sub", "Mul", "Div"};
  for (int ni = 0; ni < graph->node_size(); ++ni) {
    const auto& np = graph->node(ni);
    Node n;
    n.name = np.name().empty() ? np.op_type() + "_" + std::to_string(ni) : np.name();
    n.op = np.op_type();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    const std::string domain = np.domain();
    if (!domain.empty() && domain != "ai.onnx") {
      problems.push_back("node " + n.label() + ": operator of domain '" + domain + "' not supported");
      continue;
    }
    try {
      for (const auto& a : np.attribute()) n.attrs[a.name()] = convert_attr(a);
    } catch (const std::runtime_error& e) {
      problems.push_back("node " + n.label() + ": " + e.what());
      continue;
    }
    const bool supported = std::binary_search(sup.begin(), sup.end(), n.op) || fold_only_ops().count(n.op);
    if (!supported) {
      problems.push_back("node " + n.label() + ": operator not supported");
      continue;
    }
    // Constant.
    if (n.op == "Constant") {
      at::Tensor t;
      if (auto* a = n.attr("value"); a && a->kind == Attribute::Kind::Tensor) t = a->t;
      else if (auto* a = n.attr("value_float")) t = at::scalar_tensor(a->f, at::kFloat);
      else if (auto* a = n.attr("value_floats")) t = at::tensor(a->floats, at::kFloat);
      else if (auto* a = n.attr("value_int")) t = at::scalar_tensor(a->i, at::kLong);
      else if (auto* a = n.attr("value_ints")) t = at::tensor(a->ints, at::kLong);
      else {
        problems.push_back("node " + n.label() + ": a Constant of a kind other than a tensor or numbers");
        continue;
      }
      if (t.scalar_type() == at::kInt) t = t.to(at::kLong);
      if (t.scalar_type() == at::kDouble) t = t.to(at::kFloat);
      g.constants[n.outputs[0]] = t;
      ++g.folded_nodes;
      continue;
    }
    bool all_const = true;
    for (const auto& in : n.inputs) all_const = all_const && is_const(in);
    // Shape of a value whose shape inference knows (the batch stays symbolic).
    if (n.op == "Shape") {
      auto it = types.find(n.inputs[0]);
      if (it == types.end() || !it->second.dims_known) {
        problems.push_back("node " + n.label() + ": unresolvable dynamic shape: the shape of '" + n.inputs[0] +
                           "' is not known for this input shape");
        continue;
      }
      std::vector<SymInt> dims = it->second.dims;
      if (g.constants.count(n.inputs[0])) dims = sym_of_tensor(at::tensor(g.constants.at(n.inputs[0]).sizes().vec())).v;
      const int64_t r = static_cast<int64_t>(dims.size());
      int64_t s = n.attr_i("start", 0), e = n.attr_i("end", r);
      if (s < 0) s += r;
      if (e < 0) e += r;
      s = std::clamp<int64_t>(s, 0, r);
      e = std::clamp<int64_t>(e, s, r);
      sym[n.outputs[0]] = {std::vector<SymInt>(dims.begin() + s, dims.begin() + e), false};
      ++g.folded_nodes;
      continue;
    }
    // Integer shape arithmetic on folded values.
    bool int_domain = all_const && sym_ops.count(n.op);
    if (int_domain) {
      for (const auto& in : n.inputs)
        if (!in.empty() && !sym.count(in)) {
          const auto& t = g.constants.at(in);
          if (t.is_floating_point() && !(n.op == "Cast" || n.op == "Identity")) int_domain = false;
        }
      // Cast/Identity of a float constant fold as tensors below.
      if ((n.op == "Cast" || n.op == "Identity") && !sym.count(n.inputs[0]) &&
          g.constants.at(n.inputs[0]).is_floating_point())
        int_domain = false;
    }
    if (int_domain) {
      try {
        SymTensor out;
        if (n.op == "Identity" || n.op == "Cast") {
          out = get_sym(n.inputs[0]);
          if (n.op == "Cast") {
            const auto to = n.attr_i("to", 0);
            if (to != op::TensorProto::INT64 && to != op::TensorProto::INT32 && to != op::TensorProto::FLOAT &&
                to != op::TensorProto::DOUBLE)
              throw Unresolvable(std::string("casts a shape to ") + type_name(static_cast<int>(to)));
          }
        } else if (n.op == "Gather") {
          auto data = get_sym(n.inputs[0]);
          auto idx = get_sym(n.inputs[1]);
          if (n.attr_i("axis", 0) != 0 || data.scalar) throw Unresolvable("gathers along a non-zero axis");
          out.scalar = idx.scalar;
          for (auto& i : idx.v) {
            int64_t k = literal(i);
            if (k < 0) k += static_cast<int64_t>(data.v.size());
            if (k < 0 || k >= static_cast<int64_t>(data.v.size())) throw Unresolvable("gathers out of range");
            out.v.push_back(data.v[static_cast<size_t>(k)]);
          }
        } else if (n.op == "Unsqueeze" || n.op == "Squeeze") {
          out = get_sym(n.inputs[0]);
          std::vector<int64_t> axes = n.attr_ints("axes");
          if (n.has_input(1))
            for (auto& a : get_sym(n.inputs[1]).v) axes.push_back(literal(a));
          if (n.op == "Unsqueeze") {
            if (!out.scalar || axes.size() != 1 || (axes[0] != 0 && axes[0] != -1))
              throw Unresolvable("unsqueezes a shape to rank 2");
            out.scalar = false;
          } else {
            if (out.scalar || out.v.size() != 1) throw Unresolvable("squeezes a shape of length != 1");
            out.scalar = true;
          }
        } else if (n.op == "Concat") {
          for (const auto& in : n.inputs) {
            auto s = get_sym(in);
            if (s.scalar) throw Unresolvable("concatenates scalars");
            out.v.insert(out.v.end(), s.v.begin(), s.v.end());
          }
        } else if (n.op == "Slice") {
          auto data = get_sym(n.inputs[0]);
          if (data.scalar) throw Unresolvable("slices a scalar");
          const auto [st, en, ax, sp] = n.slice_args(g.opset, [&](const std::string& in) {
            std::vector<int64_t> v;
            for (auto& s : get_sym(in).v) v.push_back(literal(s));
            return v;
          });
          if (st.size() != 1 || (!ax.empty() && ax[0] != 0 && ax[0] != -1) || (!sp.empty() && sp[0] != 1))
            throw Unresolvable("slices a shape other than along its one axis with step 1");
          const int64_t r = static_cast<int64_t>(data.v.size());
          int64_t s = st[0] < 0 ? st[0] + r : st[0], e = en[0] < 0 ? en[0] + r : en[0];
          s = std::clamp<int64_t>(s, 0, r);
          e = std::clamp<int64_t>(e, s, r);
          out.v.assign(data.v.begin() + s, data.v.begin() + e);
        } else {  // Add Sub Mul Div, numpy broadcasting of rank <= 1
          auto a = get_sym(n.inputs[0]), b = get_sym(n.inputs[1]);
          const size_t len = std::max(a.v.size(), b.v.size());
          if ((a.v.size() != len && a.v.size() != 1) || (b.v.size() != len && b.v.size() != 1))
            throw Unresolvable("broadcasts shapes of different lengths");
          out.scalar = a.scalar && b.scalar;
          for (size_t i = 0; i < len; ++i)
            out.v.push_back(sym_binary(n.op, a.v[a.v.size() == 1 ? 0 : i], b.v[b.v.size() == 1 ? 0 : i]));
        }
        sym[n.outputs[0]] = out;
        ++g.folded_nodes;
      } catch (const Unresolvable& e) {
        problems.push_back("node " + n.label() + ": unresolvable dynamic shape: the shape arithmetic " + e.what());
      } catch (const std::exception& e) {
        problems.push_back("node " + n.label() + ": cannot fold its constant shape: " + e.what());
      }
      continue;
    }
    if (fold_only_ops().count(n.op)) {
      problems.push_back("node " + n.label() + ": operator supported only where it folds to a constant shape "
                         "(here its data is computed at run time)");
      continue;
    }
    // Constant float Identity/Cast fold (weight sharing: exporters alias duplicated initializers).
    if (all_const && (n.op == "Identity" || n.op == "Cast") && g.constants.count(n.inputs[0])) {
      const auto& t = g.constants.at(n.inputs[0]);
      g.constants[n.outputs[0]] = n.op == "Cast" && n.attr_i("to", 1) == op::TensorProto::INT64 ? t.to(at::kLong)
                                  : n.op == "Cast" && n.attr_i("to", 1) == op::TensorProto::FLOAT ? t.to(at::kFloat)
                                                                                                   : t;
      ++g.folded_nodes;
      continue;
    }
    if (n.op == "Reshape" && n.inputs.size() == 2 && (sym.count(n.inputs[1]) || g.constants.count(n.inputs[1]))) {
      auto ot = types.find(n.outputs[0]);
      auto it = types.find(n.inputs[0]);
      if ((ot == types.end() || !ot->second.dims_known) && it != types.end() && it->second.dims_known) {
        try {
          const auto target = get_sym(n.inputs[1]).v;
          const auto& in = it->second.dims;
          SymInt total{1, 0}, known{1, 0};
          for (const auto& d : in) total = sym_binary("Mul", total, d);
          std::vector<SymInt> out;
          int infer = -1;
          for (size_t k = 0; k < target.size(); ++k) {
            SymInt d = target[k];
            if (d.pow == 0 && d.coef == 0 && n.attr_i("allowzero", 0) == 0 && k < in.size()) d = in[k];
            if (d.pow == 0 && d.coef == -1) {
              infer = static_cast<int>(k);
              out.push_back(d);
              continue;
            }
            known = sym_binary("Mul", known, d);
            out.push_back(d);
          }
          if (infer >= 0) out[static_cast<size_t>(infer)] = sym_binary("Div", total, known);
          set_shape_and_reinfer(n.outputs[0], out);
        } catch (const std::exception& e) {
          problems.push_back("node " + n.label() + ": unresolvable dynamic shape: its output shape: " + e.what());
          continue;
        }
      }
    }
    // Shape inference could not see the values this walk folded (slice bounds, split sizes...):
    // hand them to it as initializers and infer again.
    {
      bool unknown = false;
      for (const auto& o : n.outputs) {
        auto ot = types.find(o);
        unknown = unknown || (!o.empty() && (ot == types.end() || !ot->second.dims_known));
      }
      bool fed = false;
      for (size_t k = 0; unknown && k < n.inputs.size(); ++k) {
        auto it = sym.find(n.inputs[k]);
        if (it == sym.end()) continue;
        std::vector<int64_t> vals;
        bool lit = true;
        for (const auto& e : it->second.v) {
          lit = lit && e.pow == 0;
          vals.push_back(e.coef);
        }
        if (!lit) continue;
        auto* init = graph->add_initializer();
        init->set_name("qbench_folded/" + n.inputs[k]);
        init->set_data_type(op::TensorProto::INT64);
        if (!it->second.scalar) init->add_dims(static_cast<int64_t>(vals.size()));
        for (auto v : vals) init->add_int64_data(v);
        graph->mutable_node(ni)->set_input(static_cast<int>(k), init->name());
        fed = true;
      }
      if (fed) {
        try {
          op::shape_inference::InferShapes(m, op::OpSchemaRegistry::Instance(), op::ShapeInferenceOptions(true, 1, true));
        } catch (const std::exception& e) {
          problems.push_back("node " + n.label() + ": shape inference with its folded inputs fails: " + e.what());
          continue;
        }
        collect_types();
      }
    }
    // A node that runs: its runtime values must be float32.
    bool typed_ok = true;
    for (const auto& v : n.outputs) {
      if (v.empty()) continue;
      auto it = types.find(v);
      if (it != types.end() && it->second.elem != 0 && it->second.elem != op::TensorProto::FLOAT) {
        // Dropout's optional mask is bool; it may be produced as long as nothing reads it.
        if (n.op == "Dropout" && &v != &n.outputs[0]) continue;
        problems.push_back("node " + n.label() + ": output '" + v + "' is " + type_name(it->second.elem) +
                           ": only float32 graphs are supported");
        typed_ok = false;
        break;
      }
    }
    if (!typed_ok) continue;
    g.nodes.push_back(std::move(n));
  }

  for (const auto& [name, t] : types)
    if (t.dims_known) g.shapes[name] = t.dims;
  // 7. Values derived from the batch stay symbolic; literal shape values become int64 constants.
  for (auto& [name, s] : sym) {
    bool batch = false;
    for (auto& e : s.v) batch = batch || e.pow != 0;
    if (batch) {
      g.sym_values[name] = s.v;
    } else {
      std::vector<int64_t> v;
      for (auto& e : s.v) v.push_back(e.coef);
      auto t = at::tensor(v, at::kLong);
      g.constants[name] = s.scalar ? t.reshape({}) : t;
    }
  }
  // A batch-dependent value may only feed a Reshape's shape.
  for (const auto& n : g.nodes)
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (g.sym_values.count(n.inputs[i]) && !(n.op == "Reshape" && i == 1))
        problems.push_back("node " + n.label() + ": unresolvable dynamic shape: input '" + n.inputs[i] +
                           "' depends on the batch size");
  for (const auto& o : g.outputs)
    if (g.sym_values.count(o)) problems.push_back("output '" + o + "' is a shape that depends on the batch");

  if (!problems.empty()) {
    const bool any_op = std::any_of(problems.begin(), problems.end(), [](const std::string& p) {
      return p.find("operator not supported") != std::string::npos;
    });
    const std::string sup_list = any_op ? " (supported: " + join(supported_ops(), ", ") + ")" : "";
    if (problems.size() == 1) throw fail(problems[0] + sup_list);
    std::string msg = std::to_string(problems.size()) + " problems:\n  " + g.file_name + ": " +
                      join(problems, ("\n  " + g.file_name + ": ").c_str());
    if (any_op) msg += "\n  " + sup_list.substr(1);
    throw fail(msg);
  }
  return g;
}

}  // namespace qbench::onnx
