// build_graph: a QuantModel traced with LibTorch's JIT tracer and written as the exporter's graph.
//
// Every conv/linear layer and residual add is replaced, for the trace only, by a marker operator
// (qbench_export::layer(x, id), qbench_export::add(a, b, id)) through the layers' deploy hooks, so
// the trace holds the model's data flow as those markers plus the plain aten operators between them
// (pooling, flatten, concatenation, ...). Markers become the quantized ONNX subgraph of their
// layer, read from the module itself (folded weight and bias, quantizers, activation); aten
// operators become their ONNX counterparts through the table in aten_emitters().
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <optional>
#include <functional>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "qbench/export/onnx_export.h"
#include "qbench/quant/fake_quant.h"

namespace qbench::exporter {

using quant::FakeQuantizer;
using quant::QParams;
namespace jit = torch::jit;

// ---------------------------------------------------------------------------------------------
// Marker operators.

namespace {

struct TraceTargets {
  std::vector<quant::LayerRef> layers;
  std::vector<quant::AddRef> adds;
};
thread_local const TraceTargets* g_targets = nullptr;

/// The layer's float computation, for shapes only (the trace needs each marker's output shape;
/// its values are never used).
at::Tensor layer_marker_impl(const at::Tensor& x, int64_t id) {
  auto* layer = g_targets->layers.at(static_cast<size_t>(id)).layer;
  if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(layer)) {
    const auto& o = conv->options();
    return at::conv2d(x, conv->weight, {}, {o.stride, o.stride}, {o.padding, o.padding}, {1, 1}, o.groups);
  }
  auto* lin = dynamic_cast<quant::QLinearImpl*>(layer);
  return at::linear(x, lin->weight, lin->bias);
}

at::Tensor add_marker_impl(const at::Tensor& a, const at::Tensor& b, int64_t) { return a + b; }

void register_markers() {
  static std::once_flag once;
  std::call_once(once, [] {
    static auto* def = new torch::Library(torch::Library::DEF, "qbench_export", c10::nullopt, __FILE__, __LINE__);
    def->def("layer(Tensor x, int id) -> Tensor");
    def->def("add(Tensor a, Tensor b, int id) -> Tensor");
    static auto* impl =
        new torch::Library(torch::Library::IMPL, "qbench_export", c10::DispatchKey::CPU, __FILE__, __LINE__);
    impl->impl("layer", &layer_marker_impl);
    impl->impl("add", &add_marker_impl);
  });
}

/// Installs the markers as deploy hooks for the trace and removes them after, whatever happens.
class MarkerHooks {
 public:
  explicit MarkerHooks(const TraceTargets& t) : t_(t) {
    register_markers();
    auto& d = c10::Dispatcher::singleton();
    static auto layer_op =
        d.findSchemaOrThrow("qbench_export::layer", "").typed<at::Tensor(const at::Tensor&, int64_t)>();
    static auto add_op = d.findSchemaOrThrow("qbench_export::add", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
    for (size_t i = 0; i < t.layers.size(); ++i)
      t.layers[i].layer->set_deploy([i](const at::Tensor& x) { return layer_op.call(x, static_cast<int64_t>(i)); });
    for (size_t i = 0; i < t.adds.size(); ++i)
      t.adds[i].add->set_deploy(
          [i](const at::Tensor& a, const at::Tensor& b) { return add_op.call(a, b, static_cast<int64_t>(i)); });
    g_targets = &t_;
  }
  ~MarkerHooks() {
    for (auto& l : t_.layers) l.layer->set_deploy({});
    for (auto& a : t_.adds) a.add->set_deploy({});
    g_targets = nullptr;
  }

 private:
  const TraceTargets& t_;
};

// ---------------------------------------------------------------------------------------------
// The graph under construction.

std::string sanitize(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '/' || c == ':') ? c : '_';
  return o;
}

at::Tensor scalar_f(double v) { return at::scalar_tensor(v, at::kFloat); }
at::Tensor ints_tensor(const std::vector<int64_t>& v) {
  return at::tensor(at::IntArrayRef(v), at::TensorOptions().dtype(at::kLong));
}

/// A traced value as the emitters see it: an ONNX tensor name, or a constant (ints, floats, bools,
/// lists of them, None) with, for ints derived from a tensor's batch dimension, that fact.
struct Val {
  std::string name;  ///< ONNX tensor name ("" for a non-tensor constant)
  c10::IValue constant;
  bool is_const = false;
  bool batch = false;                  ///< an int that is the batch size (aten::size(x, 0))
  std::vector<bool> batch_elems;       ///< per element of an int list
  std::vector<int64_t> shape;          ///< traced shape of a tensor value
};

class Emit {
 public:
  Emit(const ExportOptions& opt, int64_t trace_batch) : opt_(opt), batch_(trace_batch) {}

  XGraph g;

  // -- names and initializers
  std::string fresh(const std::string& hint) {
    std::string base = sanitize(hint.empty() ? "t" : hint);
    std::string n = base;
    int k = 1;
    while (!used_.insert(n).second) n = base + "_" + std::to_string(k++);
    return n;
  }
  std::string init(const std::string& hint, at::Tensor t) {
    const std::string n = fresh(hint);
    g.initializers.emplace_back(n, t.detach().cpu().contiguous().clone());
    return n;
  }
  std::string node(const std::string& op, std::vector<std::string> inputs, std::map<std::string, XAttr> attrs,
                   const std::string& hint) {
    XNode n;
    n.op = op;
    n.name = fresh(hint + "/" + op);
    n.inputs = std::move(inputs);
    n.attrs = std::move(attrs);
    n.outputs = {fresh(hint + "/" + op + "_out")};
    g.nodes.push_back(n);
    return g.nodes.back().outputs[0];
  }

