// The ONNX executor (see model.h): planning (fusion, folding, blocks, modules) and execution.
#include "qbench/onnx/model.h"

#include <ATen/ATen.h>
#include <c10/util/SmallVector.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

namespace qbench::onnx {

using quant::Act;

namespace {

enum class Kind {
  Conv, Linear, QAdd, BN, Binary, Relu, Sigmoid, Tanh, Sqrt, HardSwish, Dropout, Clip, LeakyRelu, PRelu,
  HardSigmoid, Softmax, MaxPool, AvgPool, GlobalAvgPool, ReduceMean, Flatten, Reshape, Transpose, Squeeze,
  Unsqueeze, Concat, Split, Slice, Pad, MatMul, Gemm
};

enum class BinOp { Add, Sub, Mul, Div, Pow };

/// How to build a step's module once the blocks are known.
struct ModuleSpec {
  std::string name, bn_name;        ///< local names (before uniquing)
  at::Tensor weight, bias;          ///< from the file (undefined = none)
  quant::QConv2dOptions conv{0, 0, 1};
  int64_t in_features = 0, out_features = 0;
  bool has_bn = false;
  at::Tensor bn_scale, bn_bias, bn_mean, bn_var;
  double bn_eps = 1e-5, bn_momentum = 0.1;
  Act act = Act::None;
  bool relu_after = false;  // QAdd
  std::string param_name;   // PRelu slope
};

}  // namespace

struct Step {
  Kind kind;
  StepInfo info;
  std::vector<int> in;   ///< >= 0 runtime slot, < 0 constant -1-k
  std::vector<int> out;  ///< runtime slots
  // parameters
  BinOp bin = BinOp::Add;
  std::vector<int64_t> a, b, c, d;  ///< kernel/strides/pads/dilations, axes, perm, sizes...
  std::vector<int64_t> pre_pad;     ///< torch-order pads applied before the op (asymmetric padding)
  double f0 = 0, f1 = 0;
  int64_t i0 = 0, i1 = 0;
  bool flag = false, flag2 = false;
  std::vector<SymInt> shape;        ///< Reshape target
  at::Tensor c0;                    ///< constant operand (PRelu slope, Gemm matrix bias, AvgPool divisor)
  ModuleSpec spec;
  // modules (set after planning)
  quant::QConv2dImpl* conv = nullptr;
  quant::QLinearImpl* lin = nullptr;
  quant::QAddImpl* add = nullptr;
  torch::nn::BatchNorm2dImpl* bn = nullptr;
  torch::nn::Module* owner = nullptr;  ///< where a PRelu slope parameter (c0) is registered
  std::vector<int> release;  ///< runtime slots dead after this step
};

struct OnnxModel::Plan {
  std::vector<Step> steps;
  std::vector<at::Tensor> consts;
  int n_slots = 0;
  std::vector<int> input_slots;   ///< runtime graph inputs
  std::vector<int> output_refs;   ///< graph outputs (slot or constant)
  std::vector<StepInfo> infos;
  mutable bool training = false;  ///< Dropout's mode, set by whoever starts a forward pass
  const quant::PoolingModes* modes = nullptr;  ///< the owning model's pooling flips (SysNoise)
  const at::Tensor& get(const std::vector<at::Tensor>& v, int r) const { return r >= 0 ? v[r] : consts[-1 - r]; }
  void exec(const Step& s, std::vector<at::Tensor>& v) const;
  void run_range(size_t begin, size_t end, std::vector<at::Tensor>& v) const {
    for (size_t i = begin; i < end; ++i) {
      exec(steps[i], v);
      for (int r : steps[i].release) v[static_cast<size_t>(r)].reset();
    }
  }
};

namespace {

/// A block: the steps between two single-tensor cuts around a residual Add or branch Concat.
class OnnxBlockImpl : public torch::nn::Module, public quant::BlockModule {
 public:
  OnnxBlockImpl(const OnnxModel::Plan* plan, size_t begin, size_t end, int entry, int exit, const char* kind)
      : plan_(plan), begin_(begin), end_(end), entry_(entry), exit_(exit), kind_(kind) {}
  const char* block_kind() const override { return kind_; }
  at::Tensor forward_block(const at::Tensor& x) override {
    std::vector<at::Tensor> v(static_cast<size_t>(plan_->n_slots));
    plan_->training = is_training();
    v[entry_] = x;
    plan_->run_range(begin_, end_, v);
    return v[exit_];
  }
  size_t begin() const { return begin_; }
  size_t end() const { return end_; }

