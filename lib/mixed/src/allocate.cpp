#include "qbench/mixed/allocate.h"

#include <algorithm>
#include <map>

#include "qbench/common/errors.h"
#include "qbench/profiles/profiles.h"

namespace qbench::mixed {

namespace {
int index_of(const std::vector<int>& v, int x) {
  auto it = std::find(v.begin(), v.end(), x);
  return it == v.end() ? -1 : static_cast<int>(it - v.begin());
}
}  // namespace

std::vector<LayerChoices> layer_choices(quant::QuantModel& model, const quant::Profile& profile, const Sensitivity& s,
                                        const std::vector<int>& w_bits, const std::vector<int>& a_bits,
                                        int64_t latency_batch) {
  const auto& spec = profile.spec;
  const bool from_file = !spec.placement.empty();
  const bool layer_inputs = !from_file || spec.places("conv_linear_inputs");
  const bool graph_input = spec.places("graph_input");
  const int w_edge = from_file ? std::min(8, spec.weight.max_bits) : 8;
  const int a_edge = from_file ? std::min(8, spec.activation.max_bits) : 8;
  const auto refs = model.quant_layers();
  if (refs.size() != s.layers.size()) throw Error("mixed precision: the sensitivities are of another model");
  std::map<int, int> group_size;
  for (const auto& l : s.layers) group_size[l.a_group]++;
  std::vector<LayerChoices> out;
  for (std::size_t k = 0; k < refs.size(); ++k) {
    const auto& ref = refs[k];
    const auto& ls = s.layers[k];
    if (ls.name != ref.name) throw Error("mixed precision: the sensitivities are of another model");
    LayerChoices c;
    c.name = ref.name;
    c.params = ls.params;
    c.macs = ls.macs;
    const bool edge = profile.first_last_8bit && (ref.is_first || ref.is_last);
    const bool has_input_q = layer_inputs || (graph_input && ref.is_first);
    auto fixed = [&](const std::vector<int>& cands, const std::vector<double>& sens, int width, std::vector<int>& bits,
                     std::vector<double>& out_sens) {
      bits = {width};
      const int i = index_of(cands, width);
      out_sens = {i >= 0 ? sens[i] : 0.0};
    };
    if (edge) {
      fixed(w_bits, ls.w_sens, w_edge, c.w_bits, c.w_sens);
    } else {
      c.w_bits = w_bits;
      c.w_sens = ls.w_sens;
    }
    if (!has_input_q) {
      c.a_bits = {a_bits.back()};  // float input: no choice, no cost of its own
      c.a_sens = {0.0};
    } else if (edge) {
      fixed(a_bits, ls.a_sens, a_edge, c.a_bits, c.a_sens);
      c.act_elems = ls.act_elems;
    } else {
      c.a_bits = a_bits;
      c.a_sens = ls.a_sens;
      c.act_elems = ls.act_elems;
    }
    // One width per shared input, among layers that all choose it (an edge layer does not).
    if (group_size[ls.a_group] > 1 && has_input_q && !edge) c.a_group = ls.a_group;
    if (spec.roofline.declared()) {
      profiles::LayerCost lc{ref.name, ls.macs, ls.params, ref.layer->in_elems_per_sample(),
                             ref.layer->out_elems_per_sample()};
      for (int w : c.w_bits)
        for (int a : c.a_bits) c.latency_ms.push_back(profiles::roofline_layer_ms(spec.roofline, lc, latency_batch, w, a));
    }
    out.push_back(std::move(c));
  }
  // A group whose members disagree on their options (an edge layer among them) is dissolved.
  std::map<int, const LayerChoices*> first;
  for (auto& c : out) {
    if (c.a_group < 0) continue;
    auto [it, fresh] = first.emplace(c.a_group, &c);
    if (!fresh && it->second->a_bits != c.a_bits) c.a_group = -1;
  }
  return out;
}

std::map<std::string, quant::LayerBits> to_layer_bits(const std::vector<LayerChoices>& layers, const Allocation& a) {
  std::map<std::string, quant::LayerBits> out;
  for (std::size_t k = 0; k < layers.size(); ++k) out[layers[k].name] = {a.w_bits[k], a.a_bits[k]};
  return out;
}

Cost model_cost(quant::QuantModel& model) {
  Cost c;
  double params = 0, wsum = 0, elems = 0, asum = 0, ref = 0;
  for (const auto& l : model.quant_layers()) {
    const int w = l.layer->weight_quantizer() ? l.layer->weight_quantizer()->scheme().bits : 32;
    auto* iq = l.layer->input_quantizer();
    const int a = iq ? iq->scheme().bits : 32;
    const double n = static_cast<double>(l.layer->weight_tensor().numel());
    const double macs = static_cast<double>(l.layer->macs_per_sample());
    c.size_kb += n * w / 8.0 / 1024.0;
    params += n;
    wsum += n * w;
    c.bops += macs * w * a;
    ref += macs * 64.0;
    if (iq) {
      const double e = static_cast<double>(l.layer->in_elems_per_sample());
      elems += e;
      asum += e * a;
    }
  }
  c.avg_w_bits = params > 0 ? wsum / params : 0;
  c.avg_a_bits = elems > 0 ? asum / elems : 0;
  c.bops_ratio = ref > 0 ? c.bops / ref : 0;
  return c;
}

}  // namespace qbench::mixed