  // -- traced values
  Val& val(const jit::Value* v) {
    auto it = vals_.find(v);
    if (it == vals_.end()) throw ExportError("export: internal: traced value %" + v->debugName() + " has no ONNX form");
    return it->second;
  }
  void set(const jit::Value* v, Val x) { vals_[v] = std::move(x); }
  void set_tensor(const jit::Value* v, const std::string& name) {
    Val x;
    x.name = name;
    x.shape = traced_shape(v);
    vals_[v] = std::move(x);
  }
  /// The ONNX name of a tensor input; a traced tensor constant becomes an initializer.
  std::string tensor(const jit::Node* n, size_t i) {
    Val& v = val(n->input(i));
    if (!v.name.empty()) return v.name;
    if (v.is_const && v.constant.isTensor()) {
      v.name = init("const", v.constant.toTensor());
      return v.name;
    }
    if (v.is_const && (v.constant.isDouble() || v.constant.isInt())) {
      v.name = init("const", scalar_f(v.constant.isDouble() ? v.constant.toDouble() : double(v.constant.toInt())));
      return v.name;
    }
    throw unsupported(n, "input " + std::to_string(i) + " is not a tensor");
  }
  const c10::IValue& constant(const jit::Node* n, size_t i) {
    Val& v = val(n->input(i));
    if (!v.is_const) throw unsupported(n, "input " + std::to_string(i) + " is computed at run time, not a constant");
    return v.constant;
  }
  int64_t cint(const jit::Node* n, size_t i) { return constant(n, i).toInt(); }
  double cdouble(const jit::Node* n, size_t i) {
    const auto& c = constant(n, i);
    return c.isInt() ? double(c.toInt()) : c.toDouble();
  }
  bool cbool(const jit::Node* n, size_t i) { return constant(n, i).toBool(); }
  bool is_none(const jit::Node* n, size_t i) {
    const Val& v = val(n->input(i));
    return v.is_const && v.constant.isNone();
  }
  std::vector<int64_t> cints(const jit::Node* n, size_t i) {
    const auto& c = constant(n, i);
    if (c.isInt()) return {c.toInt()};
    return c.toIntVector();
  }
  const std::vector<bool>& batch_elems(const jit::Node* n, size_t i) { return val(n->input(i)).batch_elems; }

  static std::vector<int64_t> traced_shape(const jit::Value* v) {
    auto t = v->type()->cast<c10::TensorType>();
    if (!t) return {};
    auto s = t->sizes().concrete_sizes();
    return s ? *s : std::vector<int64_t>{};
  }
  int64_t trace_batch() const { return batch_; }
  const ExportOptions& options() const { return opt_; }

  ExportError unsupported(const jit::Node* n, const std::string& why) const {
    std::ostringstream os;
    os << "export: " << n->kind().toQualString() << ": " << why;
    return ExportError(os.str());
  }

  // -- quantizers
  QParams affine(FakeQuantizer* q, const std::string& site) {
    auto qp = q->affine_qparams();
    if (!qp)
      throw ExportError("export: " + site + ": its quantizer (" + q->describe() +
                        ") is not affine: a QuantizeLinear/DequantizeLinear pair cannot express its grid");
    return *qp;
  }

  /// Chooses the integer container of a range and checks the format accepts it.
  struct Container {
    bool is_unsigned;
    at::ScalarType dtype;
  };
  Container container(const QParams& qp, const std::string& site, bool weight) {
    const auto r = qp.range;
    if (r.qmin >= 0 && r.qmax <= 255 && !(opt_.format == Format::TensorRT)) return {true, at::kByte};
    if (r.qmin >= -128 && r.qmax <= 127) {
      if (opt_.format == Format::TensorRT) {
        if (qp.zero_point.ne(0).any().item<bool>())
          throw ExportError("export --format tensorrt: " + site +
                            " has a non-zero zero point: TensorRT's explicit quantization is symmetric (use --format qdq)");
        if (r.qmax < 127 || r.qmin > -127)
          throw ExportError("export --format tensorrt: " + site + " uses the " + std::to_string(r.qmax - r.qmin + 1) +
                            "-level grid [" + std::to_string(r.qmin) + ", " + std::to_string(r.qmax) +
                            "]: TensorRT's Q/DQ runs int8 only, so a sub-8-bit grid would be lost (use --format qdq)");
      }
      return {false, at::kChar};
    }
    if (opt_.format == Format::TensorRT && r.qmin >= 0)
      throw ExportError("export --format tensorrt: " + site + " is unsigned [" + std::to_string(r.qmin) + ", " +
                        std::to_string(r.qmax) + "]: TensorRT's int8 is signed (use --format qdq)");
    throw ExportError("export: " + site + ": the integer range [" + std::to_string(r.qmin) + ", " +
                      std::to_string(r.qmax) + "] does not fit int8 or uint8 (more than 8 bits)");
  }

  void note_once(const std::string& s) {
    for (const auto& n : g.notes)
      if (n == s) return;
    g.notes.push_back(s);
  }

