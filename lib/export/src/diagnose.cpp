// diagnose_layers (see diagnose.h).
#include "qbench/export/diagnose.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "qbench/export/onnx_export.h"
#include "qbench/export/ort.h"

namespace qbench::exporter {

namespace {

double sqnr_db(const at::Tensor& ref, const at::Tensor& got) {
  const double sig = ref.to(at::kDouble).pow(2).sum().item<double>();
  const double noise = (got.to(at::kDouble) - ref.to(at::kDouble)).pow(2).sum().item<double>();
  if (noise <= 0) return 200.0;
  if (sig <= 0) return -200.0;
  return std::min(200.0, 10.0 * std::log10(sig / noise));
}

/// Clears the layers' output taps whatever happens.
struct Taps {
  std::vector<quant::LayerRef> layers;
  ~Taps() {
    for (auto& l : layers) l.layer->set_output_tap({});
  }
};

}  // namespace

CellDetails diagnose_layers(quant::QuantModel& model, const XGraph& graph, const std::string& diagnostic_path,
                            const at::Tensor& batch, int threads) {
  XGraph dg = graph;
  std::vector<std::string> names;
  for (const auto& lo : graph.layer_outputs) {
    names.push_back(lo.tensor);
    if (lo.tensor != graph.output) dg.extra_outputs.emplace_back(lo.tensor, lo.shape);
  }
  write_onnx(dg, diagnostic_path,
             {{"qbench_diagnostic", "every layer's output exposed as a graph output; the runtime may fuse this "
                                    "copy differently from the deployed file"}});
  const auto ort = probe_ort(diagnostic_path, batch, names, threads);

  std::map<std::string, at::Tensor> sim;
  {
    Taps taps{model.quant_layers()};
    for (auto& l : taps.layers)
      l.layer->set_output_tap([&sim, name = l.name](const at::Tensor& t) { sim[name] = t.detach().cpu().clone(); });
    at::NoGradGuard ng;
    model.eval();
    model.forward(batch);
  }
  CellDetails rows;
  for (size_t i = 0; i < graph.layer_outputs.size(); ++i) {
    const std::string& layer = graph.layer_outputs[i].layer;
    auto it = sim.find(layer);
    if (it == sim.end()) continue;
    const at::Tensor ref = it->second.to(at::kFloat);
    if (ort[i].numel() != ref.numel()) continue;
    const at::Tensor got = ort[i].reshape(ref.sizes());
    const at::Tensor err = (got - ref).abs();
    const double scale = std::max(1e-30, ref.abs().max().item<double>());
    const double max_err = err.max().item<double>();
    CellDetail d;
    d.section = "ort_layers";
    d.name = layer;
    d.values = {{"sqnr_db", sqnr_db(ref, got)},
                {"max_abs_err", max_err},
                {"rel_err", max_err / scale},
                {"mismatch_pct", 100.0 * err.gt(1e-4 * scale).to(at::kDouble).mean().item<double>()}};
    d.text = "diagnostic session (every layer's output exposed): the layer's output before its activation, "
             "ONNX Runtime against the simulation, first test batch";
    rows.push_back(std::move(d));
  }
  return rows;
}

}  // namespace qbench::exporter