 private:
  const OnnxModel::Plan* plan_;
  size_t begin_, end_;
  int entry_, exit_;
  const char* kind_;
};

std::string sanitize(const std::string& s) {
  std::string o;
  for (char ch : s) o += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') ? ch : '_';
  while (!o.empty() && o.front() == '_') o.erase(o.begin());
  while (!o.empty() && o.back() == '_') o.pop_back();
  if (o.empty()) o = "m";
  if (std::isdigit(static_cast<unsigned char>(o.front()))) o = "n" + o;
  return o;
}

/// The scope components of an exporter's node name ("/layer1/layer1.0/conv1/Conv" ->
/// [layer1.0, conv1]): the op part dropped, a component that extends the previous one replaces it.
std::vector<std::string> scopes(const std::string& node_name) {
  std::vector<std::string> parts, out;
  size_t p = 0;
  while (p <= node_name.size()) {
    size_t q = node_name.find('/', p);
    if (q == std::string::npos) q = node_name.size();
    if (q > p) parts.push_back(node_name.substr(p, q - p));
    p = q + 1;
  }
  if (node_name.find('/') == std::string::npos) return parts;  // a flat name: keep it
  if (!parts.empty()) parts.pop_back();
  for (auto& c : parts) {
    if (!out.empty() && c.size() > out.back().size() && c.compare(0, out.back().size() + 1, out.back() + ".") == 0)
      out.back() = c;
    else
      out.push_back(c);
  }
  return out;
}

std::string join_sanitized(const std::vector<std::string>& v, size_t from) {
  std::string s;
  for (size_t i = from; i < v.size(); ++i) s += (s.empty() ? "" : "_") + sanitize(v[i]);
  return s;
}

at::Tensor binary(BinOp op, const at::Tensor& x, const at::Tensor& y) {
  switch (op) {
    case BinOp::Add: return at::add(x, y);
    case BinOp::Sub: return at::sub(x, y);
    case BinOp::Mul: return at::mul(x, y);
    case BinOp::Div: return at::div(x, y);
    default: return at::pow(x, y);
  }
}

int64_t norm_axis(int64_t a, int64_t rank) { return a < 0 ? a + rank : a; }

std::vector<int64_t> spatial(const at::Tensor& x) { return std::vector<int64_t>(x.sizes().begin() + 2, x.sizes().end()); }

/// Sums of every pooling window over an already padded input (no padding of its own).
at::Tensor window_sums(const at::Tensor& xp, const std::vector<int64_t>& k, const std::vector<int64_t>& st, bool ceil) {
  const size_t r = k.size();
  const std::vector<int64_t> zero(r, 0);
  if (r == 1) return at::avg_pool1d(xp, k, st, zero, ceil, true) * static_cast<double>(k[0]);
  if (r == 2) return at::avg_pool2d(xp, k, st, zero, ceil, true, 1);
  return at::avg_pool3d(xp, k, st, zero, ceil, true, 1);
}

/// An explicitly padded average pool's divisor per output position, as ONNX counts it: the window
/// elements inside the input (count_include_pad=0) or inside the padded input (=1).
at::Tensor avg_pool_counts(const std::vector<int64_t>& sp, const std::vector<int64_t>& pre_pad, const std::vector<int64_t>& k,
                           const std::vector<int64_t>& st, bool ceil, bool cip) {
  std::vector<int64_t> ones_shape{1, 1};
  ones_shape.insert(ones_shape.end(), sp.begin(), sp.end());
  const at::Tensor ones = at::ones(ones_shape);
  return window_sums(at::constant_pad_nd(ones, pre_pad, cip ? 1.0 : 0.0), k, st, ceil);
}

}  // namespace

void OnnxModel::Plan::exec(const Step& s, std::vector<at::Tensor>& v) const {
  const at::Tensor& x = get(v, s.in.empty() ? 0 : s.in[0]);
  at::Tensor& y = v[s.out.empty() ? 0 : s.out[0]];
  switch (s.kind) {
    case Kind::Conv: {
      y = s.conv->forward_fused(s.pre_pad.empty() ? x : at::constant_pad_nd(x, s.pre_pad, 0.0));
      break;
    }
    case Kind::Linear: {
      auto out = s.lin->forward(s.flag ? x.t() : x);
      y = s.c0.defined() ? out + s.c0 : out;
      break;
    }
    case Kind::QAdd: y = s.add->forward(x, get(v, s.in[1])); break;
    case Kind::BN: {
      auto& bn = *s.bn;
      y = at::batch_norm(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.is_training(),
                         bn.options.momentum().value_or(0.1), bn.options.eps(), /*cudnn_enabled=*/false);
      break;
    }
    case Kind::Binary: y = binary(s.bin, x, get(v, s.in[1])); break;
    case Kind::Relu: y = at::relu(x); break;
    case Kind::Sigmoid: y = at::sigmoid(x); break;
    case Kind::Tanh: y = at::tanh(x); break;
    case Kind::Sqrt: y = at::sqrt(x); break;
    case Kind::HardSwish: y = at::hardswish(x); break;
    case Kind::Dropout: y = training && s.f0 > 0 ? at::dropout(x, s.f0, true) : x; break;
    case Kind::Clip:
      y = s.flag && s.flag2 ? at::clamp(x, s.f0, s.f1) : s.flag ? at::clamp_min(x, s.f0) : s.flag2 ? at::clamp_max(x, s.f1) : x;
      break;
    case Kind::LeakyRelu: y = at::leaky_relu(x, s.f0); break;
    case Kind::PRelu: {
      y = at::where(x >= 0, x, x * s.c0);  // c0 is the registered slope parameter itself
      break;
    }
    case Kind::HardSigmoid: y = at::clamp(x * s.f0 + s.f1, 0.0, 1.0); break;
    case Kind::Softmax: {
      if (!s.flag) {  // opset >= 13: one axis
        y = at::softmax(x, norm_axis(s.i0, x.dim()));
      } else {  // opset < 13: coerced to 2-D at `axis`
        const int64_t ax = norm_axis(s.i0, x.dim());
        int64_t rows = 1;
        for (int64_t k = 0; k < ax; ++k) rows *= x.size(k);
        y = at::softmax(x.reshape({rows, -1}), 1).reshape(x.sizes());
      }
      break;
    }
    case Kind::MaxPool: {
      const auto xp = s.pre_pad.empty() ? x : at::constant_pad_nd(x, s.pre_pad, -std::numeric_limits<double>::infinity());
      const size_t r = s.a.size();
      const bool ceil = modes->ceil_mode(s.flag, spatial(xp), s.a, s.b, s.c, s.d);
      if (r == 1) y = at::max_pool1d(xp, s.a, s.b, s.c, s.d, ceil);
      else if (r == 2) y = at::max_pool2d(xp, s.a, s.b, s.c, s.d, ceil);
      else y = at::max_pool3d(xp, s.a, s.b, s.c, s.d, ceil);
      break;
    }
    case Kind::AvgPool: {
      const size_t r = s.a.size();
      if (s.pre_pad.empty()) {  // torch's own padding and divisor match ONNX here (checked at planning)
        const bool ceil = modes->ceil_mode(s.flag, spatial(x), s.a, s.b, s.c);
        const bool cip = modes->count_include_pad(s.flag2, std::any_of(s.c.begin(), s.c.end(), [](int64_t p) { return p > 0; }));
        if (r == 1) y = at::avg_pool1d(x, s.a, s.b, s.c, ceil, cip);
        else if (r == 2) y = at::avg_pool2d(x, s.a, s.b, s.c, ceil, cip);
        else y = at::avg_pool3d(x, s.a, s.b, s.c, ceil, cip);
      } else {  // window sums over the explicitly padded input, divided by the precomputed counts
        const auto xp = at::constant_pad_nd(x, s.pre_pad, 0.0);
        const bool ceil = modes->ceil_mode(s.flag, spatial(xp), s.a, s.b);
        const bool cip = modes->count_include_pad(s.flag2, true);
        const at::Tensor sum = window_sums(xp, s.a, s.b, ceil);
        // A flip changes the divisor: recount for this input (the planned counts are for the declared modes).
        y = sum / (ceil == s.flag && cip == s.flag2 ? s.c0 : avg_pool_counts(spatial(x), s.pre_pad, s.a, s.b, ceil, cip).to(x.device()));
      }
      break;
    }
    case Kind::GlobalAvgPool: {
      if (x.dim() == 4) {
        y = at::mean(x, {2, 3}, /*keepdim=*/true);
      } else {
        std::vector<int64_t> dims;
        for (int64_t k = 2; k < x.dim(); ++k) dims.push_back(k);
        y = at::mean(x, dims, true);
      }
      break;
    }
    case Kind::ReduceMean: {
      if (s.a.empty()) {
        std::vector<int64_t> all;
        for (int64_t k = 0; k < x.dim(); ++k) all.push_back(k);
        y = at::mean(x, all, s.flag);
      } else {
        y = at::mean(x, s.a, s.flag);
      }
      break;
    }
    case Kind::Flatten: {
      const int64_t ax = norm_axis(s.i0, x.dim());
      int64_t rows = 1;
      for (int64_t k = 0; k < ax; ++k) rows *= x.size(k);
      y = x.reshape({rows, rows == 0 ? 0 : -1});
      break;
    }
    case Kind::Reshape: {
      c10::SmallVector<int64_t, 8> shp;
      // The batch: the input dim that shape inference knows as i1*N (planning checked it exists).
      const int64_t n = s.i0 >= 0 ? x.size(s.i0) / s.i1 : 1;
      for (size_t k = 0; k < s.shape.size(); ++k) {
        const auto& e = s.shape[k];
        int64_t val = e.pow ? e.coef * n : e.coef;
        if (val == 0 && !s.flag && k < static_cast<size_t>(x.dim())) val = x.size(static_cast<int64_t>(k));
        shp.push_back(val);
      }
      y = x.reshape(shp);
      break;
    }
    case Kind::Transpose: y = x.permute(s.a); break;
    case Kind::Squeeze: {
      if (s.a.empty()) {
        y = at::squeeze(x);
      } else {
        c10::SmallVector<int64_t, 8> shp;
        for (int64_t k = 0; k < x.dim(); ++k)
          if (std::find(s.a.begin(), s.a.end(), k) == s.a.end()) shp.push_back(x.size(k));
        y = x.reshape(shp);
      }
      break;
    }
    case Kind::Unsqueeze: {
      const int64_t r = x.dim() + static_cast<int64_t>(s.a.size());
      c10::SmallVector<int64_t, 8> shp;
      int64_t src = 0;
      for (int64_t k = 0; k < r; ++k) {
        bool ins = false;
        for (auto a : s.a) ins = ins || norm_axis(a, r) == k;
        shp.push_back(ins ? 1 : x.size(src++));
      }
      y = x.reshape(shp);
      break;
    }
    case Kind::Concat: {
      std::vector<at::Tensor> parts;
      parts.reserve(s.in.size());
      for (int r : s.in) parts.push_back(get(v, r));
      y = at::cat(parts, norm_axis(s.i0, x.dim()));
      break;
    }
    case Kind::Split: {
      const int64_t ax = norm_axis(s.i0, x.dim());
      std::vector<at::Tensor> parts;
      if (s.a.empty())
        parts = at::split(x, (x.size(ax) + static_cast<int64_t>(s.out.size()) - 1) / static_cast<int64_t>(s.out.size()), ax);
      else
        parts = at::split_with_sizes(x, s.a, ax);
      for (size_t k = 0; k < s.out.size(); ++k) v[s.out[k]] = parts[k];
      break;
    }
    case Kind::Slice: {
      at::Tensor t = x;
      for (size_t k = 0; k < s.a.size(); ++k) {
        const int64_t ax = norm_axis(s.a[k], t.dim()), dim = t.size(ax);
        int64_t st = s.b[k], en = s.c[k], step = s.d[k];
        if (step > 0) {
          if (st < 0) st += dim;
          if (en < 0) en += dim;
          st = std::clamp<int64_t>(st, 0, dim);
          en = std::clamp<int64_t>(en, 0, dim);
          t = t.slice(ax, st, std::max(st, en), step);
        } else {  // negative steps: ONNX clamps start to [0, dim-1] and end to [-1, dim-1]
          if (st < 0) st += dim;
          if (en < 0) en += dim;
          st = std::clamp<int64_t>(st, 0, dim - 1);
          en = std::clamp<int64_t>(en, -1, dim - 1);
          std::vector<int64_t> idx;
          for (int64_t i = st; i > en; i += step) idx.push_back(i);
          t = t.index_select(ax, at::tensor(idx, at::TensorOptions().dtype(at::kLong).device(t.device())));
        }
      }
      y = t;
      break;
    }
    case Kind::Pad: {
      if (s.i0 == 0) y = at::constant_pad_nd(x, s.a, s.f0);
      else {
        const size_t sp = s.a.size() / 2;
        if (s.i0 == 1)
          y = sp == 1 ? at::reflection_pad1d(x, s.a) : sp == 2 ? at::reflection_pad2d(x, s.a) : at::reflection_pad3d(x, s.a);
        else
          y = sp == 1 ? at::replication_pad1d(x, s.a) : sp == 2 ? at::replication_pad2d(x, s.a) : at::replication_pad3d(x, s.a);
      }
      break;
    }
    case Kind::MatMul: y = at::matmul(x, get(v, s.in[1])); break;
    case Kind::Gemm: {
      auto A = s.flag ? x.t() : x;
      auto B = s.flag2 ? get(v, s.in[1]).t() : get(v, s.in[1]);
      auto out = at::mm(A, B);
      if (s.f0 != 1.0) out = out * s.f0;
      if (s.in.size() > 2) out = out + get(v, s.in[2]) * s.f1;
      y = out;
      break;
    }
  }
}

// ------------------------------------------------------------------------------------------------

namespace {

std::vector<int64_t> static_shape(const ImportedGraph& g, const std::string& v, bool* ok, int64_t batch = 1) {
  auto it = g.shapes.find(v);
  std::vector<int64_t> out;
  if (it == g.shapes.end()) {
    *ok = false;
    return out;
  }
  *ok = true;
  for (auto& d : it->second) out.push_back(d.pow ? d.coef * batch : d.coef);
  return out;
}

/// Explicit begin/end pads for a conv or pool from pads / auto_pad (ONNX's output-size rule).
bool resolve_pads(const Node& n, const std::vector<int64_t>& in_spatial, const std::vector<int64_t>& k,
                  const std::vector<int64_t>& st, const std::vector<int64_t>& dil, std::vector<int64_t>* pads,
                  std::string* why) {
  const size_t r = k.size();
  const std::string ap = n.attr_s("auto_pad", "NOTSET");
  if (ap == "NOTSET" || ap.empty()) {
    *pads = n.attr_ints("pads", std::vector<int64_t>(2 * r, 0));
    if (pads->size() != 2 * r) {
      *why = "pads has " + std::to_string(pads->size()) + " values for " + std::to_string(r) + " spatial dims";
      return false;
    }
    return true;
  }
  if (ap == "VALID") {
    pads->assign(2 * r, 0);
    return true;
  }
  if (ap != "SAME_UPPER" && ap != "SAME_LOWER") {
    *why = "auto_pad " + ap;
    return false;
  }
  if (in_spatial.size() != r) {
    *why = "auto_pad " + ap + " needs the input's spatial shape, which shape inference did not resolve";
    return false;
  }
  pads->assign(2 * r, 0);
  for (size_t i = 0; i < r; ++i) {
    const int64_t out = (in_spatial[i] + st[i] - 1) / st[i];
    const int64_t total = std::max<int64_t>(0, (out - 1) * st[i] + (k[i] - 1) * dil[i] + 1 - in_spatial[i]);
    const int64_t small = total / 2, big = total - small;
    (*pads)[i] = ap == "SAME_UPPER" ? small : big;
    (*pads)[i + r] = ap == "SAME_UPPER" ? big : small;
  }
  return true;
}

/// ONNX begin/end pads per spatial dim -> torch's constant_pad_nd order (last dim first).
std::vector<int64_t> torch_pads(const std::vector<int64_t>& pads) {
  const size_t r = pads.size() / 2;
  std::vector<int64_t> out;
  for (size_t i = r; i-- > 0;) {
    out.push_back(pads[i]);
    out.push_back(pads[i + r]);
  }
  return out;
}

bool symmetric(const std::vector<int64_t>& pads) {
  const size_t r = pads.size() / 2;
  for (size_t i = 0; i < r; ++i)
    if (pads[i] != pads[i + r]) return false;
  return true;
}

}  // namespace

OnnxModel::~OnnxModel() = default;

const std::vector<StepInfo>& OnnxModel::steps() const { return plan_->infos; }

OnnxModel::OnnxModel(const ImportedGraph& g, bool use_initializers) : plan_(std::make_unique<Plan>()) {
  file_name_ = g.file_name;
  Plan& P = *plan_;
  P.modes = &pooling_modes();
  std::vector<std::string> problems;
  std::map<std::string, int> ref;  // value name -> slot / constant ref
  auto const_ref = [&](const at::Tensor& t) {
    P.consts.push_back(t);
    return -static_cast<int>(P.consts.size());
  };
  for (const auto& [name, t] : g.constants) ref[name] = const_ref(t);
  auto new_slot = [&]() { return P.n_slots++; };
  for (const auto& in : g.inputs) {
    const int s = new_slot();
    ref[in] = s;
    P.input_slots.push_back(s);
  }
  // consumers of each value
  std::map<std::string, std::vector<size_t>> consumers;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty()) consumers[in].push_back(i);
  const std::set<std::string> outputs(g.outputs.begin(), g.outputs.end());
  auto sole_consumer = [&](const std::string& v) -> const Node* {
    auto it = consumers.find(v);
    if (outputs.count(v) || it == consumers.end() || it->second.size() != 1) return nullptr;
    return &g.nodes[it->second[0]];
  };
  auto is_const = [&](const std::string& v) { return g.constants.count(v) > 0; };
  auto cst = [&](const std::string& v) -> const at::Tensor& { return g.constants.at(v); };
  auto consts_ints = [&](const std::string& v) {
    auto t = cst(v).to(at::kLong).contiguous();
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  };
  auto scalar_of = [&](const std::string& v, bool* ok) -> double {
    if (!is_const(v) || cst(v).numel() != 1) {
      *ok = false;
      return 0;
    }
    *ok = true;
    return cst(v).to(at::kDouble).item<double>();
  };
  std::set<const Node*> fused;  // nodes folded into an earlier step
  auto rank_of = [&](const std::string& v) -> int64_t {
    if (is_const(v)) return cst(v).dim();
    auto it = g.shapes.find(v);
    return it == g.shapes.end() ? -1 : static_cast<int64_t>(it->second.size());
  };