  /// x -> QuantizeLinear -> [Clip on the integer codes] -> DequantizeLinear, with the quantizer's
  /// own scale. Activations always travel as uint8 (ORT's preferred activation type on x86): a
  /// signed grid [qmin, qmax] with zero point z is the same grid as [qmin+128, qmax+128] with zero
  /// point z+128. A grid narrower than the container (sub-8-bit, or a narrow signed range) gets a
  /// Clip on the codes, so the runtime saturates exactly where the simulation does. Under
  /// `tensorrt` the container is int8 with zero point 0 and there is no Clip (TensorRT's Q/DQ).
  std::string qdq(const std::string& x, FakeQuantizer* q, const std::string& site) {
    if (!q || opt_.format == Format::Fp32) return x;
    const QParams qp = affine(q, site);
    if (qp.per_channel()) throw ExportError("export: " + site + ": per-channel activation quantizers are not supported");
    const std::string hint = site;
    const auto r = qp.range;
    at::ScalarType dtype = at::kByte;
    int64_t off = 0, cmin = 0, cmax = 255;
    if (opt_.format == Format::TensorRT) {
      dtype = container(qp, site, false).dtype;
      cmin = -128;
      cmax = 127;
      if (r.qmin == -127)
        note_once("narrow [-127, 127] activation grids are written as TensorRT's int8 Q/DQ, which saturates at -128: "
                  "one code wider on the negative side than the simulation");
    } else {
      if (r.qmax - r.qmin > 255 || r.qmin < -128 || r.qmax > 255 || (r.qmin < 0 && r.qmax > 127))
        throw ExportError("export: " + site + ": the integer range [" + std::to_string(r.qmin) + ", " +
                          std::to_string(r.qmax) + "] does not fit int8 or uint8 (more than 8 bits)");
      off = r.qmin < 0 ? 128 : 0;
    }
    // Two quantizers of one tensor with the same grid (each consumer observed the same values) are
    // one QuantizeLinear/DequantizeLinear pair: what a runtime expects, and the producer then
    // meets a single QuantizeLinear it can fuse.
    char grid[96];
    std::snprintf(grid, sizeof grid, "|%a|%lld|%lld|%lld", qp.scale.item<float>(),
                  static_cast<long long>(qp.zero_point.item<int64_t>()), static_cast<long long>(r.qmin),
                  static_cast<long long>(r.qmax));
    if (auto it = shared_qdq_.find(x + grid); it != shared_qdq_.end()) {
      XQuant xq = it->second.second;
      xq.site = site;
      g.quants.push_back(xq);
      return it->second.first;
    }
    const std::string s = init(hint + ".scale", qp.scale.to(at::kFloat).reshape({}));
    const std::string z = init(hint + ".zero_point", (qp.zero_point.to(at::kLong) + off).to(dtype).reshape({}));
    std::string q8 = node("QuantizeLinear", {x, s, z}, {}, hint);
    if (opt_.format != Format::TensorRT && (r.qmin + off > cmin || r.qmax + off < cmax)) {
      const std::string lo = init(hint + ".qmin", at::scalar_tensor(r.qmin + off, at::kLong).to(dtype));
      const std::string hi = init(hint + ".qmax", at::scalar_tensor(r.qmax + off, at::kLong).to(dtype));
      q8 = node("Clip", {q8, lo, hi}, {}, hint + "/codes");
      note_once("grids narrower than uint8 (sub-8-bit, narrow signed): QuantizeLinear into uint8, Clip on the "
                "integer codes to the grid's [qmin, qmax], DequantizeLinear: the runtime saturates exactly where the "
                "simulation does, and the float ops keep a DequantizeLinear before and a QuantizeLinear after them, "
                "so the runtime still fuses them into integer kernels");
    }
    const std::string out = node("DequantizeLinear", {q8, s, z}, {}, hint);
    shared_qdq_[x + grid] = {out, record(site, x, q8, s, z, qp, dtype == at::kByte, -1)};
    return out;
  }

  /// Notes one quantizer of the graph (g.quants) and returns the record.
  XQuant record(const std::string& site, const std::string& tensor, const std::string& quantized,
                const std::string& scale, const std::string& zero_point, const QParams& qp, bool is_unsigned,
                int64_t axis) {
    XQuant xq;
    xq.site = site;
    xq.tensor = tensor;
    xq.quantized = quantized;
    xq.scale = scale;
    xq.zero_point = zero_point;
    xq.qmin = qp.range.qmin;
    xq.qmax = qp.range.qmax;
    xq.is_unsigned = is_unsigned;
    xq.axis = axis;
    xq.amax = qp.scale.max().item<double>() * std::max(std::abs(double(qp.range.qmin)), double(qp.range.qmax));
    g.quants.push_back(xq);
    return xq;
  }

  /// A weight as int8 codes + DequantizeLinear (the codes are the quantizer's own output divided
  /// back onto its grid), or the float weight when it is not quantized (or under fp32).
  /// `axis`: the output-channel axis of the tensor as written.
  struct Weight {
    std::string value;
    std::optional<QParams> qp;
  };
  Weight weight(const at::Tensor& w_float, FakeQuantizer* q, const std::string& site, int64_t axis,
                bool transpose_2d = false) {
    at::NoGradGuard ng;
    auto w_written = [&](const at::Tensor& t) { return transpose_2d ? t.t().contiguous() : t; };
    if (!q || opt_.format == Format::Fp32) return {init(site, w_written(w_float.to(at::kFloat))), std::nullopt};
    QParams qp = affine(q, site);
    const Container c = container(qp, site, true);
    at::Tensor wq = q->forward(w_float).to(at::kDouble);
    at::Tensor s = qp.scale.to(at::kDouble), z = qp.zero_point.to(at::kDouble);
    if (qp.per_channel()) {
      std::vector<int64_t> view(static_cast<size_t>(w_float.dim()), 1);
      view[static_cast<size_t>(qp.ch_axis)] = -1;
      s = s.reshape(view);
      z = z.reshape(view);
    }
    at::Tensor codes = at::round(wq / s) + z;
    const double off = (codes.clamp(double(qp.range.qmin), double(qp.range.qmax)) - z).mul(s).sub(wq).abs().max().item<double>();
    if (off > 1e-5 * std::max(1e-12, s.max().item<double>()) + 1e-7)
      throw ExportError("export: " + site + ": the weight quantizer's output is not on its affine grid (off by " +
                        std::to_string(off) + ")");
    codes = codes.clamp(double(qp.range.qmin), double(qp.range.qmax));
    if (opt_.format == Format::TensorRT && codes.min().item<double>() < -127)
      throw ExportError("export --format tensorrt: " + site +
                        " has weight codes at -128: TensorRT takes weights in [-127, 127] (a narrow-range scheme)");
    const std::string wname = init(site + "_quantized", w_written(codes.to(c.dtype)));
    const std::string sname = init(site + ".scale", qp.scale.to(at::kFloat));
    const std::string zname = init(site + ".zero_point", qp.zero_point.to(c.dtype));
    std::map<std::string, XAttr> attrs;
    if (qp.per_channel()) attrs["axis"] = XAttr::of(axis);
    const std::string out = node("DequantizeLinear", {wname, sname, zname}, attrs, site);
    record(site, out, wname, sname, zname, qp, c.is_unsigned, qp.per_channel() ? axis : -1);
    return {out, qp};
  }

