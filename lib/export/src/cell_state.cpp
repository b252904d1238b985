// A quantized cell's saved state: capture, save, load, restore (see cell_state.h).
#include "qbench/export/cell_state.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/export/graph.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/quantizer.h"

namespace qbench::exporter {

namespace fs = std::filesystem;
using quant::FakeQuantizer;
using quant::QParams;

namespace {

constexpr const char* kStateKey = "qbench_cell_state";
constexpr int kStateVersion = 1;

/// Every quantizer site of a model with the quantizer and, for weights, the tensor it quantizes.
struct Site {
  std::string name;
  FakeQuantizer* q = nullptr;
  at::Tensor weight;  ///< undefined for activation sites
  std::function<void(std::shared_ptr<FakeQuantizer>)> attach;
};

/// The sites of a model in a fixed order; `with_attach` also prepares setters for restore.
std::vector<Site> sites(quant::QuantModel& model) {
  std::vector<Site> out;
  for (const auto& l : model.quant_layers()) {
    at::Tensor w;
    if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(l.layer))
      w = conv->folded_weight_bias().first;
    else
      w = l.layer->weight_tensor();
    out.push_back({l.name + ":weight", l.layer->weight_quantizer(), w, {}});
    out.push_back({l.name + ":input", l.layer->input_quantizer(), {}, {}});
  }
  for (const auto& a : model.adds()) {
    out.push_back({a.name + ":in0", a.add->input_quantizer(0), {}, {}});
    out.push_back({a.name + ":in1", a.add->input_quantizer(1), {}, {}});
    out.push_back({a.name + ":out", a.add->output_quantizer(), {}, {}});
  }
  return out;
}

/// Values spanning a per-tensor grid and four steps beyond each end, 16 per step.
at::Tensor probe_for(const QParams& qp) {
  const double s = qp.scale.max().item<double>(), z = qp.zero_point.to(at::kDouble).max().item<double>();
  const double lo = s * (double(qp.range.qmin) - z - 4), hi = s * (double(qp.range.qmax) - z + 4);
  const int64_t n = 16 * (qp.range.qmax - qp.range.qmin + 8) + 1;
  return at::linspace(lo, hi, n, qp.scale.options().dtype(at::kFloat));
}

nlohmann::json scheme_json(const quant::QuantScheme& s) {
  return {{"bits", s.bits},
          {"per_channel", s.granularity == quant::Granularity::PerChannel},
          {"ch_axis", s.ch_axis},
          {"symmetric", s.symmetric},
          {"signedness", s.signedness == quant::Signedness::Signed     ? "signed"
                         : s.signedness == quant::Signedness::Unsigned ? "unsigned"
                                                                       : "auto"},
          {"narrow_range", s.narrow_range},
          {"pot_scale", s.pot_scale},
          {"pot_max_frac_bits", s.pot_max_frac_bits}};
}

quant::QuantScheme scheme_from(const nlohmann::json& j) {
  quant::QuantScheme s;
  s.bits = j.at("bits").get<int>();
  s.granularity = j.at("per_channel").get<bool>() ? quant::Granularity::PerChannel : quant::Granularity::PerTensor;
  s.ch_axis = j.at("ch_axis").get<int64_t>();
  s.symmetric = j.at("symmetric").get<bool>();
  const std::string sg = j.at("signedness").get<std::string>();
  s.signedness = sg == "signed" ? quant::Signedness::Signed
                 : sg == "unsigned" ? quant::Signedness::Unsigned
                                    : quant::Signedness::Auto;
  s.narrow_range = j.at("narrow_range").get<bool>();
  s.pot_scale = j.at("pot_scale").get<bool>();
  s.pot_max_frac_bits = j.at("pot_max_frac_bits").get<int>();
  return s;
}

}  // namespace

std::vector<std::string> CellState::not_affine() const {
  std::vector<std::string> out;
  for (const auto& r : quantizers)
    if (!r.qparams) out.push_back(r.site + ": " + r.why_not);
  return out;
}

std::string cell_state_path(const std::string& cache_dir, const std::string& cell_key) {
  return (fs::path(cache_dir) / "cells" / cell_key / "state.safetensors").string();
}

CellState capture_cell_state(quant::QuantModel& model, int bn_fold, std::map<std::string, std::string> meta) {
  at::NoGradGuard ng;
  model.eval();
  CellState st;
  st.meta = std::move(meta);
  st.bn_fold = bn_fold;
  for (auto& [name, t] : models::model_state(model)) st.weights.emplace_back(name, t.detach().cpu().clone());
  for (const auto& l : model.quant_layers())
    if (l.layer->bias_int32()) st.bias_int32_layers.push_back(l.name);
  for (auto& site : sites(model)) {
    if (!site.q) continue;
    QuantizerRecord r;
    r.site = site.name;
    r.scheme = site.q->scheme();
    r.describe = site.q->describe();
    auto qp = site.q->affine_qparams();
    if (!qp) {
      r.why_not = "not affine (" + r.describe + "): a QuantizeLinear/DequantizeLinear pair cannot express its grid";
    } else {
      // The quantizer must compute exactly the fixed affine grid its qparams describe.
      at::Tensor x = site.weight.defined() ? site.weight.detach() : probe_for(*qp);
      at::Tensor a = site.q->forward(x).to(at::kDouble), b = quant::fake_quantize(x, *qp).to(at::kDouble);
      const double dev = (a - b).abs().max().item<double>() / qp->scale.min().clamp_min(1e-30).item<double>();
      if (dev > 1e-3) {
        r.why_not = "its grid is not the affine grid of its scale and zero point (it differs by up to " +
                    std::to_string(dev) + " steps: " + r.describe + ")";
      } else {
        QParams c = *qp;
        c.scale = qp->scale.detach().cpu().to(at::kFloat).clone();
        c.zero_point = qp->zero_point.detach().cpu().to(at::kInt).clone();
        r.qparams = c;
      }
    }
    st.quantizers.push_back(std::move(r));
  }
  return st;
}

