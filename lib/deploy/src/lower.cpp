// Lowering a calibrated fake-quant model to LibTorch's quantized CPU operators.
//
// Every tensor handed from one lowered node to the next carries the qparams of the last fake
// quantizer the simulation applied to it: a conv whose output the simulation feeds straight into
// a quantizer (the next conv's input quantizer, an add's operand quantizer) writes its int8 output
// on that quantizer's grid, so the consumer takes it as is. The data flow is found by a tracing
// forward pass (hooks that run the simulation and note which node produced each input tensor).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_map>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/quant/device.h"
#include "qbench/quant/fake_quant.h"

namespace qbench::deploy {

using detail::ActQ;
using detail::Node;
using quant::Act;
using quant::FakeQuantizer;

namespace detail {

EngineGuard::EngineGuard(at::QEngine e) : prev_(at::globalContext().qEngine()) {
  if (prev_ != e) at::globalContext().setQEngine(e);
}
EngineGuard::~EngineGuard() {
  try {
    if (at::globalContext().qEngine() != prev_) at::globalContext().setQEngine(prev_);
  } catch (...) {
  }
}

/// Clamps a quint8 tensor to [lo, hi] (real values) in the integer domain. LibTorch's quantized
/// clamp is engine-specific, and under QNNPACK it mangles ranges narrower than uint8 (a 4-bit
/// output grid came out wrong by up to 15 steps), so the codes are clamped directly: the bounds
/// are the codes the simulation's quantizer gives lo and hi.
at::Tensor qclamp(const at::Tensor& y, double lo, double hi) {
  const double s = y.q_scale();
  const int64_t zp = y.q_zero_point();
  const int64_t qlo = std::max<int64_t>(0, static_cast<int64_t>(std::llround(lo / s)) + zp);
  const int64_t qhi = std::min<int64_t>(255, static_cast<int64_t>(std::llround(hi / s)) + zp);
  return at::_make_per_tensor_quantized_tensor(y.int_repr().clamp(qlo, qhi), s, zp);
}

at::Tensor to_q(const at::Tensor& x, const ActQ& q) {
  at::Tensor xf = x;
  if (x.is_quantized()) {
    if (x.qscheme() == at::kPerTensorAffine && x.scalar_type() == at::kQUInt8 && x.q_scale() == q.scale &&
        x.q_zero_point() == q.zp)
      return q.qmax < 255 ? qclamp(x, q.lo(), q.hi()) : x;
    xf = x.dequantize();
  }
  if (q.qmax < 255) xf = xf.clamp(q.lo(), q.hi());
  return at::quantize_per_tensor(xf, q.scale, q.zp, at::kQUInt8);
}

namespace {
at::Tensor fq(FakeQuantizer* q, const at::Tensor& x) { return q ? q->forward(x) : x; }

at::Tensor call(const c10::OperatorHandle& op, std::vector<c10::IValue> stack) {
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

/// The output of a quantized op, clamped where the float graph clamps (ReLU6, a narrower range),
/// handed on as the plan says.
at::Tensor finish(const Node& n, at::Tensor y) {
  if (n.clamp) y = qclamp(y, n.clamp_lo, n.clamp_hi);
  return n.out_float ? y.dequantize() : y;
}
}  // namespace

at::Tensor Node::sim(const std::vector<at::Tensor>& in) const {
  switch (kind) {
    case Kind::Conv: {
      auto xq = fq(layer->input_quantizer(), in[0]);
      auto wb = conv->folded_weight_bias();
      const auto& o = conv->options();
      auto y = at::conv2d(xq, fq(layer->weight_quantizer(), wb.first), wb.second, {o.stride, o.stride},
                          {o.padding, o.padding}, {1, 1}, o.groups);
      return quant::apply_act(y, act);
    }
    case Kind::LinearQ:
    case Kind::LinearI32:
      return at::linear(fq(layer->input_quantizer(), in[0]), fq(layer->weight_quantizer(), linear->weight),
                        linear->bias);
    case Kind::Add: {
      auto a = fq(add->input_quantizer(0), in[0]), b = fq(add->input_quantizer(1), in[1]);
      auto y = add->relu_after() ? at::relu(a + b) : a + b;
      return fq(add->output_quantizer(), y);
    }
  }
  return {};
}

at::Tensor Node::run(const std::vector<at::Tensor>& in) const {
  try {
    switch (kind) {
      case Kind::Conv:
      case Kind::LinearQ:
        return finish(*this, call(*op, {to_q(in[0], in_a), packed, out.scale, out.zp}));
      case Kind::Add:
        return finish(*this, call(*op, {to_q(in[0], in_a), to_q(in[1], in_b), out.scale, out.zp}));
      case Kind::LinearI32: {
        // int32-exact accumulation (integers below 2^53 are exact in double), then dequantized:
        // y = s_x * s_w[o] * sum_i (q_x - z_x)(q_w - z_w) + b[o].
        auto xq = to_q(in[0], in_a);
        auto xi = xq.int_repr().to(at::kDouble) - static_cast<double>(in_a.zp);
        auto acc = at::mm(xi.reshape({-1, xi.size(-1)}), w_t);
        auto y = (acc * (w_scale * in_a.scale) + bias).to(at::kFloat);
        auto shape = in[0].sizes().vec();
        shape.back() = y.size(1);
        return y.reshape(shape);
      }
    }
  } catch (const c10::Error& e) {
    throw Error("deploy: " + name + " (" + info.op + "): " + e.what_without_backtrace());
  }
  return {};
}

void set_hooks(const std::vector<std::shared_ptr<Node>>& nodes, NodeFn fn) {
  auto shared = std::make_shared<NodeFn>(std::move(fn));
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto& n = *nodes[i];
    if (n.add)
      n.add->set_deploy([shared, i](const at::Tensor& a, const at::Tensor& b) { return (*shared)(i, {a, b}); });
    else
      n.layer->set_deploy([shared, i](const at::Tensor& x) { return (*shared)(i, {x}); });
  }
}

void clear_hooks(const std::vector<std::shared_ptr<Node>>& nodes) {
  for (auto& n : nodes) {
    if (n->add)
      n->add->set_deploy(nullptr);
    else
      n->layer->set_deploy(nullptr);
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Lowered

void Lowered::Impl::install() {
  auto ns = nodes;
  detail::set_hooks(nodes, [ns](size_t i, const std::vector<at::Tensor>& in) { return ns[i]->run(in); });
  installed = true;
}

void Lowered::Impl::restore() {
  detail::clear_hooks(nodes);
  installed = false;
}

Lowered::Lowered(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Lowered::~Lowered() {
  if (impl_ && impl_->installed) impl_->restore();
}
void Lowered::restore() { impl_->restore(); }
void Lowered::install() { impl_->install(); }
bool Lowered::installed() const { return impl_->installed; }
const std::string& Lowered::engine() const { return impl_->engine_name; }
quant::QuantModel& Lowered::model() { return *impl_->model; }
const std::vector<NodeInfo>& Lowered::nodes() const { return impl_->infos; }

at::Tensor Lowered::forward(const at::Tensor& x) {
  at::NoGradGuard ng;
  detail::EngineGuard g(impl_->engine);
  if (!impl_->installed) impl_->install();
  if (impl_->model->is_training()) impl_->model->eval();
  auto y = impl_->model->forward(quant::on_device(x, at::Device(at::kCPU)));
  return y.is_quantized() ? y.dequantize() : y;
}

// ---------------------------------------------------------------------------------------------
// Lowering

bool engine_available(const std::string& engine) {
  at::QEngine want;
  if (engine == "onednn")
    want = at::QEngine::ONEDNN;
  else if (engine == "qnnpack")
    want = at::QEngine::QNNPACK;
  else
    return false;
  const auto& have = at::globalContext().supportedQEngines();
  return std::find(have.begin(), have.end(), want) != have.end();
}

namespace {

std::string describe(FakeQuantizer* q) {
  try {
    return q->describe();
  } catch (...) {
    return "?";
  }
}

void check_frozen(FakeQuantizer* q, const std::string& where) {
  if (!q->quantizing())
    throw Error(where + ": quantizer is not quantizing (not calibrated or switched off): " + describe(q));
  if (q->observing()) throw Error(where + ": quantizer is still observing; freeze it before lowering: " + describe(q));
}

ActQ act_qparams(FakeQuantizer* q, const std::string& where) {
  if (!q)
    throw Error(where + ": no activation quantizer (the tensor stays float); integer lowering needs every "
                "conv/linear input and add operand quantized");
  check_frozen(q, where);
  auto qp = q->affine_qparams();
  if (!qp)
    throw Error(where + ": quantizer '" + describe(q) + "' is not affine (no scale/zero point), so it has no " +
                "integer equivalent");
  if (qp->per_channel() || qp->scale.numel() != 1)
    throw Error(where + ": per-channel activation quantization has no quantized CPU operator");
  const int64_t levels = qp->range.qmax - qp->range.qmin;
  if (levels > 255 || levels < 1)
    throw Error(where + ": activation range [" + std::to_string(qp->range.qmin) + ", " +
                std::to_string(qp->range.qmax) + "] does not fit 8 bits");
  ActQ a;
  a.scale = qp->scale.detach().to(at::kFloat).item<double>();
  a.zp = qp->zero_point.item<int64_t>() - qp->range.qmin;
  a.qmax = levels;
  if (!std::isfinite(a.scale) || a.scale <= 0) throw Error(where + ": scale is not a positive number");
  if (a.zp < 0 || a.zp > a.qmax)
    throw Error(where + ": zero point " + std::to_string(qp->zero_point.item<int64_t>()) + " outside its range [" +
                std::to_string(qp->range.qmin) + ", " + std::to_string(qp->range.qmax) + "]");
  return a;
}

/// The int8 weight that the weight quantizer's forward produces for `w`, as a quantized qint8
/// tensor (per-channel along 0 or per-tensor). The integers are read back from the fake-quant
/// output itself, so they are exactly the ones the simulation used.
at::Tensor quantize_weight(FakeQuantizer* q, const at::Tensor& w, const std::string& where, at::Tensor* int_vals,
                           at::Tensor* scales) {
  if (!q)
    throw Error(where + ": weight has no quantizer (stays float); integer lowering needs int8 weights");
  check_frozen(q, where + " weight");
  auto qp = q->affine_qparams();
  if (!qp)
    throw Error(where + ": weight quantizer '" + describe(q) + "' is not affine (e.g. APoT's power-of-two " +
                "levels, DSQ's soft steps): it has no int8 equivalent");
  if (qp->range.qmin < -128 || qp->range.qmax > 127)
    throw Error(where + ": weight range [" + std::to_string(qp->range.qmin) + ", " + std::to_string(qp->range.qmax) +
                "] does not fit int8");
  const bool per_channel = qp->per_channel();
  if (per_channel && qp->ch_axis != 0)
    throw Error(where + ": per-channel weights must be quantized along the output channels (axis 0)");
  auto s = qp->scale.detach().to(at::kDouble).reshape({-1});
  auto z = qp->zero_point.detach().to(at::kLong).reshape({-1});
  if (!per_channel && s.numel() != 1) throw Error(where + ": per-tensor weight quantizer with several scales");
  std::vector<int64_t> bshape(w.dim(), 1);
  bshape[0] = per_channel ? w.size(0) : 1;
  auto sb = s.reshape(bshape), zb = z.to(at::kDouble).reshape(bshape);
  at::Tensor wf;
  {
    at::NoGradGuard ng;
    wf = q->forward(w.detach()).detach().to(at::kDouble);
  }
  auto qv = (at::round(wf / sb) + zb).clamp(static_cast<double>(qp->range.qmin), static_cast<double>(qp->range.qmax));
  const double off = (((qv - zb) * sb - wf).abs() / sb).max().item<double>();
  if (off > 1e-3)
    throw Error(where + ": the weight quantizer's output is not on the grid its scale/zero point describe (off by " +
                std::to_string(off) + " steps): " + describe(q));
  if (int_vals) *int_vals = qv - zb;
  if (scales) *scales = per_channel ? s : s.expand({w.size(0)}).contiguous();
  auto q8 = qv.to(at::kChar);
  if (per_channel) return at::_make_per_channel_quantized_tensor(q8, s, z, 0);
  return at::_make_per_tensor_quantized_tensor(q8, s.item<double>(), z.item<int64_t>());
}

/// Checks that an activation quantizer really is the affine quantizer its qparams describe, on
/// the tensor it quantizes in the trace (e.g. LSQ+'s continuous offset rounded to a zero point
/// is not).
void check_affine_on(FakeQuantizer* q, const ActQ& a, const at::Tensor& x, const std::string& where) {
  at::NoGradGuard ng;
  auto xf = x.is_quantized() ? x.dequantize() : x;
  auto mine = at::fake_quantize_per_tensor_affine(xf, a.scale, a.zp, 0, a.qmax);
  auto theirs = q->forward(xf);
  auto off = ((mine - theirs).abs() > 1e-3 * a.scale).to(at::kDouble).mean().item<double>();
  if (off > 1e-3)
    throw Error(where + ": quantizer '" + describe(q) + "' does not act as the affine quantizer its scale/zero point "
                "describe (" + std::to_string(100 * off) + "% of values differ): no exact integer equivalent");
}

struct Edge {
  size_t consumer;
  int slot;
};

FakeQuantizer* consumer_quantizer(const Node& c, int slot) {
  if (c.add) return c.add->input_quantizer(slot);
  return c.layer->input_quantizer();
}

std::string consumer_label(const Node& c, int slot) {
  if (c.add) return c.name + (slot == 0 ? " operand a quantizer" : " operand b quantizer");
  return c.name + " input quantizer";
}

const char* kind_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::Conv: return "conv2d";
    case Node::Kind::LinearQ:
    case Node::Kind::LinearI32: return "linear";
    case Node::Kind::Add: return "add";
  }
  return "?";
}

at::QEngine engine_enum(const std::string& e) { return e == "onednn" ? at::QEngine::ONEDNN : at::QEngine::QNNPACK; }

}  // namespace

std::unique_ptr<Lowered> lower(quant::QuantModel& model, const quant::Profile& profile, const at::Tensor& calib_in,
                               int64_t calib_batch_size) {
  const std::string engine = profile.spec.engine;
  if (engine != "onednn" && engine != "qnnpack")
    throw Error("deploy: profile '" + profile.name + "' names no integer engine (engine: " + engine + ")");
  if (!engine_available(engine))
    throw Error("deploy: this LibTorch build has no " + engine + " quantized engine");
  if (!calib_in.defined() || calib_in.dim() < 2 || calib_in.size(0) == 0)
    throw Error("deploy: lowering needs calibration images (none given)");
  if (calib_batch_size <= 0) calib_batch_size = 256;
  // The quantized engines are CPU-only: a model on another device is moved to the CPU (in place,
  // so it stays there; a caller that needs it back moves it), and so are the images.
  const at::Device cpu(at::kCPU);
  if (quant::module_device(model) != cpu) model.to(cpu);
  const at::Tensor calib = quant::on_device(calib_in, cpu);
  at::NoGradGuard ng;
  model.eval();

  // 1. The nodes, checked one by one.
  std::vector<std::shared_ptr<Node>> all;
  for (auto& ref : model.quant_layers()) {
    auto n = std::make_shared<Node>();
    n->name = ref.name;
    n->layer = ref.layer;
    n->act = ref.act;
    if ((n->conv = dynamic_cast<quant::QConv2dImpl*>(ref.layer))) {
      n->kind = Node::Kind::Conv;
      if (n->conv->bn() && n->conv->bn_fold() < 0)
        throw Error("deploy: " + ref.name + ": its BatchNorm is not folded (bn_fold -1); integer lowering needs "
                    "the BN folded into the conv (strategies 0..4)");
      if (n->act != Act::None && n->act != Act::ReLU && n->act != Act::ReLU6)
        throw Error("deploy: " + ref.name + ": activation '" + quant::act_name(n->act) + "' cannot be fused");
    } else if ((n->linear = dynamic_cast<quant::QLinearImpl*>(ref.layer))) {
      n->kind = Node::Kind::LinearQ;  // may become LinearI32 below
      n->act = Act::None;             // QLinear's forward is the bare linear; the model applies anything after
    } else {
      throw Error("deploy: " + ref.name + ": layer type '" + ref.layer->layer_type() + "' has no integer lowering");
    }
    if (!ref.layer->weight_quantizer())
      throw Error("deploy: " + ref.name + ": weight has no quantizer (stays float); integer lowering needs int8 weights");
    n->in_a = act_qparams(ref.layer->input_quantizer(), "deploy: " + ref.name + " input");
    all.push_back(n);
  }
  for (auto& ref : model.adds()) {
    auto n = std::make_shared<Node>();
    n->name = ref.name;
    n->kind = Node::Kind::Add;
    n->add = ref.add;
    n->in_a = act_qparams(ref.add->input_quantizer(0), "deploy: " + ref.name + " operand a");
    n->in_b = act_qparams(ref.add->input_quantizer(1), "deploy: " + ref.name + " operand b");
    all.push_back(n);
  }
  if (all.empty()) throw Error("deploy: the model has no quantizable layers");

  // 2. Trace the data flow on a few calibration images: which node produced each node's inputs.
  const int64_t trace_n = std::min<int64_t>(calib.size(0), 16);
  const at::Tensor trace_x = calib.narrow(0, 0, trace_n).contiguous();
  std::unordered_map<const c10::TensorImpl*, size_t> producer;
  std::vector<at::Tensor> keep;  // keeps every traced tensor alive, so no address is reused
  std::vector<std::vector<Edge>> consumers(all.size());
  std::vector<int> calls(all.size(), 0);
  std::vector<size_t> order;
  at::Tensor traced;
  try {
    detail::set_hooks(all, [&](size_t i, const std::vector<at::Tensor>& in) {
      ++calls[i];
      if (calls[i] == 1) order.push_back(i);
      for (size_t s = 0; s < in.size(); ++s) {
        keep.push_back(in[s]);
        auto it = producer.find(in[s].unsafeGetTensorImpl());
        if (it != producer.end()) consumers[it->second].push_back({i, static_cast<int>(s)});
        // The quantizers must act as the affine grid they claim, on the values they see.
        auto* q = all[i]->add ? all[i]->add->input_quantizer(static_cast<int>(s)) : all[i]->layer->input_quantizer();
        check_affine_on(q, s == 0 ? all[i]->in_a : all[i]->in_b, in[s],
                        "deploy: " + all[i]->name + (all[i]->add ? (s == 0 ? " operand a" : " operand b") : " input"));
      }
      auto y = all[i]->sim(in);
      keep.push_back(y);
      producer[y.unsafeGetTensorImpl()] = i;
      return y;
    });
    traced = model.forward(trace_x);
  } catch (...) {
    detail::clear_hooks(all);
    throw;
  }
  detail::clear_hooks(all);
  keep.clear();
  {
    // The lowering's view of the model must be the model: its own forward gives the same logits.
    auto ref = model.forward(trace_x);
    const double diff = (ref - traced).abs().max().item<double>();
    const double mag = ref.abs().max().item<double>();
    if (!(diff <= 1e-4 * std::max(mag, 1e-6)))
      throw Error("deploy: the model's forward differs from the layer-by-layer simulation (max diff " +
                  std::to_string(diff) + "): something between its layers is not covered by the lowering");
  }
  for (size_t i = 0; i < all.size(); ++i)
    if (calls[i] > 1)
      throw Error("deploy: " + all[i]->name + " runs " + std::to_string(calls[i]) +
                  " times per forward pass (shared module): not supported");

  // 3. The output plan of every node that runs.
  std::vector<std::shared_ptr<Node>> nodes;
  std::vector<size_t> need_observer;  // indices into `nodes`
  for (size_t idx : order) {
    auto& n = *all[idx];
    n.info.name = n.name;
    n.info.kind = kind_name(n.kind);
    const auto& cons = consumers[idx];
    if (n.add && n.add->output_quantizer()) {
      n.out = act_qparams(n.add->output_quantizer(), "deploy: " + n.name + " output");
      n.info.out_source = n.name + " output quantizer";
      n.out_float = cons.empty();
    } else if (!cons.empty()) {
      const auto& c0 = *all[cons[0].consumer];
      n.out = act_qparams(consumer_quantizer(c0, cons[0].slot), "deploy: " + consumer_label(c0, cons[0].slot));
      n.info.out_source = consumer_label(c0, cons[0].slot);
    } else if (n.kind == Node::Kind::LinearQ) {
      n.kind = Node::Kind::LinearI32;  // the logits: int32 accumulation, float out
      n.out_float = true;
      n.info.out_source = "float (int32 accumulation, dequantized)";
    } else {
      need_observer.push_back(nodes.size());
      n.out_float = true;
    }
    for (size_t k = 0; k < cons.size(); ++k) {
      const auto& c = *all[cons[k].consumer];
      auto q = act_qparams(consumer_quantizer(c, cons[k].slot), "deploy: " + consumer_label(c, cons[k].slot));
      if (!q.same(n.out))
        n.info.notes.push_back("requantized for " + consumer_label(c, cons[k].slot) +
                               (n.add && n.add->output_quantizer()
                                    ? " (exact: the simulation quantizes the add's output twice as well)"
                                    : " (other qparams: one rounding more than the simulation)"));
    }
    nodes.push_back(all[idx]);
  }

  // 4. 8-bit output observers (PyTorch convert's choice) for nodes whose output reaches no
  //    quantizer, e.g. a conv followed by pooling: asymmetric uint8 min/max over `calib`.
  if (!need_observer.empty()) {
    std::vector<at::Tensor> mins(need_observer.size()), maxs(need_observer.size());
    std::unordered_map<size_t, size_t> slot_of;
    for (size_t k = 0; k < need_observer.size(); ++k) slot_of[need_observer[k]] = k;
    detail::set_hooks(nodes, [&](size_t i, const std::vector<at::Tensor>& in) {
      auto y = nodes[i]->sim(in);
      auto it = slot_of.find(i);
      if (it != slot_of.end()) {
        auto mn = y.min(), mx = y.max();
        auto& a = mins[it->second];
        auto& b = maxs[it->second];
        a = a.defined() ? at::minimum(a, mn) : mn;
        b = b.defined() ? at::maximum(b, mx) : mx;
      }
      return y;
    });
    try {
      for (int64_t s = 0; s < calib.size(0); s += calib_batch_size)
        model.forward(calib.narrow(0, s, std::min(calib_batch_size, calib.size(0) - s)));
    } catch (...) {
      detail::clear_hooks(nodes);
      throw;
    }
    detail::clear_hooks(nodes);
    quant::QuantScheme sch;
    sch.bits = 8;
    sch.symmetric = false;
    sch.signedness = quant::Signedness::Unsigned;
    for (size_t k = 0; k < need_observer.size(); ++k) {
      auto& n = *nodes[need_observer[k]];
      auto qp = quant::qparams_from_minmax(mins[k], maxs[k], sch, -1);
      n.out.scale = qp.scale.item<double>();
      n.out.zp = qp.zero_point.item<int64_t>();
      n.out.qmax = 255;
      n.info.out_source = "8-bit min/max output observer on the calibration images (not in the simulation)";
    }
  }

  // 5. Weights packed for the engine, operators looked up.
  auto impl = std::make_unique<Lowered::Impl>();
  impl->model = &model;
  impl->engine_name = engine;
  impl->engine = engine_enum(engine);
  detail::EngineGuard guard(impl->engine);
  auto& disp = c10::Dispatcher::singleton();
  for (auto& np : nodes) {
    auto& n = *np;
    try {
      switch (n.kind) {
        case Node::Kind::Conv: {
          auto wb = n.conv->folded_weight_bias();
          auto qw = quantize_weight(n.layer->weight_quantizer(), wb.first, "deploy: " + n.name, nullptr, nullptr);
          const auto& o = n.conv->options();
          std::vector<c10::IValue> st{qw, wb.second.contiguous(), std::vector<int64_t>{o.stride, o.stride},
                                      std::vector<int64_t>{o.padding, o.padding}, std::vector<int64_t>{1, 1},
                                      o.groups};
          disp.findSchemaOrThrow("quantized::conv2d_prepack", "").callBoxed(&st);
          n.packed = st.at(0);
          const bool relu = n.act != Act::None;
          n.info.op = relu ? "quantized::conv2d_relu" : "quantized::conv2d";
          n.op = disp.findSchemaOrThrow(relu ? "quantized::conv2d_relu" : "quantized::conv2d", "new");
          break;
        }
        case Node::Kind::LinearQ: {
          auto qw = quantize_weight(n.layer->weight_quantizer(), n.linear->weight.detach(), "deploy: " + n.name,
                                    nullptr, nullptr);
          std::vector<c10::IValue> st{qw, n.linear->bias.defined() ? c10::IValue(n.linear->bias.detach().contiguous())
                                                                   : c10::IValue()};
          disp.findSchemaOrThrow("quantized::linear_prepack", "").callBoxed(&st);
          n.packed = st.at(0);
          n.info.op = "quantized::linear";
          n.op = disp.findSchemaOrThrow("quantized::linear", "");
          break;
        }
        case Node::Kind::LinearI32: {
          at::Tensor iv, sc;
          quantize_weight(n.layer->weight_quantizer(), n.linear->weight.detach(), "deploy: " + n.name, &iv, &sc);
          n.w_t = iv.t().contiguous();
          n.w_scale = sc.to(at::kDouble);
          n.bias = n.linear->bias.defined() ? n.linear->bias.detach().to(at::kDouble)
                                            : at::zeros({iv.size(0)}, at::kDouble);
          n.info.op = "int32 matmul (exact integer accumulation), dequantized";
          break;
        }
        case Node::Kind::Add: {
          const bool relu = n.add->relu_after();
          n.info.op = relu ? "quantized::add_relu" : "quantized::add";
          n.op = disp.findSchemaOrThrow(relu ? "quantized::add_relu" : "quantized::add", "");
          break;
        }
      }
    } catch (const c10::Error& e) {
      throw Error("deploy: " + n.name + ": the " + engine + " engine rejects it: " + e.what_without_backtrace());
    }
    // Clamps the quantized op does not do itself: ReLU6's upper bound, a range narrower than uint8.
    if (n.kind != Node::Kind::LinearI32) {
      double hi = n.out.hi();
      if (n.act == Act::ReLU6) hi = std::min(hi, 6.0);
      const double natural_hi = static_cast<double>(255 - n.out.zp) * n.out.scale;
      if (hi < natural_hi - 1e-12 * std::abs(natural_hi)) {
        n.clamp = true;
        n.clamp_lo = n.out.lo();
        n.clamp_hi = hi;
        n.info.op += " + clamp";
      }
      n.info.out_scale = n.out.scale;
      n.info.out_zero_point = n.out.zp;
      n.info.out_qmax = n.out.qmax;
    }
    n.info.float_output = n.out_float;
    impl->infos.push_back(n.info);
  }
  impl->nodes = std::move(nodes);

  // 6. A first run on the trace images, so that what the engine cannot execute fails here.
  auto lowered = std::make_unique<Lowered>(std::move(impl));
  auto y = lowered->forward(trace_x);
  if (!at::isfinite(y).all().item<bool>()) throw Error("deploy: the integer network produced NaN/Inf logits");
  return lowered;
}

}  // namespace qbench::deploy