  /// The bias: int32 at s_in * s_w when both the input and the weight are quantized, else float.
  std::string bias(const at::Tensor& b, const std::optional<QParams>& in_qp, const std::optional<QParams>& w_qp,
                   const std::string& site) {
    if (!in_qp || !w_qp) return init(site, b.to(at::kFloat));
    at::Tensor scale = (in_qp->scale.to(at::kFloat) * w_qp->scale.to(at::kFloat)).to(at::kFloat);  // as float32
    at::Tensor q = at::round(b.to(at::kDouble) / scale.to(at::kDouble));
    q = q.clamp(-2147483648.0, 2147483647.0).to(at::kInt);
    const std::string qn = init(site + "_quantized", q);
    const std::string sn = init(site + ".scale", scale.dim() == 0 ? scale.expand({b.size(0)}).contiguous() : scale);
    const std::string zn = init(site + ".zero_point", at::zeros({b.size(0)}, at::kInt));
    return node("DequantizeLinear", {qn, sn, zn}, {{"axis", XAttr::of(int64_t{0})}}, site);
  }

  std::string act(const std::string& x, quant::Act a, const std::string& hint) {
    switch (a) {
      case quant::Act::None:
        return x;
      case quant::Act::ReLU:
        return node("Relu", {x}, {}, hint);
      case quant::Act::ReLU6:
        return node("Clip", {x, init(hint + ".min", scalar_f(0)), init(hint + ".max", scalar_f(6))}, {}, hint);
    }
    return x;
  }

 private:
  const ExportOptions& opt_;
  int64_t batch_;
  std::unordered_map<const jit::Value*, Val> vals_;
  std::set<std::string> used_;
  std::map<std::string, std::pair<std::string, XQuant>> shared_qdq_;  ///< tensor|grid -> its DequantizeLinear
};

// ---------------------------------------------------------------------------------------------
// Layers and adds.

/// The last quantizer-relevant fact about a layer's input: the input quantizer's qparams (for
/// the int32 bias).
std::optional<QParams> input_qparams(Emit& e, FakeQuantizer* q) {
  if (!q || e.options().format == Format::Fp32) return std::nullopt;
  return q->affine_qparams();
}

std::string emit_layer(Emit& e, const quant::LayerRef& ref, const std::string& x, const std::vector<int64_t>& in_shape,
                       const std::vector<int64_t>& out_shape) {
  quant::QuantLayer* layer = ref.layer;
  const std::string& name = ref.name;
  const std::string xin = e.qdq(x, layer->input_quantizer(), name + ":input");
  const auto in_qp = input_qparams(e, layer->input_quantizer());
  if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(layer)) {
    at::NoGradGuard ng;
    auto [w, b] = conv->folded_weight_bias();
    const auto& o = conv->options();
    auto W = e.weight(w, layer->weight_quantizer(), name + ".weight", 0);
    const std::string B = e.bias(b, in_qp, W.qp, name + ".bias");
    std::string y = e.node("Conv", {xin, W.value, B},
                           {{"kernel_shape", XAttr::of(std::vector<int64_t>{o.kernel_size, o.kernel_size})},
                            {"strides", XAttr::of(std::vector<int64_t>{o.stride, o.stride})},
                            {"pads", XAttr::of(std::vector<int64_t>{o.padding, o.padding, o.padding, o.padding})},
                            {"dilations", XAttr::of(std::vector<int64_t>{1, 1})},
                            {"group", XAttr::of(o.groups)}},
                           name);
    if (conv->bn_fold() < 0 && conv->bn()) {
      // Not folded (strategy -1): the simulation quantized the raw weight and runs BN in float.
      auto* bn = conv->bn();
      y = e.node("BatchNormalization",
                 {y, e.init(ref.bn_name + ".weight", bn->weight), e.init(ref.bn_name + ".bias", bn->bias),
                  e.init(ref.bn_name + ".running_mean", bn->running_mean),
                  e.init(ref.bn_name + ".running_var", bn->running_var)},
                 {{"epsilon", XAttr::of_f(static_cast<float>(bn->options.eps()))}}, ref.bn_name);
    }
    e.g.layer_outputs.push_back({name, y, out_shape});
    return e.act(y, ref.act, name);
  }
  auto* lin = dynamic_cast<quant::QLinearImpl*>(layer);
  if (!lin) throw ExportError(std::string("export: ") + name + ": unknown layer type " + layer->layer_type());
  at::NoGradGuard ng;
  at::Tensor bias = lin->bias.defined() ? lin->bias : at::zeros({lin->weight.size(0)}, at::kFloat);
  std::string y;
  if (in_shape.size() == 2) {
    // Gemm with transB: the weight is written [out, in], its channel axis 0.
    auto W = e.weight(lin->weight, layer->weight_quantizer(), name + ".weight", 0);
    const std::string B = e.bias(bias, in_qp, W.qp, name + ".bias");
    y = e.node("Gemm", {xin, W.value, B}, {{"transB", XAttr::of(int64_t{1})}}, name);
  } else {
    // MatMul over the last axis: the weight is written transposed, [in, out], its channel axis 1.
    auto W = e.weight(lin->weight, layer->weight_quantizer(), name + ".weight", 1, /*transpose_2d=*/true);
    y = e.node("MatMul", {xin, W.value}, {}, name);
    y = e.node("Add", {y, e.bias(bias, in_qp, W.qp, name + ".bias")}, {}, name);
  }
  e.g.layer_outputs.push_back({name, y, out_shape});
  return e.act(y, ref.act, name);
}