void save_cell_state(const std::string& path, const CellState& st) {
  models::NamedTensors tensors;
  for (const auto& [name, t] : st.weights) tensors.emplace_back("model/" + name, t);
  nlohmann::json j;
  j["version"] = kStateVersion;
  j["meta"] = st.meta;
  j["bn_fold"] = st.bn_fold;
  j["bias_int32_layers"] = st.bias_int32_layers;
  j["quantizers"] = nlohmann::json::array();
  for (const auto& r : st.quantizers) {
    nlohmann::json q = {{"site", r.site}, {"scheme", scheme_json(r.scheme)}, {"describe", r.describe}};
    if (r.qparams) {
      q["qmin"] = r.qparams->range.qmin;
      q["qmax"] = r.qparams->range.qmax;
      q["ch_axis"] = r.qparams->ch_axis;
      tensors.emplace_back("quant/" + r.site + "/scale", r.qparams->scale);
      tensors.emplace_back("quant/" + r.site + "/zero_point", r.qparams->zero_point);
    } else {
      q["not_affine"] = r.why_not;
    }
    j["quantizers"].push_back(q);
  }
  fs::create_directories(fs::path(path).parent_path());
  models::save_safetensors(path, tensors, {{kStateKey, j.dump()}});
}

CellState load_cell_state(const std::string& path) {
  if (!fs::exists(path)) throw DataError(path + ": no saved cell state");
  std::map<std::string, std::string> meta;
  models::NamedTensors tensors = models::load_safetensors(path, &meta);
  auto it = meta.find(kStateKey);
  if (it == meta.end()) throw DataError(path + ": not a qbench cell state (no " + std::string(kStateKey) + " metadata)");
  CellState st;
  try {
    const auto j = nlohmann::json::parse(it->second);
    if (j.at("version").get<int>() != kStateVersion)
      throw DataError(path + ": cell state version " + std::to_string(j.at("version").get<int>()) +
                      ", this qbench reads version " + std::to_string(kStateVersion));
    st.meta = j.at("meta").get<std::map<std::string, std::string>>();
    st.bn_fold = j.at("bn_fold").get<int>();
    st.bias_int32_layers = j.value("bias_int32_layers", std::vector<std::string>{});
    std::map<std::string, at::Tensor> byname;
    for (auto& [name, t] : tensors) {
      if (name.rfind("model/", 0) == 0)
        st.weights.emplace_back(name.substr(6), t);
      else
        byname[name] = t;
    }
    for (const auto& q : j.at("quantizers")) {
      QuantizerRecord r;
      r.site = q.at("site").get<std::string>();
      r.scheme = scheme_from(q.at("scheme"));
      r.describe = q.at("describe").get<std::string>();
      if (q.contains("not_affine")) {
        r.why_not = q.at("not_affine").get<std::string>();
      } else {
        QParams qp;
        auto s = byname.find("quant/" + r.site + "/scale"), z = byname.find("quant/" + r.site + "/zero_point");
        if (s == byname.end() || z == byname.end())
          throw DataError(path + ": the quantizer at " + r.site + " has no scale or zero point");
        qp.scale = s->second.to(at::kFloat);
        qp.zero_point = z->second.to(at::kInt);
        qp.range = {q.at("qmin").get<int64_t>(), q.at("qmax").get<int64_t>()};
        qp.ch_axis = q.at("ch_axis").get<int64_t>();
        r.qparams = qp;
      }
      st.quantizers.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": malformed cell state: " + e.what());
  }
  return st;
}

void restore_cell_state(quant::QuantModel& model, const CellState& st) {
  if (st.bn_fold >= 0) quant::apply_bn_fold(model, st.bn_fold);
  models::import_weights(model, st.weights, "the saved cell state");
  std::map<std::string, const QuantizerRecord*> recs;
  for (const auto& r : st.quantizers) recs[r.site] = &r;
  auto make = [&](const std::string& site) -> std::shared_ptr<FakeQuantizer> {
    auto it = recs.find(site);
    if (it == recs.end()) return nullptr;
    const QuantizerRecord& r = *it->second;
    if (!r.qparams) throw ExportError("the quantizer at " + r.site + " cannot be restored: " + r.why_not);
    auto q = std::make_shared<quant::QuantizerImpl>(r.scheme, std::make_unique<quant::MinMaxObserver>(r.scheme));
    QParams qp = *r.qparams;
    qp.scale = qp.scale.clone();
    qp.zero_point = qp.zero_point.clone();
    q->set_qparams(qp);
    q->set_quantizing(true);
    recs.erase(it);
    return q;
  };
  const std::set<std::string> int32_bias(st.bias_int32_layers.begin(), st.bias_int32_layers.end());
  for (const auto& l : model.quant_layers()) {
    l.layer->attach(make(l.name + ":weight"), make(l.name + ":input"));
    l.layer->set_bias_int32(int32_bias.count(l.name) > 0);
  }
  for (const auto& a : model.adds()) {
    auto qa = make(a.name + ":in0"), qb = make(a.name + ":in1");
    if (qa || qb) a.add->attach_inputs(qa, qb);
    if (auto qo = make(a.name + ":out")) a.add->attach_output(qo);
  }
  if (!recs.empty())
    throw DataError("the saved cell state has a quantizer at " + recs.begin()->first +
                    ", which this model does not have (another architecture?)");
  model.eval();
}

}  // namespace qbench::exporter