  for (const auto& n : g.nodes) {
    if (fused.count(&n)) continue;
    auto problem = [&](const std::string& why) { problems.push_back("node " + n.label() + ": " + why); };
    // An input an earlier refused node would have made: a placeholder, so that this node's own
    // problems are listed too (nothing runs once there is a problem).
    for (const auto& in : n.inputs)
      if (!in.empty() && !ref.count(in) && !g.sym_values.count(in)) {
        if (problems.empty()) problem("input '" + in + "' is not produced by any node");
        ref[in] = new_slot();
      }
    Step s;
    s.info.node = n.name;
    s.info.op = n.op;
    s.info.fused = {n.name};
    for (const auto& in : n.inputs) s.in.push_back(in.empty() || !ref.count(in) ? 0 : ref.at(in));
    std::vector<std::string> outs = {n.outputs.empty() ? std::string() : n.outputs[0]};
    auto alias = [&](const std::string& from) { ref[n.outputs[0]] = ref.at(from); };
    const std::string& X = n.inputs.empty() ? std::string() : n.inputs[0];

    const std::string& op = n.op;
    if (op == "Identity" || op == "Cast") {
      if (op == "Cast" && n.attr_i("to", 1) != 1) {
        problem("casts a float32 tensor to another type (only float32 graphs are supported)");
        continue;
      }
      alias(X);
      continue;
    }
    if (op == "Dropout") {
      if (n.outputs.size() > 1 && !n.outputs[1].empty() && (consumers.count(n.outputs[1]) || outputs.count(n.outputs[1]))) {
        problem("its mask output is used (only the data output is supported)");
        continue;
      }
      double ratio = n.attr_f("ratio", 0.5);
      if (g.opset >= 12) {
        bool ok = true;
        ratio = n.has_input(1) ? scalar_of(n.inputs[1], &ok) : 0.5;
        if (!ok) problem("its ratio is not a constant");
        if (n.has_input(2)) {
          double tm = scalar_of(n.inputs[2], &ok);
          if (!ok || tm != 0.0) problem("training_mode is not a constant false");
        }
      }
      s.kind = Kind::Dropout;
      s.f0 = ratio;
      s.in.resize(1);
    } else if (op == "Conv") {
      if (!n.has_input(1) || !is_const(n.inputs[1])) {
        problem("its weight is computed at run time (only constant conv weights are supported)");
        continue;
      }
      const at::Tensor W = cst(n.inputs[1]);
      if (W.dim() != 4) {
        problem("a " + std::to_string(W.dim() - 2) + "-D convolution (only 2-D convolutions are supported)");
        continue;
      }
      const int64_t groups = n.attr_i("group", 1);
      std::vector<int64_t> k = n.attr_ints("kernel_shape", {W.size(2), W.size(3)});
      std::vector<int64_t> st = n.attr_ints("strides", {1, 1}), dil = n.attr_ints("dilations", {1, 1});
      bool ok_shape = false;
      auto xs = static_shape(g, X, &ok_shape);
      std::vector<int64_t> sp;
      if (ok_shape && xs.size() == 4) sp = {xs[2], xs[3]};
      std::vector<int64_t> pads;
      std::string why;
      if (!resolve_pads(n, sp, k, st, dil, &pads, &why)) {
        problem(why);
        continue;
      }
      if (k[0] != k[1] || st[0] != st[1] || dil[0] != 1 || dil[1] != 1) {
        problem("kernel " + std::to_string(k[0]) + "x" + std::to_string(k[1]) + ", strides " + std::to_string(st[0]) +
                "x" + std::to_string(st[1]) + ", dilations " + std::to_string(dil[0]) + "x" + std::to_string(dil[1]) +
                ": qbench's quantizable conv (QConv2d) has square kernels, equal strides and no dilation");
        continue;
      }
      s.kind = Kind::Conv;
      s.in.resize(1);
      auto& m = s.spec;
      m.weight = W;
      if (n.has_input(2)) {
        if (!is_const(n.inputs[2])) {
          problem("its bias is computed at run time");
          continue;
        }
        m.bias = cst(n.inputs[2]);
      }
      m.conv = quant::QConv2dOptions{W.size(1) * groups, W.size(0), k[0], st[0], 0, groups, m.bias.defined()};
      if (symmetric(pads) && pads[0] == pads[1])
        m.conv.padding = pads[0];
      else
        s.pre_pad = torch_pads(pads);
      m.name = n.name;
      std::string cur = n.outputs[0];
      if (const Node* bn = sole_consumer(cur); bn && bn->op == "BatchNormalization" && bn->inputs.size() >= 5 &&
                                                 is_const(bn->inputs[1]) && is_const(bn->inputs[2]) &&
                                                 is_const(bn->inputs[3]) && is_const(bn->inputs[4]) &&
                                                 bn->attr_i("training_mode", 0) == 0 &&
                                                 (bn->outputs.size() == 1 || !consumers.count(bn->outputs[1]))) {
        m.has_bn = true;
        m.bn_scale = cst(bn->inputs[1]);
        m.bn_bias = cst(bn->inputs[2]);
        m.bn_mean = cst(bn->inputs[3]);
        m.bn_var = cst(bn->inputs[4]);
        m.bn_eps = bn->attr_f("epsilon", 1e-5f);
        m.bn_momentum = 1.0 - bn->attr_f("momentum", 0.9f);
        m.bn_name = bn->name;
        fused.insert(bn);
        s.info.fused.push_back(bn->name);
        s.info.op += "+BatchNormalization";
        cur = bn->outputs[0];
      }
      if (const Node* a = sole_consumer(cur)) {
        bool relu6 = false;
        if (a->op == "Clip") {
          double lo = -1, hi = -1;
          bool ok1 = true, ok2 = true;
          if (g.opset < 11) {
            lo = a->attr_f("min", -3.4e38f);
            hi = a->attr_f("max", 3.4e38f);
          } else {
            lo = a->inputs.size() > 1 && !a->inputs[1].empty() ? scalar_of(a->inputs[1], &ok1) : -1;
            hi = a->inputs.size() > 2 && !a->inputs[2].empty() ? scalar_of(a->inputs[2], &ok2) : -1;
          }
          relu6 = ok1 && ok2 && lo == 0.0 && hi == 6.0;
        }
        if (a->op == "Relu" || relu6) {
          m.act = relu6 ? Act::ReLU6 : Act::ReLU;
          fused.insert(a);
          s.info.fused.push_back(a->name);
          s.info.op += "+" + a->op;
          cur = a->outputs[0];
        }
      }
      outs = {cur};
    } else if (op == "Gemm" || op == "MatMul") {
      const bool gemm = op == "Gemm";
      const bool const_b = n.has_input(1) && is_const(n.inputs[1]) && cst(n.inputs[1]).dim() == 2;
      if (gemm && rank_of(X) != 2 && rank_of(X) != -1) {
        problem("Gemm of a rank-" + std::to_string(rank_of(X)) + " input");
        continue;
      }
      if (const_b) {
        at::Tensor B = cst(n.inputs[1]);
        const bool tb = gemm && n.attr_i("transB", 0);
        at::Tensor W = (tb ? B : B.t()).contiguous();
        const double alpha = gemm ? n.attr_f("alpha", 1.0f) : 1.0, beta = gemm ? n.attr_f("beta", 1.0f) : 1.0;
        if (alpha != 1.0) W = W * alpha;
        s.kind = Kind::Linear;
        s.flag = gemm && n.attr_i("transA", 0);
        s.in.resize(1);
        auto& m = s.spec;
        m.weight = W;
        m.in_features = W.size(1);
        m.out_features = W.size(0);
        m.name = n.name;
        std::string cur = n.outputs[0];
        if (gemm && n.has_input(2)) {
          if (!is_const(n.inputs[2])) {
            problem("its C input is computed at run time");
            continue;
          }
          at::Tensor C = cst(n.inputs[2]) * beta;
          if (C.numel() == m.out_features && (C.dim() == 1 || (C.dim() == 2 && C.size(0) == 1)))
            m.bias = C.reshape({-1}).contiguous();
          else if (C.numel() == 1)
            m.bias = C.reshape({1}).expand({m.out_features}).contiguous();
          else
            s.c0 = C;  // a matrix or column bias: added after the layer
        } else if (!gemm) {  // MatMul + Add(constant vector): nn.Linear on rank > 2 inputs
          if (const Node* a = sole_consumer(cur); a && a->op == "Add" && a->inputs.size() == 2) {
            const std::string& other = a->inputs[0] == cur ? a->inputs[1] : a->inputs[0];
            if (is_const(other) && cst(other).dim() == 1 && cst(other).numel() == m.out_features) {
              m.bias = cst(other);
              fused.insert(a);
              s.info.fused.push_back(a->name);
              s.info.op += "+Add";
              cur = a->outputs[0];
            }
          }
        }
        outs = {cur};
      } else if (gemm) {
        s.kind = Kind::Gemm;
        s.flag = n.attr_i("transA", 0);
        s.flag2 = n.attr_i("transB", 0);
        s.f0 = n.attr_f("alpha", 1.0f);
        s.f1 = n.attr_f("beta", 1.0f);
      } else {
        s.kind = Kind::MatMul;
      }
    } else if (op == "BatchNormalization") {
      if (n.attr_i("training_mode", 0) != 0) {
        problem("training_mode=1 (batch statistics at inference) is not supported");
        continue;
      }
      bool used_extra = false;
      for (size_t k = 1; k < n.outputs.size(); ++k)
        used_extra = used_extra || (!n.outputs[k].empty() && (consumers.count(n.outputs[k]) || outputs.count(n.outputs[k])));
      if (used_extra) {
        problem("its running-statistics outputs are used (inference form only)");
        continue;
      }
      bool all = n.inputs.size() >= 5;
      for (size_t k = 1; k < 5 && all; ++k) all = is_const(n.inputs[k]);
      if (!all) {
        problem("its scale, bias, mean or variance is computed at run time");
        continue;
      }
      s.kind = Kind::BN;
      s.in.resize(1);
      auto& m = s.spec;
      m.has_bn = true;
      m.bn_scale = cst(n.inputs[1]);
      m.bn_bias = cst(n.inputs[2]);
      m.bn_mean = cst(n.inputs[3]);
      m.bn_var = cst(n.inputs[4]);
      m.bn_eps = n.attr_f("epsilon", 1e-5f);
      m.bn_momentum = 1.0 - n.attr_f("momentum", 0.9f);
      m.bn_name = n.name;
    } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") {
      const bool both_runtime = !is_const(n.inputs[0]) && !is_const(n.inputs[1]);
      bool ok1 = false, ok2 = false;
      const auto s1 = static_shape(g, n.inputs[0], &ok1), s2 = static_shape(g, n.inputs[1], &ok2);
      if (op == "Add" && both_runtime && ok1 && ok2 && s1 == s2 && n.inputs[0] != n.inputs[1]) {
        s.kind = Kind::QAdd;
        s.spec.name = n.name;
        std::string cur = n.outputs[0];
        if (const Node* a = sole_consumer(cur); a && a->op == "Relu") {
          s.spec.relu_after = true;
          fused.insert(a);
          s.info.fused.push_back(a->name);
          s.info.op += "+Relu";
          cur = a->outputs[0];
        }
        outs = {cur};
      } else {
        s.kind = Kind::Binary;
        s.bin = op == "Add" ? BinOp::Add : op == "Sub" ? BinOp::Sub : op == "Mul" ? BinOp::Mul : op == "Div" ? BinOp::Div : BinOp::Pow;
        for (int k = 0; k < 2; ++k)
          if (is_const(n.inputs[k]) && !cst(n.inputs[k]).is_floating_point()) {
            problem("operand '" + n.inputs[k] + "' is an integer tensor (only float32 graphs are supported)");
          }
      }
    } else if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "Sqrt" || op == "HardSwish") {
      s.kind = op == "Relu" ? Kind::Relu : op == "Sigmoid" ? Kind::Sigmoid : op == "Tanh" ? Kind::Tanh
               : op == "Sqrt" ? Kind::Sqrt : Kind::HardSwish;
    } else if (op == "Clip") {
      s.kind = Kind::Clip;
      s.in.resize(1);
      if (g.opset < 11) {
        const auto* mn = n.attr("min");
        const auto* mx = n.attr("max");
        s.flag = mn != nullptr;
        s.flag2 = mx != nullptr;
        s.f0 = mn ? mn->f : 0;
        s.f1 = mx ? mx->f : 0;
      } else {
        bool ok = true;
        if (n.has_input(1)) {
          s.flag = true;
          s.f0 = scalar_of(n.inputs[1], &ok);
          if (!ok) problem("its min is not a constant");
        }
        if (n.has_input(2)) {
          s.flag2 = true;
          s.f1 = scalar_of(n.inputs[2], &ok);
          if (!ok) problem("its max is not a constant");
        }
      }
    } else if (op == "LeakyRelu") {
      s.kind = Kind::LeakyRelu;
      s.f0 = n.attr_f("alpha", 0.01f);
    } else if (op == "PRelu") {
      if (!is_const(n.inputs[1])) {
        problem("its slope is computed at run time");
        continue;
      }
      s.kind = Kind::PRelu;
      s.c0 = cst(n.inputs[1]);
      s.in.resize(1);
      s.spec.param_name = n.name;
    } else if (op == "HardSigmoid") {
      s.kind = Kind::HardSigmoid;
      s.f0 = n.attr_f("alpha", 0.2f);
      s.f1 = n.attr_f("beta", 0.5f);
    } else if (op == "Softmax") {
      s.kind = Kind::Softmax;
      s.flag = g.opset < 13;
      s.i0 = n.attr_i("axis", g.opset < 13 ? 1 : -1);
    } else if (op == "MaxPool" || op == "AveragePool") {
      const bool mx = op == "MaxPool";
      if (mx && n.outputs.size() > 1 && !n.outputs[1].empty()) {
        problem("its Indices output is not supported");
        continue;
      }
      std::vector<int64_t> k = n.attr_ints("kernel_shape");
      const size_t r = k.size();
      if (r < 1 || r > 3) {
        problem("a " + std::to_string(r) + "-D pool (1-D to 3-D are supported)");
        continue;
      }
      std::vector<int64_t> st = n.attr_ints("strides", std::vector<int64_t>(r, 1));
      std::vector<int64_t> dil = n.attr_ints("dilations", std::vector<int64_t>(r, 1));
      if (!mx && std::any_of(dil.begin(), dil.end(), [](int64_t d) { return d != 1; })) {
        problem("AveragePool with dilations");
        continue;
      }
      bool ok_shape = false;
      auto xs = static_shape(g, X, &ok_shape);
      std::vector<int64_t> sp;
      if (ok_shape && xs.size() == r + 2) sp.assign(xs.begin() + 2, xs.end());
      std::vector<int64_t> pads;
      std::string why;
      if (!resolve_pads(n, sp, k, st, dil, &pads, &why)) {
        problem(why);
        continue;
      }
      const bool ceil = n.attr_i("ceil_mode", 0) != 0;
      const bool cip = n.attr_i("count_include_pad", 0) != 0;
      s.kind = mx ? Kind::MaxPool : Kind::AvgPool;
      s.a = k;
      s.b = st;
      s.d = dil;
      s.flag = ceil;
      s.flag2 = cip;
      // torch's own padding is symmetric and at most half the kernel; ceil mode in torch also drops a
      // last window that starts in the padding, which ONNX 1.12 keeps; use explicit padding otherwise.
      bool torch_pad = symmetric(pads);
      for (size_t i = 0; i < r && torch_pad; ++i) torch_pad = pads[i] <= k[i] / 2 && (mx || pads[i] == 0 || !ceil);
      if (torch_pad) {
        s.c.assign(pads.begin(), pads.begin() + static_cast<long>(r));
      } else {
        s.c.assign(r, 0);
        s.pre_pad = torch_pads(pads);
      }
      if (!mx && !s.pre_pad.empty()) {
        if (sp.size() != r) {
          problem("AveragePool with asymmetric padding needs its input's spatial shape");
          continue;
        }
        // Divisor per output position: window elements inside the input (count_include_pad=0) or
        // inside the padded input (=1), as ONNX counts them.
        s.c0 = avg_pool_counts(sp, s.pre_pad, k, st, ceil, cip);
      }
    } else if (op == "GlobalAveragePool") {
      s.kind = Kind::GlobalAvgPool;
    } else if (op == "ReduceMean") {
      s.kind = Kind::ReduceMean;
      s.a = n.attr_ints("axes");
      const int64_t r = rank_of(X);
      for (auto& a : s.a) {
        if (a < 0 && r < 0) problem("negative axes on an input of unknown rank");
        a = norm_axis(a, r);
      }
      s.flag = n.attr_i("keepdims", 1) != 0;
      s.in.resize(1);
    } else if (op == "Flatten") {
      s.kind = Kind::Flatten;
      s.i0 = n.attr_i("axis", 1);
    } else if (op == "Reshape") {
      s.kind = Kind::Reshape;
      s.in.resize(1);
      s.flag = n.attr_i("allowzero", 0) != 0;
      s.i0 = -1;
      if (g.sym_values.count(n.inputs[1])) {
        s.shape = g.sym_values.at(n.inputs[1]);
        if (auto it = g.shapes.find(X); it != g.shapes.end())
          for (size_t k = 0; k < it->second.size() && s.i0 < 0; ++k)
            if (it->second[k].pow == 1) {
              s.i0 = static_cast<int64_t>(k);
              s.i1 = it->second[k].coef;
            }
        if (s.i0 < 0) {
          problem("unresolvable dynamic shape: its target depends on the batch size but its input's shape does not");
          continue;
        }
      } else if (is_const(n.inputs[1])) {
        for (auto v : consts_ints(n.inputs[1])) s.shape.push_back({v, 0});
      } else {
        problem("its target shape is computed from data at run time (unresolvable dynamic shape)");
        continue;
      }
    } else if (op == "Transpose") {
      s.kind = Kind::Transpose;
      const int64_t r = rank_of(X);
      s.a = n.attr_ints("perm");
      if (s.a.empty()) {
        if (r < 0) {
          problem("a default permutation on an input of unknown rank");
          continue;
        }
        for (int64_t k = r - 1; k >= 0; --k) s.a.push_back(k);
      }
    } else if (op == "Squeeze" || op == "Unsqueeze") {
      s.kind = op == "Squeeze" ? Kind::Squeeze : Kind::Unsqueeze;
      s.a = n.attr_ints("axes");
      if (n.has_input(1)) {
        if (!is_const(n.inputs[1])) {
          problem("its axes are computed at run time");
          continue;
        }
        s.a = consts_ints(n.inputs[1]);
      }
      s.in.resize(1);
      const int64_t r = rank_of(X);
      if (s.kind == Kind::Squeeze) {
        if (s.a.empty()) {
          // all size-1 dims: known only from the shape (the batch may be 1 at run time)
          bool ok = false;
          auto xs = static_shape(g, X, &ok, 2);
          if (!ok) {
            problem("Squeeze without axes on an input of unknown shape");
            continue;
          }
          for (int64_t k = 0; k < static_cast<int64_t>(xs.size()); ++k)
            if (xs[static_cast<size_t>(k)] == 1) s.a.push_back(k);
        }
        for (auto& a : s.a) a = norm_axis(a, r);
      }
    } else if (op == "Concat") {
      s.kind = Kind::Concat;
      s.i0 = n.attr_i("axis", 0);
    } else if (op == "Split") {
      s.kind = Kind::Split;
      s.i0 = n.attr_i("axis", 0);
      s.a = n.attr_ints("split");
      if (n.has_input(1)) {
        if (!is_const(n.inputs[1])) {
          problem("its split sizes are computed at run time");
          continue;
        }
        s.a = consts_ints(n.inputs[1]);
      }
      s.in.resize(1);
      outs = n.outputs;
    } else if (op == "Slice") {
      s.kind = Kind::Slice;
      if (g.opset >= 10 && !(is_const(n.inputs[1]) && is_const(n.inputs[2]) &&
                             (!n.has_input(3) || is_const(n.inputs[3])) && (!n.has_input(4) || is_const(n.inputs[4])))) {
        problem("its starts/ends/axes/steps are computed at run time");
        continue;
      }
      auto [st, en, ax, sp] = n.slice_args(g.opset, [&](const std::string& in) { return consts_ints(in); });
      if (ax.empty())
        for (size_t k = 0; k < st.size(); ++k) ax.push_back(static_cast<int64_t>(k));
      if (sp.empty()) sp.assign(st.size(), 1);
      if (std::any_of(sp.begin(), sp.end(), [](int64_t v) { return v == 0; })) {
        problem("a zero step");
        continue;
      }
      s.a = ax;
      s.b = st;
      s.c = en;
      s.d = sp;
      s.in.resize(1);
    } else if (op == "Pad") {
      s.kind = Kind::Pad;
      const std::string mode = n.attr_s("mode", "constant");
      std::vector<int64_t> pads;
      double value = 0;
      if (g.opset < 11) {
        pads = n.attr_ints("pads");
        value = n.attr_f("value", 0.0f);
      } else {
        if (!is_const(n.inputs[1]) || (n.has_input(2) && !is_const(n.inputs[2]))) {
          problem("its pads or value are computed at run time");
          continue;
        }
        pads = consts_ints(n.inputs[1]);
        if (n.has_input(2)) value = cst(n.inputs[2]).to(at::kDouble).item<double>();
      }
      s.in.resize(1);
      s.f0 = value;
      s.i0 = mode == "constant" ? 0 : mode == "reflect" ? 1 : mode == "edge" ? 2 : -1;
      if (s.i0 < 0) {
        problem("mode '" + mode + "'");
        continue;
      }
      const size_t r = pads.size() / 2;
      if (s.i0 == 0) {
        s.a = torch_pads(pads);
      } else {
        // reflect / edge: torch pads the trailing r-2 dims (1..3) of an N, C, ... tensor
        if (r < 3 || r > 5 || pads[0] || pads[1] || pads[r] || pads[r + 1]) {
          problem("mode '" + mode + "' padding the batch or channel dimension, or a rank-" + std::to_string(r) + " tensor");
          continue;
        }
        std::vector<int64_t> sub;
        for (size_t i = r; i-- > 2;) {
          sub.push_back(pads[i]);
          sub.push_back(pads[i + r]);
        }
        s.a = sub;
      }
    } else {
      problem("operator not supported");
      continue;
    }
    // Fold steps whose inputs are all constants (no modules involved).
    bool all_const = s.kind != Kind::Conv && s.kind != Kind::Linear && s.kind != Kind::QAdd && s.kind != Kind::BN &&
                     s.kind != Kind::PRelu && s.kind != Kind::Dropout;
    for (int r : s.in) all_const = all_const && r < 0;
    if (s.in.empty()) all_const = false;
    if (all_const) {
      std::vector<at::Tensor> tmp(std::max<size_t>(outs.size(), 1));
      Step fs = s;
      for (size_t k = 0; k < outs.size(); ++k) fs.out.push_back(static_cast<int>(k));
      try {
        P.exec(fs, tmp);
      } catch (const std::exception& e) {
        problem(std::string("folding its constant inputs failed: ") + e.what());
        continue;
      }
      for (size_t k = 0; k < outs.size(); ++k) ref[outs[k]] = const_ref(tmp[k]);
      continue;
    }
    for (const auto& o : outs) {
      const int sl = new_slot();
      s.out.push_back(sl);
      if (!o.empty()) ref[o] = sl;
    }
    P.steps.push_back(std::move(s));
  }
  for (const auto& o : g.outputs)
    if (!ref.count(o) && problems.empty()) problems.push_back("output '" + o + "' is not produced by any node");
  if (!problems.empty()) {
    std::string msg = problems.size() == 1 ? problems[0] : std::to_string(problems.size()) + " problems:\n  " + g.file_name + ": ";
    if (problems.size() > 1)
      for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "\n  " + g.file_name + ": " : "") + problems[i];
    throw g.error(msg);
  }
  for (const auto& o : g.outputs) P.output_refs.push_back(ref.at(o));

  // ---- liveness: releases and the single-tensor cuts that delimit blocks ----
  const size_t S = P.steps.size();
  std::vector<int> produced(static_cast<size_t>(P.n_slots), -1), last_use(static_cast<size_t>(P.n_slots), -1);
  for (size_t i = 0; i < S; ++i) {
    for (int r : P.steps[i].in)
      if (r >= 0) last_use[static_cast<size_t>(r)] = static_cast<int>(i);
    for (int r : P.steps[i].out) produced[static_cast<size_t>(r)] = static_cast<int>(i);
  }
  for (int r : P.output_refs)
    if (r >= 0) last_use[static_cast<size_t>(r)] = static_cast<int>(S);
  for (int r = 0; r < P.n_slots; ++r) {
    const int lu = last_use[static_cast<size_t>(r)];
    if (lu >= 0 && lu < static_cast<int>(S)) P.steps[static_cast<size_t>(lu)].release.push_back(r);
    if (lu < 0 && produced[static_cast<size_t>(r)] >= 0)  // never read (an unused Split output)
      P.steps[static_cast<size_t>(produced[static_cast<size_t>(r)])].release.push_back(r);
  }
  // live[i]: runtime values alive between step i-1 and step i (i = 0..S)
  auto live_between = [&](int i) {
    std::vector<int> live;
    for (int r = 0; r < P.n_slots; ++r)
      if (produced[static_cast<size_t>(r)] < i && last_use[static_cast<size_t>(r)] >= i) live.push_back(r);
    return live;
  };
  struct Seg {
    size_t b, e;
    int entry, exit;
    const char* kind;
  };
  std::vector<Seg> blocks;
  {
    std::vector<int> cut_before;  // indices i where exactly one value is live before step i
    std::vector<int> cut_value;
    for (size_t i = 0; i <= S; ++i) {
      auto live = live_between(static_cast<int>(i));
      if (live.size() == 1) {
        cut_before.push_back(static_cast<int>(i));
        cut_value.push_back(live[0]);
      }
    }
    for (size_t c = 0; c + 1 < cut_before.size(); ++c) {
      const size_t b = static_cast<size_t>(cut_before[c]), e = static_cast<size_t>(cut_before[c + 1]);
      if (e - b < 2) continue;
      const char* kind = nullptr;
      int first_layer = -1;
      for (size_t i = b; i < e; ++i) {
        const auto& st = P.steps[i];
        if (st.kind == Kind::QAdd) kind = "onnx_residual";
        if (!kind && st.kind == Kind::Concat &&
            std::count_if(st.in.begin(), st.in.end(), [](int r) { return r >= 0; }) >= 2)
          kind = "onnx_branches";
        if (first_layer < 0 && (st.kind == Kind::Conv || st.kind == Kind::Linear)) first_layer = static_cast<int>(i);
      }
      if (!kind || first_layer < 0) continue;
      // The reconstruction engine feeds a block the input of its first layer: that must be the entry.
      if (P.steps[static_cast<size_t>(first_layer)].in[0] != cut_value[c]) continue;
      blocks.push_back({b, e, cut_value[c], cut_value[c + 1], kind});
    }
  }

  // ---- modules, registered in execution order (blocks own their steps' modules) ----
  std::map<torch::nn::Module*, std::set<std::string>> taken;
  auto unique = [&](torch::nn::Module* parent, std::string nm) {
    auto& t = taken[parent];
    std::string cand = nm;
    for (int k = 1; t.count(cand); ++k) cand = nm + "_" + std::to_string(k);
    t.insert(cand);
    return cand;
  };
  std::vector<size_t> skip_of_step(S, 0);  // scope components the enclosing block's name covers
  std::vector<torch::nn::Module*> owner_of_step(S, this);
  std::vector<std::string> path_of_owner(S);
  std::map<size_t, std::pair<std::string, std::shared_ptr<OnnxBlockImpl>>> block_at;
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    const auto& B = blocks[bi];
    std::vector<std::string> common;
    bool first = true;
    for (size_t i = B.b; i < B.e; ++i) {
      for (const auto& nm : P.steps[i].info.fused) {
        auto sc = nm.find('/') == std::string::npos ? std::vector<std::string>{} : scopes(nm);
        if (first) {
          common = sc;
          first = false;
        } else {
          size_t k = 0;
          while (k < common.size() && k < sc.size() && common[k] == sc[k]) ++k;
          common.resize(k);
        }
      }
    }
    const std::string bname = unique(this, common.empty() ? "block" + std::to_string(bi) : join_sanitized(common, 0));
    auto blk = std::make_shared<OnnxBlockImpl>(plan_.get(), B.b, B.e, B.entry, B.exit, B.kind);
    for (size_t i = B.b; i < B.e; ++i) {
      owner_of_step[i] = blk.get();
      skip_of_step[i] = common.size();
      path_of_owner[i] = bname;
    }
    block_at[B.b] = {bname, blk};
  }
  auto local_name = [&](size_t i, const std::string& node, const std::string& fallback) {
    if (node.find('/') == std::string::npos) return sanitize(node.empty() ? fallback : node);
    const auto sc = scopes(node);
    std::string nm = join_sanitized(sc, std::min(skip_of_step[i], sc.size()));
    return nm.empty() ? fallback : nm;
  };
  for (size_t i = 0; i < S; ++i) {
    auto& s = P.steps[i];
    if (auto it = block_at.find(i); it != block_at.end()) register_module(it->second.first, it->second.second);
    torch::nn::Module* parent = owner_of_step[i];
    const std::string prefix = parent == this ? "" : path_of_owner[i] + ".";
    auto& m = s.spec;
    auto make_bn = [&](const std::string& nm) {
      auto bn = torch::nn::BatchNorm2d(
          torch::nn::BatchNormOptions(m.bn_scale.numel()).eps(m.bn_eps).momentum(m.bn_momentum));
      if (use_initializers) {
        at::NoGradGuard ng;
        bn->weight.copy_(m.bn_scale.reshape({-1}));
        bn->bias.copy_(m.bn_bias.reshape({-1}));
        bn->running_mean.copy_(m.bn_mean.reshape({-1}));
        bn->running_var.copy_(m.bn_var.reshape({-1}));
      }
      return parent->register_module(nm, bn);
    };
    if (s.kind == Kind::Conv) {
      const std::string nm = unique(parent, local_name(i, m.name, "conv"));
      auto conv = parent->register_module(nm, quant::QConv2d(m.conv));
      {
        at::NoGradGuard ng;
        if (use_initializers) {
          conv->weight.copy_(m.weight);
          if (m.bias.defined()) conv->bias.copy_(m.bias);
        } else if (m.bias.defined()) {
          conv->bias.zero_();
        }
      }
      s.conv = conv.get();
      s.info.module = prefix + nm;
      if (m.has_bn) {
        auto bn = make_bn(unique(parent, local_name(i, m.bn_name, "bn")));
        conv->set_partner(bn.get(), m.act);
        has_bn_ = true;
      } else {
        conv->set_partner(nullptr, m.act);
      }
    } else if (s.kind == Kind::Linear) {
      const std::string nm = unique(parent, local_name(i, m.name, "linear"));
      auto lin = parent->register_module(nm, quant::QLinear(m.in_features, m.out_features, m.bias.defined()));
      if (use_initializers) {
        at::NoGradGuard ng;
        lin->weight.copy_(m.weight);
        if (m.bias.defined()) lin->bias.copy_(m.bias);
      }
      s.lin = lin.get();
      s.info.module = prefix + nm;
    } else if (s.kind == Kind::QAdd) {
      const std::string nm = unique(parent, local_name(i, m.name, "add"));
      s.add = parent->register_module(nm, quant::QAdd(m.relu_after)).get();
      s.info.module = prefix + nm;
    } else if (s.kind == Kind::BN) {
      const std::string nm = unique(parent, local_name(i, m.bn_name, "bn"));
      s.bn = make_bn(nm).get();
      s.info.module = prefix + nm;
    } else if (s.kind == Kind::PRelu) {
      const std::string nm = unique(parent, local_name(i, m.param_name, "prelu") + "_slope");
      at::Tensor slope = use_initializers ? s.c0.clone() : at::full(s.c0.sizes(), 0.25, s.c0.options());
      s.c0 = parent->register_parameter(nm, slope);
      s.owner = parent;
      s.info.module = prefix + nm;
    }
  }
  for (auto& s : P.steps) {
    if (s.conv)
      for (auto& p : s.conv->parameters(true)) s.info.params += p.numel();
    if (s.conv && s.conv->bn())
      for (auto& p : s.conv->bn()->parameters(true)) s.info.params += p.numel();
    if (s.lin)
      for (auto& p : s.lin->parameters(true)) s.info.params += p.numel();
    if (s.bn)
      for (auto& p : s.bn->parameters(true)) s.info.params += p.numel();
    if (s.owner) s.info.params += s.c0.numel();
  }

  // ---- probe passes: per-sample shapes and MACs at batch 1, then the batch check at batch 2 ----
  bool static_ok = true;
  std::vector<std::vector<int64_t>> in_shapes;
  for (const auto& in : g.inputs) {
    bool ok = false;
    in_shapes.push_back(static_shape(g, in, &ok, 1));
    static_ok = static_ok && ok;
  }
  if (!static_ok) throw g.error("the input shapes are not known");
  if (!in_shapes.empty() && !in_shapes[0].empty()) sample_shape_.assign(in_shapes[0].begin() + 1, in_shapes[0].end());
  const bool was_training = is_training();
  eval();
  at::NoGradGuard ng;
  auto probe = [&](int64_t batch, bool record) {
    std::vector<at::Tensor> v(static_cast<size_t>(P.n_slots));
    for (size_t k = 0; k < g.inputs.size(); ++k) {
      bool ok = false;
      v[static_cast<size_t>(P.input_slots[k])] = at::randn(static_shape(g, g.inputs[k], &ok, batch)) * 0.0 + 0.5;
    }
    for (size_t i = 0; i < S; ++i) {
      auto& s = P.steps[i];
      try {
        P.exec(s, v);
      } catch (const std::exception& e) {
        const auto* ce = dynamic_cast<const c10::Error*>(&e);
        throw g.error("node " + s.info.node + " (" + s.info.op + ") fails on a batch of " + std::to_string(batch) +
                      (batch > 1 ? " (is the batch dimension fixed in the file? export with a dynamic batch axis)" : "") +
                      ": " + (ce ? ce->what_without_backtrace() : e.what()));
      }
      if (record) {
        const auto& y = v[static_cast<size_t>(s.out[0])];
        s.info.out_shape = y.sizes().vec();
        if (s.conv) s.info.macs = s.conv->macs_per_sample();
        if (s.lin) s.info.macs = s.lin->macs_per_sample() * std::max<int64_t>(1, y.numel() / std::max<int64_t>(1, y.size(-1)));
        if (s.kind == Kind::MatMul || s.kind == Kind::Gemm) {
          const auto& a = P.get(v, s.in[0]);
          s.info.macs = y.numel() * a.size(-1);
        }
      }
      for (int r : s.release) v[static_cast<size_t>(r)].reset();
    }
  };
  probe(1, true);
  if (!g.inputs.empty() && g.shapes.count(g.inputs[0]) && !g.shapes.at(g.inputs[0]).empty() && g.shapes.at(g.inputs[0])[0].pow == 1)
    probe(2, false);
  train(was_training);
  for (const auto& s : P.steps) P.infos.push_back(s.info);
}