std::string emit_add(Emit& e, const quant::AddRef& ref, const std::string& a, const std::string& b) {
  auto* add = ref.add;
  const std::string qa = e.qdq(a, add->input_quantizer(0), ref.name + ":in0");
  const std::string qb = e.qdq(b, add->input_quantizer(1), ref.name + ":in1");
  std::string y = e.node("Add", {qa, qb}, {}, ref.name);
  if (add->relu_after()) y = e.node("Relu", {y}, {}, ref.name);
  return e.qdq(y, add->output_quantizer(), ref.name + ":out");
}

// ---------------------------------------------------------------------------------------------
// aten operators.

using Emitter = std::function<void(Emit&, const jit::Node*)>;

void out(Emit& e, const jit::Node* n, const std::string& name) { e.set_tensor(n->output(0), name); }
std::string hint(const jit::Node* n) { return std::string(n->kind().toUnqualString()); }

void unary(std::map<std::string, Emitter>& t, const std::string& aten, const std::string& onnx) {
  Emitter f = [onnx](Emit& e, const jit::Node* n) { out(e, n, e.node(onnx, {e.tensor(n, 0)}, {}, onnx)); };
  t["aten::" + aten] = f;
  t["aten::" + aten + "_"] = f;
}

void binary(std::map<std::string, Emitter>& t, const std::string& aten, const std::string& onnx, bool has_alpha) {
  Emitter f = [onnx, has_alpha](Emit& e, const jit::Node* n) {
    if (has_alpha && n->inputs().size() > 2 && e.cdouble(n, 2) != 1.0)
      throw e.unsupported(n, "alpha other than 1");
    out(e, n, e.node(onnx, {e.tensor(n, 0), e.tensor(n, 1)}, {}, onnx));
  };
  t["aten::" + aten] = f;
  t["aten::" + aten + "_"] = f;
}

void identity(std::map<std::string, Emitter>& t, const std::string& aten) {
  t["aten::" + aten] = [](Emit& e, const jit::Node* n) { e.set(n->output(0), e.val(n->input(0))); };
}

/// 2-D pooling attributes from aten's (kernel, stride, padding) lists (stride empty = kernel).
std::map<std::string, XAttr> pool_attrs(Emit& e, const jit::Node* n, bool ceil_mode) {
  auto k = e.cints(n, 1), s = e.cints(n, 2), p = e.cints(n, 3);
  if (k.size() == 1) k = {k[0], k[0]};
  if (s.empty()) s = k;
  if (s.size() == 1) s = {s[0], s[0]};
  if (p.size() == 1) p = {p[0], p[0]};
  std::map<std::string, XAttr> a = {{"kernel_shape", XAttr::of(k)},
                                    {"strides", XAttr::of(s)},
                                    {"pads", XAttr::of(std::vector<int64_t>{p[0], p[1], p[0], p[1]})}};
  if (ceil_mode) a["ceil_mode"] = XAttr::of(int64_t{1});
  return a;
}

/// A reshape target with the batch kept symbolic: a leading dimension equal to the traced batch,
/// where the input's leading dimension is the batch too, becomes 0 (ONNX: copy the input's).
std::vector<int64_t> reshape_target(Emit& e, const jit::Node* n, std::vector<int64_t> shape) {
  const auto in_shape = e.val(n->input(0)).shape;
  if (!shape.empty() && !in_shape.empty() && shape[0] == e.trace_batch() && in_shape[0] == e.trace_batch())
    shape[0] = 0;
  return shape;
}

