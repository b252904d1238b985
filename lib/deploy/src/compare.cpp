// Deployed-vs-simulated comparison and integer latency.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/data/loader.h"

namespace qbench::deploy {

using detail::Node;

namespace {

constexpr double kSqnrCap = 200.0;  // identical outputs: reported as 200 dB

double sqnr_db(const at::Tensor& ref, const at::Tensor& got) {
  const double sig = ref.to(at::kDouble).pow(2).sum().item<double>();
  const double noise = (got.to(at::kDouble) - ref.to(at::kDouble)).pow(2).sum().item<double>();
  if (noise <= 0) return kSqnrCap;
  if (sig <= 0) return -kSqnrCap;
  return std::min(kSqnrCap, 10.0 * std::log10(sig / noise));
}

at::Tensor as_float(const at::Tensor& t) { return t.is_quantized() ? t.dequantize() : t; }

/// Prediction agreement, top-1 of both, mean logit cosine and SQNR, accumulated batch by batch.
struct Tally {
  int64_t n = 0, agree = 0, dep_correct = 0, sim_correct = 0;
  double cos_sum = 0, sig = 0, noise = 0;
  void add(const at::Tensor& sim_f, const at::Tensor& dep_f, const at::Tensor& labels) {
    auto sim = sim_f.detach().cpu().to(at::kDouble), dep = dep_f.detach().cpu().to(at::kDouble);
    auto lab = labels.cpu();
    auto ps = sim.argmax(1), pd = dep.argmax(1);
    n += sim.size(0);
    agree += ps.eq(pd).sum().item<int64_t>();
    dep_correct += pd.eq(lab).sum().item<int64_t>();
    sim_correct += ps.eq(lab).sum().item<int64_t>();
    auto dot = (sim * dep).sum(1);
    auto nrm = sim.norm(2, {1}) * dep.norm(2, {1});
    cos_sum += (dot / nrm.clamp_min(1e-30)).sum().item<double>();
    sig += sim.pow(2).sum().item<double>();
    noise += (dep - sim).pow(2).sum().item<double>();
  }
  void finish(Agreement& a) const {
    a.images = n;
    if (n == 0) return;
    a.agreement = 100.0 * static_cast<double>(agree) / n;
    a.deploy_top1 = 100.0 * static_cast<double>(dep_correct) / n;
    a.sim_top1 = 100.0 * static_cast<double>(sim_correct) / n;
    a.logit_cosine = cos_sum / n;
    a.sqnr_db = noise > 0 ? std::min(kSqnrCap, 10.0 * std::log10(sig / noise)) : kSqnrCap;
  }
};

/// What the simulation hands on from node n: its float output, on the node's output grid when the
/// deployed node writes a quantized tensor (the grid is the consumer's quantizer, which the
/// simulation applies next; adds already end in their output quantizer).
at::Tensor reference(const Node& n, const at::Tensor& sim_out) {
  if (n.kind == Node::Kind::LinearI32) return sim_out;
  auto y = at::fake_quantize_per_tensor_affine(sim_out.contiguous(), n.out.scale, n.out.zp, 0, n.out.qmax);
  return y;
}

CellDetails layer_rows(quant::QuantModel& model, Lowered& lowered, const at::Tensor& x, const CompareOptions& opt) {
  auto& impl = lowered.impl();
  const auto& nodes = impl.nodes;
  const size_t n = nodes.size();
  std::vector<at::Tensor> sim_out(n), op_out(n), dep_out(n);
  detail::EngineGuard g(impl.engine);
  impl.restore();
  try {
    // The simulation, each node also run alone on the simulation's own inputs.
    detail::set_hooks(nodes, [&](size_t i, const std::vector<at::Tensor>& in) {
      auto y = nodes[i]->sim(in);
      sim_out[i] = y;
      op_out[i] = as_float(nodes[i]->run(in));
      return y;
    });
    model.forward(x);
    // The deployed network.
    detail::set_hooks(nodes, [&](size_t i, const std::vector<at::Tensor>& in) {
      auto y = nodes[i]->run(in);
      dep_out[i] = as_float(y);
      return y;
    });
    model.forward(x);
  } catch (...) {
    impl.install();
    throw;
  }
  impl.install();

  CellDetails rows;
  size_t first_below = n;
  for (size_t i = 0; i < n; ++i) {
    const auto& node = *nodes[i];
    CellDetail d;
    d.section = "deploy_layers";
    d.name = node.name;
    if (!sim_out[i].defined() || !dep_out[i].defined()) continue;
    auto ref = reference(node, sim_out[i]);
    auto dep = dep_out[i].reshape(ref.sizes());
    auto op = op_out[i].reshape(ref.sizes());
    const double step = node.kind == Node::Kind::LinearI32 ? 0.0 : node.out.scale;
    auto err = (dep - ref).abs();
    const double max_err = err.max().item<double>();
    const double op_max_err = (op - ref).abs().max().item<double>();
    d.values["sqnr_db"] = sqnr_db(ref, dep);
    d.values["max_abs_err"] = max_err;
    d.values["op_sqnr_db"] = sqnr_db(ref, op);
    if (step > 0) {
      d.values["max_err_steps"] = max_err / step;
      d.values["op_max_err_steps"] = op_max_err / step;
      d.values["mismatch_pct"] = 100.0 * (err > 0.5 * step).to(at::kDouble).mean().item<double>();
      d.values["out_scale"] = step;
      d.values["out_zero_point"] = static_cast<double>(node.out.zp);
    } else {
      d.values["op_max_abs_err"] = op_max_err;
    }
    d.text = node.info.op + "; output " + (node.info.float_output ? "float" : "uint8") + " from " +
             node.info.out_source;
    for (const auto& note : node.info.notes) d.text += "; " + note;
    if (first_below == n && d.values["sqnr_db"] < opt.layer_sqnr_threshold_db) first_below = i;
    rows.push_back(std::move(d));
  }
  const size_t keep = std::min(rows.size(), std::max<size_t>(static_cast<size_t>(std::max(0, opt.min_layer_rows)),
                                                             first_below == n ? 0 : first_below + 1));
  rows.resize(keep);
  return rows;
}

}  // namespace

Agreement compare(quant::QuantModel& model, Lowered& lowered, const data::Dataset& test, int64_t batch_size,
                  const CompareOptions& opt) {
  if (batch_size <= 0) throw Error("deploy compare: batch size must be positive");
  if (&lowered.model() != &model) throw Error("deploy compare: the lowered network belongs to another model");
  at::NoGradGuard ng;
  model.eval();
  int64_t n = test.size();
  if (opt.max_images > 0) n = std::min(n, opt.max_images);
  Agreement a;
  if (n == 0) return a;
  data::BatchLoader loader(test, data::plan_sequential(n, batch_size));
  Tally t;
  bool first = true;
  for (int64_t start = 0; start < n; start += batch_size) {
    auto batch = loader.next();
    if (!batch) throw Error("deploy compare: data loader ended early at image " + std::to_string(start));
    const auto& x = batch->images;
    lowered.restore();
    at::Tensor sim;
    try {
      sim = model.forward(x);
    } catch (...) {
      lowered.install();
      throw;
    }
    auto dep = lowered.forward(x);
    if (first) {
      a.layers = layer_rows(model, lowered, x, opt);
      first = false;
    }
    t.add(sim, dep, batch->labels);
  }
  t.finish(a);
  return a;
}

Agreement agreement_of(const at::Tensor& sim, const at::Tensor& dep, const at::Tensor& labels) {
  if (sim.sizes() != dep.sizes() || sim.dim() != 2 || labels.size(0) != sim.size(0))
    throw Error("deploy: logits of different shapes cannot be compared");
  Agreement a;
  Tally t;
  t.add(sim, dep, labels);
  t.finish(a);
  return a;
}

train::LatencyResult measure_latency(Lowered& lowered, const at::Tensor& batch, int warmup, int repeats) {
  detail::EngineGuard g(lowered.impl().engine);
  if (!lowered.installed()) lowered.install();
  return train::measure_latency(lowered.model(), batch, warmup, repeats);
}

}  // namespace qbench::deploy