namespace {
// Constants other than registered parameters (PReLU slopes are parameters: Module::to moves them
// in place, which the step's handle sees).
void move_constants(OnnxModel::Plan& P, const std::function<at::Tensor(const at::Tensor&)>& mv) {
  for (auto& c : P.consts)
    if (c.is_floating_point()) c = mv(c);
  for (auto& s : P.steps)
    if (s.c0.defined() && s.kind != Kind::PRelu) s.c0 = mv(s.c0);
}
}  // namespace

void OnnxModel::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  move_constants(*plan_, [&](const at::Tensor& t) { return t.to(device, dtype, non_blocking); });
}
void OnnxModel::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  move_constants(*plan_, [&](const at::Tensor& t) { return t.to(dtype, non_blocking); });
}
void OnnxModel::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  move_constants(*plan_, [&](const at::Tensor& t) { return t.to(device, /*dtype=*/t.scalar_type(), non_blocking); });
}

at::Tensor OnnxModel::forward(const at::Tensor& x) {
  auto& P = *plan_;
  P.training = is_training();
  std::vector<at::Tensor> v(static_cast<size_t>(P.n_slots));
  v[static_cast<size_t>(P.input_slots[0])] = x;
  P.run_range(0, P.steps.size(), v);
  return P.get(v, P.output_refs[0]);
}