const std::map<std::string, Emitter>& aten_emitters() {
  static const std::map<std::string, Emitter> table = [] {
    std::map<std::string, Emitter> t;
    unary(t, "relu", "Relu");
    unary(t, "sigmoid", "Sigmoid");
    unary(t, "tanh", "Tanh");
    unary(t, "sqrt", "Sqrt");
    unary(t, "exp", "Exp");
    binary(t, "add", "Add", true);
    binary(t, "sub", "Sub", true);
    binary(t, "mul", "Mul", false);
    binary(t, "div", "Div", false);
    binary(t, "matmul", "MatMul", false);
    identity(t, "dropout");
    identity(t, "dropout_");
    identity(t, "feature_dropout");
    identity(t, "contiguous");
    identity(t, "clone");
    identity(t, "detach");
    t["aten::hardtanh"] = t["aten::hardtanh_"] = t["aten::clamp"] = t["aten::clamp_"] = [](Emit& e,
                                                                                          const jit::Node* n) {
      std::vector<std::string> in = {e.tensor(n, 0)};
      in.push_back(e.is_none(n, 1) ? std::string() : e.init("clip_min", scalar_f(e.cdouble(n, 1))));
      in.push_back(e.is_none(n, 2) ? std::string() : e.init("clip_max", scalar_f(e.cdouble(n, 2))));
      while (!in.empty() && in.back().empty()) in.pop_back();
      out(e, n, e.node("Clip", in, {}, "clip"));
    };
    t["aten::hardswish"] = t["aten::hardswish_"] = [](Emit& e, const jit::Node* n) {
      // HardSwish is opset 14; at 13 it is x * HardSigmoid(x; 1/6, 1/2), the same function.
      const std::string x = e.tensor(n, 0);
      auto hs = e.node("HardSigmoid", {x}, {{"alpha", XAttr::of_f(1.0f / 6)}, {"beta", XAttr::of_f(0.5f)}}, "hardswish");
      out(e, n, e.node("Mul", {x, hs}, {}, "hardswish"));
    };
    t["aten::hardsigmoid"] = t["aten::hardsigmoid_"] = [](Emit& e, const jit::Node* n) {
      out(e, n, e.node("HardSigmoid", {e.tensor(n, 0)}, {{"alpha", XAttr::of_f(1.0f / 6)}, {"beta", XAttr::of_f(0.5f)}},
                       "hardsigmoid"));
    };
    t["aten::leaky_relu"] = t["aten::leaky_relu_"] = [](Emit& e, const jit::Node* n) {
      out(e, n, e.node("LeakyRelu", {e.tensor(n, 0)}, {{"alpha", XAttr::of_f(float(e.cdouble(n, 1)))}}, "leaky_relu"));
    };
    t["aten::max_pool2d"] = [](Emit& e, const jit::Node* n) {
      auto d = e.cints(n, 4);
      for (auto v : d)
        if (v != 1) throw e.unsupported(n, "dilated max pooling");
      out(e, n, e.node("MaxPool", {e.tensor(n, 0)}, pool_attrs(e, n, e.cbool(n, 5)), "maxpool"));
    };
    t["aten::avg_pool2d"] = [](Emit& e, const jit::Node* n) {
      if (!e.is_none(n, 6)) throw e.unsupported(n, "divisor_override");
      auto a = pool_attrs(e, n, e.cbool(n, 4));
      a["count_include_pad"] = XAttr::of(int64_t{e.cbool(n, 5) ? 1 : 0});
      out(e, n, e.node("AveragePool", {e.tensor(n, 0)}, a, "avgpool"));
    };
    t["aten::adaptive_avg_pool2d"] = [](Emit& e, const jit::Node* n) {
      auto osz = e.cints(n, 1);
      const auto in = e.val(n->input(0)).shape;
      if (osz.size() == 1) osz = {osz[0], osz[0]};
      if (osz == std::vector<int64_t>{1, 1}) {
        out(e, n, e.node("GlobalAveragePool", {e.tensor(n, 0)}, {}, "gap"));
        return;
      }
      if (in.size() != 4 || in[2] % osz[0] || in[3] % osz[1])
        throw e.unsupported(n, "adaptive pooling to a size that does not divide the input");
      std::vector<int64_t> k = {in[2] / osz[0], in[3] / osz[1]};
      out(e, n, e.node("AveragePool", {e.tensor(n, 0)}, {{"kernel_shape", XAttr::of(k)}, {"strides", XAttr::of(k)}},
                       "avgpool"));
    };
    t["aten::mean"] = [](Emit& e, const jit::Node* n) {
      if (n->inputs().size() < 3) throw e.unsupported(n, "mean over all dimensions");
      out(e, n, e.node("ReduceMean", {e.tensor(n, 0)},
                       {{"axes", XAttr::of(e.cints(n, 1))}, {"keepdims", XAttr::of(int64_t{e.cbool(n, 2) ? 1 : 0})}},
                       "mean"));
    };
    t["aten::flatten"] = [](Emit& e, const jit::Node* n) {
      const int64_t start = e.cint(n, 1), end = e.cint(n, 2);
      const auto in = e.val(n->input(0)).shape;
      if ((end == -1 || end == static_cast<int64_t>(in.size()) - 1) && start == 1) {
        out(e, n, e.node("Flatten", {e.tensor(n, 0)}, {{"axis", XAttr::of(int64_t{1})}}, "flatten"));
        return;
      }
      auto shape = Emit::traced_shape(n->output(0));
      out(e, n, e.node("Reshape", {e.tensor(n, 0), e.init("shape", ints_tensor(reshape_target(e, n, shape)))}, {},
                       "flatten"));
    };
    Emitter reshape = [](Emit& e, const jit::Node* n) {
      auto shape = Emit::traced_shape(n->output(0));
      out(e, n, e.node("Reshape", {e.tensor(n, 0), e.init("shape", ints_tensor(reshape_target(e, n, shape)))}, {},
                       "reshape"));
    };
    t["aten::view"] = t["aten::reshape"] = reshape;
    t["aten::transpose"] = [](Emit& e, const jit::Node* n) {
      const auto in = e.val(n->input(0)).shape;
      const int64_t r = static_cast<int64_t>(in.size());
      int64_t a = e.cint(n, 1), b = e.cint(n, 2);
      if (a < 0) a += r;
      if (b < 0) b += r;
      std::vector<int64_t> perm(static_cast<size_t>(r));
      for (int64_t i = 0; i < r; ++i) perm[static_cast<size_t>(i)] = i;
      std::swap(perm[static_cast<size_t>(a)], perm[static_cast<size_t>(b)]);
      out(e, n, e.node("Transpose", {e.tensor(n, 0)}, {{"perm", XAttr::of(perm)}}, "transpose"));
    };
    t["aten::permute"] = [](Emit& e, const jit::Node* n) {
      out(e, n, e.node("Transpose", {e.tensor(n, 0)}, {{"perm", XAttr::of(e.cints(n, 1))}}, "transpose"));
    };
    t["aten::softmax"] = [](Emit& e, const jit::Node* n) {
      out(e, n, e.node("Softmax", {e.tensor(n, 0)}, {{"axis", XAttr::of(e.cint(n, 1))}}, "softmax"));
    };
    t["aten::cat"] = [](Emit& e, const jit::Node* n) {
      const jit::Node* list = n->input(0)->node();
      if (list->kind() != c10::prim::ListConstruct) throw e.unsupported(n, "a tensor list not built in the trace");
      std::vector<std::string> in;
      for (size_t i = 0; i < list->inputs().size(); ++i) in.push_back(e.tensor(list, i));
      out(e, n, e.node("Concat", in, {{"axis", XAttr::of(e.cint(n, 1))}}, "concat"));
    };
    t["aten::constant_pad_nd"] = [](Emit& e, const jit::Node* n) {
      // aten pads (last dim first, begin/end pairs) -> ONNX pads (all begins, then all ends).
      auto p = e.cints(n, 1);
      const auto in = e.val(n->input(0)).shape;
      const size_t r = in.size();
      std::vector<int64_t> pads(2 * r, 0);
      for (size_t i = 0; 2 * i + 1 < p.size(); ++i) {
        pads[r - 1 - i] = p[2 * i];
        pads[2 * r - 1 - i] = p[2 * i + 1];
      }
      const double v = e.is_none(n, 2) ? 0.0 : e.cdouble(n, 2);
      out(e, n, e.node("Pad", {e.tensor(n, 0), e.init("pads", ints_tensor(pads)), e.init("pad_value", scalar_f(v))},
                       {{"mode", XAttr::of_s("constant")}}, "pad"));
    };
    return t;
  }();
  return table;
}

