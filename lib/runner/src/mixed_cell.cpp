// Mixed-precision cells (issue 19): the bit allocation a `mixed` budget gets, before the
// algorithm attaches its quantizers. Sensitivities and the Pareto fronts are computed once per
// baseline, profile and settings in a run and shared by every budget and algorithm.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"
#include "qbench/data/dataset.h"
#include "qbench/mixed/allocate.h"
#include "qbench/mixed/search.h"
#include "qbench/mixed/sensitivity.h"
#include "session.h"

namespace qbench::runner::detail {

namespace {
std::map<std::string, double> cost_values(const mixed::Cost& c) {
  return {{"size_kb", c.size_kb},       {"bops", c.bops},           {"bops_ratio", c.bops_ratio},
          {"avg_w_bits", c.avg_w_bits}, {"avg_a_bits", c.avg_a_bits}, {"sensitivity", c.sensitivity},
          {"latency_ms", c.latency_ms}};
}
nlohmann::json to_json(const mixed::Sensitivity& s) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : s.layers)
    layers.push_back({{"name", l.name}, {"w_sens", l.w_sens}, {"a_sens", l.a_sens}, {"trace", l.trace},
                      {"trace_stderr", l.trace_stderr}, {"params", l.params}, {"act_elems", l.act_elems},
                      {"macs", l.macs}, {"a_group", l.a_group}});
  return {{"layers", layers}, {"probes_used", s.probes_used}, {"seconds", s.seconds}};
}

mixed::Sensitivity from_json(const nlohmann::json& j) {
  mixed::Sensitivity s;
  for (const auto& l : j.at("layers")) {
    mixed::LayerSensitivity ls;
    ls.name = l.at("name").get<std::string>();
    ls.w_sens = l.at("w_sens").get<std::vector<double>>();
    ls.a_sens = l.at("a_sens").get<std::vector<double>>();
    ls.trace = l.at("trace").get<double>();
    ls.trace_stderr = l.at("trace_stderr").get<double>();
    ls.params = l.at("params").get<int64_t>();
    ls.act_elems = l.at("act_elems").get<int64_t>();
    ls.macs = l.at("macs").get<int64_t>();
    ls.a_group = l.at("a_group").get<int>();
    s.layers.push_back(std::move(ls));
  }
  s.probes_used = j.at("probes_used").get<int>();
  s.seconds = j.at("seconds").get<double>();
  return s;
}
}  // namespace

const Session::MixedProblem& Session::mixed_problem(CellRun& run) {
  const config::Cell& cell = run.cell;
  nlohmann::json settings = cell.resolved.at("mixed");
  settings.erase("budget");
  settings.erase("label");
  const std::string key = cell.baseline_key + "|" + cell.profile + "|" + settings.dump();
  if (auto it = mixed_.find(key); it != mixed_.end()) return it->second;
  const config::MixedPrecisionRecipe& r = m_.mixed_precision;
  MixedProblem p;
  // On disk beside the baselines, named by what determines them (the baseline, the profile's
  // content and the settings): a cell run alone, on another machine or as a cluster task, reuses
  // them. An unreadable file is measured again and rewritten.
  const nlohmann::json profile_json = cell.resolved.value("profile_sha256", nlohmann::json(cell.profile));
  const std::filesystem::path file = std::filesystem::path(opt_.cache_dir) / "mixed" /
                                     (sha256_hex(key + "|" + profile_json.dump()) + ".json");
  bool cached = false;
  if (std::ifstream in{file}) {
    try {
      std::stringstream ss;
      ss << in.rdbuf();
      auto j = nlohmann::json::parse(ss.str());
      if (j.at("key") == key) {
        p.sensitivity = from_json(j.at("sensitivity"));
        p.from_cache = cached = true;
      }
    } catch (const std::exception& e) {
      log_warning("mixed precision: ignoring unreadable sensitivities " + file.string() + " (" + e.what() + ")");
    }
  }
  if (!cached) {
    report("mixed precision: " + r.sensitivity + " sensitivities");
    const data::Batch calib = data::load_all(
        *data::seeded_subset(train_split(cell.seed), r.images, data::derive_seed(cell.seed, "mixed-precision")));
    mixed::SensitivityOptions opt;
    opt.measure = r.sensitivity;
    opt.w_bits = r.w_candidates;
    opt.a_bits = r.a_candidates;
    opt.probes = r.probes;
    opt.tolerance = r.tolerance;
    opt.seed = data::derive_seed(cell.seed, "hutchinson");
    opt.batch_size = std::min<int64_t>(m_.ptq.calib_batch_size, 128);
    p.sensitivity = mixed::measure_sensitivity(*run.model, *run.profile, calib.images, calib.labels, opt);
    std::filesystem::create_directories(file.parent_path());
    atomic_write_file(file.string(), nlohmann::json{{"key", key}, {"sensitivity", to_json(p.sensitivity)}}.dump());
  } else {
    // The layer sizes the search needs come from a forward pass the measurement would have made.
    (void)mixed::layer_structure(*run.model, at::zeros({1, ds_shape_->first.channels, ds_shape_->first.height,
                                                         ds_shape_->first.width}),
                                 r.w_candidates.size(), r.a_candidates.size());
  }
  p.layers = mixed::layer_choices(*run.model, *run.profile, p.sensitivity, r.w_candidates, r.a_candidates,
                                  m_.latency.batch_size);
  const auto t0 = std::chrono::steady_clock::now();
  p.size_front = mixed::pareto_front(p.layers, "size_kb", 12);
  p.bops_front = mixed::pareto_front(p.layers, "bops_ratio", 12);
  p.front_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("mixed precision: " + r.sensitivity + " sensitivities of " + std::to_string(p.layers.size()) +
           " layers " + (cached ? "read from " + file.string() + " (measured in " : "in ") +
           std::to_string(p.sensitivity.seconds) + " s" +
           (r.sensitivity == "hessian" ? ", " + std::to_string(p.sensitivity.probes_used) + " probes" : "") +
           (cached ? ")" : ""));
  return mixed_.emplace(key, std::move(p)).first->second;
}