std::vector<at::Tensor> OnnxModel::run(const std::vector<at::Tensor>& inputs) {
  auto& P = *plan_;
  if (inputs.size() != P.input_slots.size())
    throw Error(file_name_ + ": run() got " + std::to_string(inputs.size()) + " inputs, the graph has " +
                std::to_string(P.input_slots.size()));
  P.training = is_training();
  std::vector<at::Tensor> v(static_cast<size_t>(P.n_slots));
  for (size_t k = 0; k < inputs.size(); ++k) v[static_cast<size_t>(P.input_slots[k])] = inputs[k];
  P.run_range(0, P.steps.size(), v);
  std::vector<at::Tensor> out;
  for (int r : P.output_refs) out.push_back(P.get(v, r));
  return out;
}

std::shared_ptr<OnnxModel> make_model(const ImportedGraph& g, bool use_initializers) {
  auto m = std::make_shared<OnnxModel>(g, use_initializers);
  if (g.inputs.size() != 1 || g.outputs.size() != 1)
    throw g.error("a classifier has one input and one output; this graph has " + std::to_string(g.inputs.size()) +
                  " inputs and " + std::to_string(g.outputs.size()) + " outputs");
  if (m->quant_layers().empty())
    throw g.error("the graph has no Conv, Gemm or MatMul with constant weights: nothing to quantize");
  return m;
}

}  // namespace qbench::onnx