/// A ReLU, or a Clip(0, max) such as ReLU6, whose output feeds only QuantizeLinear nodes is folded
/// into their integer codes: Q(max(x, 0)) = max(Q(x), z) and Q(min(x, m)) = min(Q(x), Q(m)), since
/// rounding is monotonic; so Q reads the float op's input and the Clip on its codes (added or
/// tightened) carries the bounds. Exact, and the conv before it then meets its QuantizeLinear
/// directly, which is the pattern a runtime fuses into an integer kernel (ONNX Runtime folds a
/// ReLU into Q only when the zero point is the container's minimum). Returns how many were folded.
int fold_activations_into_codes(XGraph& g) {
  auto init_of = [&](const std::string& n) { return g.initializer(n); };
  auto consumers = [&](const std::string& v) {
    std::vector<size_t> c;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      for (const auto& in : g.nodes[i].inputs)
        if (in == v) {
          c.push_back(i);
          break;
        }
    return c;
  };
  std::vector<bool> removed(g.nodes.size(), false);
  std::map<size_t, XNode> clip_after;  // new code Clips, placed right after their QuantizeLinear
  int folded = 0, fresh_id = 0;
  auto new_scalar = [&](const std::string& base, int64_t v) {
    std::string n = base + ".folded" + std::to_string(fresh_id++);
    g.initializers.emplace_back(n, at::scalar_tensor(v, at::kLong).to(at::kByte));
    return n;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const XNode n = g.nodes[i];
    if (n.outputs.at(0) == g.output) continue;
    double hi = std::numeric_limits<double>::infinity();
    if (n.op == "Clip") {
      const at::Tensor* mn = n.inputs.size() > 1 && !n.inputs[1].empty() ? init_of(n.inputs[1]) : nullptr;
      const at::Tensor* mx = n.inputs.size() > 2 && !n.inputs[2].empty() ? init_of(n.inputs[2]) : nullptr;
      if (!mn || mn->scalar_type() != at::kFloat || mn->item<float>() != 0.0f) continue;
      if (mx) {
        if (mx->scalar_type() != at::kFloat) continue;
        hi = mx->item<float>();
      }
    } else if (n.op != "Relu") {
      continue;
    }
    const auto cons = consumers(n.outputs[0]);
    bool ok = !cons.empty();
    for (size_t c : cons) {
      const XNode& q = g.nodes[c];
      ok = ok && q.op == "QuantizeLinear" && q.inputs[0] == n.outputs[0] && init_of(q.inputs[2]) &&
           init_of(q.inputs[2])->scalar_type() == at::kByte && init_of(q.inputs[1])->numel() == 1;
    }
    if (!ok) continue;
    for (size_t c : cons) {
      XNode& q = g.nodes[c];
      const float scale = init_of(q.inputs[1])->item<float>();
      const int64_t zp = init_of(q.inputs[2])->to(at::kLong).item<int64_t>();
      const int64_t code_lo = zp;
      const int64_t code_hi =
          std::isinf(hi) ? 255 : std::min<int64_t>(255, static_cast<int64_t>(std::nearbyint(float(hi) / scale)) + zp);
      q.inputs[0] = n.inputs[0];
      const auto after = consumers(q.outputs[0]);
      if (after.size() == 1 && g.nodes[after[0]].op == "Clip") {
        XNode& clip = g.nodes[after[0]];
        const int64_t lo0 = init_of(clip.inputs[1])->to(at::kLong).item<int64_t>();
        const int64_t hi0 = init_of(clip.inputs[2])->to(at::kLong).item<int64_t>();
        clip.inputs[1] = new_scalar(clip.inputs[1], std::max(lo0, code_lo));
        clip.inputs[2] = new_scalar(clip.inputs[2], std::min(hi0, code_hi));
      } else if (code_lo > 0 || code_hi < 255) {  // a full [0, 255] clip would change nothing
        XNode clip;
        clip.op = "Clip";
        clip.name = q.name + "/folded_" + n.op;
        clip.inputs = {q.outputs[0] + "/folded", new_scalar(q.name + ".lo", code_lo), new_scalar(q.name + ".hi", code_hi)};
        clip.outputs = {q.outputs[0]};
        q.outputs[0] += "/folded";
        clip_after[c] = clip;
      }
    }
    for (auto& xq : g.quants)
      if (xq.tensor == n.outputs[0]) xq.tensor = n.inputs[0];
    removed[i] = true;
    ++folded;
  }
  std::vector<XNode> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
    if (auto it = clip_after.find(i); it != clip_after.end()) nodes.push_back(std::move(it->second));
  }
  g.nodes = std::move(nodes);
  // Bounds the tightened Clips no longer read.
  std::set<std::string> used;
  for (const auto& n : g.nodes)
    for (const auto& i : n.inputs) used.insert(i);
  g.initializers.erase(std::remove_if(g.initializers.begin(), g.initializers.end(),
                                      [&](const auto& kv) { return !used.count(kv.first); }),
                       g.initializers.end());
  return folded;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Format parse_format(const std::string& s) {
  if (s == "qdq") return Format::Qdq;
  if (s == "fp32") return Format::Fp32;
  if (s == "tensorrt") return Format::TensorRT;
  throw ConfigError("--format " + s + ": unknown export format (qdq, fp32, tensorrt)");
}

const char* format_name(Format f) {
  switch (f) {
    case Format::Qdq:
      return "qdq";
    case Format::Fp32:
      return "fp32";
    case Format::TensorRT:
      return "tensorrt";
  }
  return "?";
}

