// inspect (see inspect.h): the report is read off the built model and lib/quant / lib/ptq's own
// walks (attach_quantizers, recon_units), so it says what a run would do.
#include "qbench/onnx/inspect.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <sstream>

#include "qbench/onnx/model.h"
#include "qbench/ptq/recon.h"
#include "qbench/quant/prepare.h"

namespace qbench::onnx {

namespace {

std::string shape_str(const std::vector<int64_t>& s, bool batch) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + (i == 0 && batch ? std::string("N") : std::to_string(s[i]));
  return o + "]";
}

std::string human(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string quantizer_str(const quant::FakeQuantizer* q) {
  return q ? std::to_string(q->scheme().bits) + "b " + q->scheme().describe() : "-";
}

}  // namespace

std::string inspect(const ImportedGraph& g, const quant::Profile* profile) {
  auto m = make_model(g, /*use_initializers=*/true);
  const bool batch = !g.inputs.empty() && g.shapes.count(g.inputs[0]) && !g.shapes.at(g.inputs[0]).empty() &&
                     g.shapes.at(g.inputs[0])[0].pow == 1;
  std::ostringstream o;
  int64_t params = 0, macs = 0;
  for (const auto& s : m->steps()) {
    params += s.params;
    macs += s.macs;
  }
  o << g.file_name << ": opset " << g.opset << ", IR " << g.ir_version << (g.producer.empty() ? "" : ", from " + g.producer)
    << "\n  input '" << g.inputs[0] << "' " << shape_str([&] {
         std::vector<int64_t> s{1};
         s.insert(s.end(), m->sample_shape().begin(), m->sample_shape().end());
         return s;
       }(), batch)
    << ", output '" << g.outputs[0] << "'\n  " << g.nodes.size() << " nodes run as " << m->steps().size()
    << " steps; " << g.folded_nodes << " nodes folded at import (constants, shape arithmetic)\n  "
    << human(static_cast<double>(params)) << " parameters, " << human(static_cast<double>(macs))
    << " MACs per sample; BatchNorm: " << (m->has_bn() ? "yes (BN folding strategies apply)" : "none") << "\n\n";

  o << "steps (per-sample output shape, parameters, MACs):\n";
  int i = 0;
  for (const auto& s : m->steps()) {
    char head[64];
    std::snprintf(head, sizeof head, "  %3d  %-28s", i++, s.op.c_str());
    o << head << " " << shape_str(s.out_shape, batch);
    if (s.params) o << "  params " << human(static_cast<double>(s.params));
    if (s.macs) o << "  MACs " << human(static_cast<double>(s.macs));
    if (!s.module.empty()) o << "  -> " << s.module;
    o << "   (" << s.node << (s.fused.size() > 1 ? " +" + std::to_string(s.fused.size() - 1) + " fused" : "") << ")\n";
  }

  o << "\nquantizable layers (execution order):\n";
  for (const auto& l : m->quant_layers()) {
    o << "  " << l.name << "  " << l.layer->layer_type();
    if (l.is_first) o << "  [first]";
    if (l.is_last) o << "  [last]";
    o << "  BN: " << (l.bn_name.empty() ? "-" : l.bn_name) << "  act: " << quant::act_name(l.act)
      << "  block: " << (l.block.empty() ? "-" : l.block) << "\n";
  }
  const auto adds = m->adds();
  o << "residual adds: " << adds.size() << "\n";
  for (const auto& a : adds) o << "  " << a.name << (a.add->relu_after() ? "  (+relu)" : "") << "\n";

  if (profile) {
    quant::PrepareOptions po;
    quant::prepare_model(*m, *profile, po);
    o << "\nprofile " << profile->name << " at w8a8 (weight quantizer | input quantizer):\n";
    for (const auto& l : m->quant_layers())
      o << "  " << l.name << "  W " << quantizer_str(l.layer->weight_quantizer()) << "  |  A "
        << quantizer_str(l.layer->input_quantizer()) << "\n";
    for (const auto& a : m->adds()) {
      auto* qa = a.add->input_quantizer(0);
      auto* qo = a.add->output_quantizer();
      if (qa || qo)
        o << "  " << a.name << "  operands " << quantizer_str(qa) << "  output " << quantizer_str(qo) << "\n";
    }
  }

  o << "\nreconstruction units:\n";
  for (auto mode : {ptq::ReconMode::AdaRound, ptq::ReconMode::Brecq}) {
    const auto units = ptq::recon_units(*m, mode);
    o << "  " << (mode == ptq::ReconMode::AdaRound ? "adaround" : "brecq/qdrop") << ": " << units.size() << " units\n";
    if (mode == ptq::ReconMode::AdaRound) continue;
    for (const auto& u : units) {
      o << "    " << u.name << (u.is_block ? "  block (" + std::to_string(u.layers.size()) + " layers)" : "  layer")
        << (u.skipped ? "  [first layer: kept as is]" : "") << "\n";
    }
  }
  return o.str();
}

}  // namespace qbench::onnx