void Session::allocate_bits(CellRun& run) {
  const MixedProblem& p = mixed_problem(run);
  const mixed::Budget budget = mixed::budget_from(run.cell.bits.mixed);
  const auto t0 = std::chrono::steady_clock::now();
  const mixed::Allocation a = mixed::solve(p.layers, budget);
  const double search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.model->set_bit_allocation(mixed::to_layer_bits(p.layers, a));
  auto& details = run.row.details;
  for (std::size_t k = 0; k < p.layers.size(); ++k) {
    const auto& l = p.layers[k];
    const auto& s = p.sensitivity.layers[k];
    const int wi = static_cast<int>(std::find(l.w_bits.begin(), l.w_bits.end(), a.w_bits[k]) - l.w_bits.begin());
    const int ai = static_cast<int>(std::find(l.a_bits.begin(), l.a_bits.end(), a.a_bits[k]) - l.a_bits.begin());
    std::map<std::string, double> v = {{"w_bits", a.w_bits[k]},
                                       {"a_bits", a.a_bits[k]},
                                       {"w_sensitivity", l.w_sens[wi]},
                                       {"a_sensitivity", l.a_sens[ai]},
                                       {"params", static_cast<double>(l.params)},
                                       {"macs", static_cast<double>(l.macs)},
                                       {"bops", static_cast<double>(l.macs) * a.w_bits[k] * a.a_bits[k]},
                                       {"fixed", l.w_bits.size() == 1 ? 1.0 : 0.0}};
    if (run.cell.resolved.at("mixed").at("sensitivity") == "hessian") {
      v["trace"] = s.trace;
      v["trace_stderr"] = s.trace_stderr;
    }
    std::string text;
    for (std::size_t i = 0; i < l.w_bits.size(); ++i)
      text += (i ? " " : "w") + std::to_string(l.w_bits[i]) + ":" + std::to_string(l.w_sens[i]);
    details.push_back({"bit_allocation", l.name, v, text});
  }
  std::map<std::string, double> achieved = cost_values(a.cost);
  for (const auto& [k, v] : run.cell.bits.mixed) achieved["budget_" + k] = v;
  achieved["sensitivity_s"] = p.sensitivity.seconds;
  achieved["search_s"] = search_s;
  achieved["front_s"] = p.front_seconds;
  achieved["probes"] = p.sensitivity.probes_used;
  achieved["sensitivity_cached"] = p.from_cache ? 1 : 0;
  details.push_back({"mixed_budget", run.cell.bits.label(), achieved,
                     "achieved cost of the allocation (sensitivities computed once per baseline, profile and settings; "
                     "their seconds are those of that one computation)"});
  int i = 0;
  for (const auto* front : {&p.size_front, &p.bops_front}) {
    const std::string section = front == &p.size_front ? "pareto_size" : "pareto_bops";
    for (const auto& pt : *front) {
      std::map<std::string, double> v = cost_values(pt.allocation.cost);
      v["budget"] = pt.budget;
      details.push_back({section, std::to_string(i++), v, ""});
    }
    i = 0;
  }
}

}  // namespace qbench::runner::detail