XGraph build_graph(quant::QuantModel& model, const ExportOptions& opt) {
  if (opt.sample_shape.empty()) throw Error("export: the input's sample shape is not set");
  TraceTargets targets;
  targets.layers = model.quant_layers();
  targets.adds = model.adds();
  for (const auto& l : targets.layers)
    if (l.layer->deployed())
      throw Error("export: " + l.name + " has integer deploy hooks installed (restore the lowered model first)");
  for (auto* q : model.quantizers())
    if (q->observing()) throw Error("export: a quantizer is still observing (calibrate the model first)");
  model.eval();
  at::NoGradGuard ng;

  // The trace: the markers' ids index `targets`; the batch of 3 only names the batch dimension.
  constexpr int64_t kTraceBatch = 3;
  std::vector<int64_t> in_shape = {kTraceBatch};
  in_shape.insert(in_shape.end(), opt.sample_shape.begin(), opt.sample_shape.end());
  at::Tensor x = at::zeros(in_shape, at::kFloat);
  std::shared_ptr<jit::Graph> graph;
  {
    MarkerHooks hooks(targets);
    try {
      auto traced = jit::tracer::trace(
          {x}, [&](jit::Stack in) -> jit::Stack { return {model.forward(in.at(0).toTensor())}; },
          [](const at::Tensor&) { return std::string(); }, /*strict=*/false, /*force_outplace=*/false);
      graph = traced.first->graph;
    } catch (const c10::Error& err) {
      throw Error(std::string("export: tracing the model failed: ") + err.what_without_backtrace());
    }
  }

  Emit e(opt, kTraceBatch);
  e.g.name = opt.graph_name;
  e.g.input_shape = in_shape;
  e.set_tensor(graph->inputs().at(0), e.fresh("input"));
  const auto& table = aten_emitters();
  for (const jit::Node* n : graph->nodes()) {
    const std::string kind = n->kind().toQualString();
    if (n->kind() == c10::prim::Constant) {
      Val v;
      v.is_const = true;
      v.constant = *jit::toIValue(n->output());
      e.set(n->output(), v);
    } else if (n->kind() == c10::prim::ListConstruct) {
      // Lists of constant ints/floats (sizes, kernel shapes); tensor lists stay for aten::cat.
      bool all_const = true;
      for (auto* in : n->inputs()) all_const = all_const && e.val(in).is_const;
      Val v;
      if (all_const && n->output()->type()->kind() == c10::TypeKind::ListType &&
          n->output()->type()->containedType(0)->kind() == c10::TypeKind::IntType) {
        std::vector<int64_t> ints;
        for (auto* in : n->inputs()) {
          ints.push_back(e.val(in).constant.toInt());
          v.batch_elems.push_back(e.val(in).batch);
        }
        v.is_const = true;
        v.constant = c10::IValue(ints);
      } else if (all_const && n->output()->type()->containedType(0)->kind() == c10::TypeKind::FloatType) {
        std::vector<double> fs;
        for (auto* in : n->inputs()) fs.push_back(e.val(in).constant.toDouble());
        v.is_const = true;
        v.constant = c10::IValue(fs);
      }
      e.set(n->output(), v);  // a tensor list: read by its consumer through the node
    } else if (kind == "aten::size") {
      Val v;
      v.is_const = true;
      const auto shape = e.val(n->input(0)).shape;
      int64_t d = e.cint(n, 1);
      if (d < 0) d += static_cast<int64_t>(shape.size());
      v.constant = shape.at(static_cast<size_t>(d));
      v.batch = d == 0;
      e.set(n->output(), v);
    } else if (kind == "prim::NumToTensor" || kind == "aten::Int" || kind == "aten::ScalarImplicit") {
      e.set(n->output(), e.val(n->input(0)));
    } else if (kind == "qbench_export::layer") {
      const auto& ref = targets.layers.at(static_cast<size_t>(e.cint(n, 1)));
      e.set_tensor(n->output(), emit_layer(e, ref, e.tensor(n, 0), e.val(n->input(0)).shape,
                                           Emit::traced_shape(n->output())));
    } else if (kind == "qbench_export::add") {
      const auto& ref = targets.adds.at(static_cast<size_t>(e.cint(n, 2)));
      e.set_tensor(n->output(), emit_add(e, ref, e.tensor(n, 0), e.tensor(n, 1)));
    } else if (auto it = table.find(kind); it != table.end()) {
      it->second(e, n);
    } else {
      throw e.unsupported(n, "the exporter has no ONNX form for this operator");
    }
  }
  // The output: renamed "logits" (every use of the traced name follows).
  const jit::Value* result = graph->outputs().at(0);
  std::string last = e.val(result).name;
  if (last.empty()) throw ExportError("export: the model's output is not a tensor");
  e.g.output_shape = Emit::traced_shape(result);
  if (last == e.g.input) {
    last = e.node("Identity", {last}, {}, "output");
  }
  for (auto& nd : e.g.nodes) {
    for (auto& o : nd.outputs)
      if (o == last) o = e.g.output;
    for (auto& i : nd.inputs)
      if (i == last) i = e.g.output;
  }
  for (auto& q : e.g.quants) {
    if (q.tensor == last) q.tensor = e.g.output;
  }
  for (auto& lo : e.g.layer_outputs)
    if (lo.tensor == last) lo.tensor = e.g.output;
  e.g.input = e.val(graph->inputs().at(0)).name;
  if (opt.format == Format::Qdq && fold_activations_into_codes(e.g) > 0)
    e.note_once("ReLU / ReLU6 before quantizers folded into the Clip on the integer codes (exact: rounding is "
                "monotonic), so each conv meets its QuantizeLinear directly and the runtime can fuse it");
  return std::move(e.g);
}

const XNode* XGraph::find(const std::string& n) const {
  for (const auto& x : nodes)
    if (x.name == n) return &x;
  return nullptr;
}

int XGraph::count(const std::string& op) const {
  int c = 0;
  for (const auto& x : nodes) c += x.op == op;
  return c;
}

const at::Tensor* XGraph::initializer(const std::string& n) const {
  for (const auto& [k, t] : initializers)
    if (k == n) return &t;
  return nullptr;
}

}  // namespace qbench::exporter
