// The report as data: rows resolved and filtered, then the registry's tables, the provenance and
// the chart points.
#include "model.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <set>
#include <tuple>
#include <unordered_map>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report::detail {

const char* const kDash = "\xe2\x80\x94";
const char* const kPlusMinus = "\xc2\xb1";

namespace {

std::optional<uint64_t> json_seed(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    char* end = nullptr;
    errno = 0;
    unsigned long long x = std::strtoull(s.c_str(), &end, 10);
    if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0])) && errno == 0 && *end == '\0')
      return static_cast<uint64_t>(x);
  }
  return std::nullopt;
}

/// " bn<k>" when the matrix's bn_fold axis (not the profile) set the cell's BN folding strategy,
/// so an ablation's cells stay apart in every table; "" otherwise.
std::string bn_fold_suffix(const std::string& config_json) {
  if (config_json.find("bn_fold_from") == std::string::npos) return "";
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("bn_fold_from", "") != "matrix") return "";
  auto it = j.find("bn_fold");
  if (it == j.end() || !it->is_number_integer()) return "";
  return " bn" + std::to_string(it->get<int>());
}

/// A mixed-precision cell's budget label ("mixed:size_kb=100"), "" for any other cell.
std::string mixed_label(const std::string& config_json) {
  if (config_json.find("\"mixed\"") == std::string::npos) return "";
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("mixed") || !j["mixed"].is_object()) return "";
  return j["mixed"].value("label", "");
}

/// The deployment noise a cell was evaluated under ("" for none).
std::string noise_of(const std::string& config_json) {
  if (config_json.find("\"noise\"") == std::string::npos) return "";
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("noise") || !j["noise"].is_string()) return "";
  return j["noise"].get<std::string>();
}

/// Axes of a cell that has no result yet, from the planned cell's configuration.
void fill_from_config(const std::string& config_json, Row& row) {
  if (config_json.empty()) return;
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  auto str = [&](const char* key, std::string& out) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  auto integer = [&](const char* key, std::optional<int>& out) {
    auto it = j.find(key);
    if (it != j.end() && it->is_number_integer()) out = it->get<int>();
  };
  str("dataset", row.dataset);
  // The runner's resolved configuration nests the dataset: {"dataset": {"name": ...}}.
  if (auto ds = j.find("dataset"); ds != j.end() && ds->is_object()) {
    if (auto n = ds->find("name"); n != ds->end() && n->is_string()) row.dataset = n->get<std::string>();
  }
  str("arch", row.arch);
  str("algorithm", row.algorithm);
  str("profile", row.profile);
  str("kind", row.kind);
  integer("w_bits", row.w_bits);
  integer("a_bits", row.a_bits);
  auto bits = j.find("bits");  // also accept a label ("w4a4", "fp32")
  if ((!row.w_bits || !row.a_bits) && bits != j.end() && bits->is_string()) {
    const std::string& b = bits->get_ref<const std::string&>();
    int w = 0, a = 0;
    char tail = 0;
    if (b == "fp32") {
      row.w_bits = row.a_bits = 32;
    } else if (std::sscanf(b.c_str(), "w%da%d%c", &w, &a, &tail) == 2) {
      row.w_bits = w;
      row.a_bits = a;
    }
  }
  if (auto it = j.find("seed"); it != j.end()) row.seed = json_seed(*it);
}

std::string opt_label(const std::string& s) { return s.empty() ? std::string("?") : s; }

}  // namespace

// ---------------------------------------------------------------------------------------------

double Stat::mean() const { return std::accumulate(values.begin(), values.end(), 0.0) / values.size(); }

double Stat::std() const {
  if (values.size() < 2) return 0.0;
  double m = mean(), ss = 0;
  for (double x : values) ss += (x - m) * (x - m);
  return std::sqrt(ss / (values.size() - 1));
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  // A value that rounds to zero prints without a sign.
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

std::string signed2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.2f", v);
  std::string s = buf;
  if (s == "-0.00") s = "+0.00";
  return s;
}

std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

std::string seed_text(const std::optional<uint64_t>& s) { return s ? std::to_string(*s) : std::string("?"); }

Json json_string(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

std::string dump(const Json& j, int indent) {
  // Error messages may carry bytes that are not UTF-8 (file names, library messages).
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

std::vector<Row> resolve(const ReportInput& in) {
  std::vector<Row> rows;
  rows.reserve(in.rows.size());
  for (const auto& rr : in.rows) {
    Row row;
    row.run_id = rr.plan.run_id;
    row.position = rr.plan.position;
    row.cell_key = rr.plan.cell_key;
    row.action = rr.plan.action;
    if (rr.result) {
      const auto& r = *rr.result;
      row.result = &r;
      row.dataset = r.dataset;
      row.arch = r.arch;
      row.algorithm = r.algorithm;
      row.profile = r.profile;
      row.kind = r.kind;
      row.w_bits = r.w_bits;
      row.a_bits = r.a_bits;
      row.seed = r.seed;
      row.status = r.status;
      row.fp32_top1 = r.fp32_top1;
    } else {
      row.status = "pending";
      fill_from_config(rr.plan.config_json, row);
    }
    if (row.w_bits && row.a_bits) row.bits_text = bits_label(*row.w_bits, *row.a_bits);
    if (std::string ml = mixed_label(rr.result ? rr.result->config_json : rr.plan.config_json); !ml.empty()) {
      row.bits_text = ml;
      row.mixed = true;
    }
    row.noise = noise_of(rr.result ? rr.result->config_json : rr.plan.config_json);
    if (row.seed) row.seed_text = std::to_string(*row.seed);
    row.profile += bn_fold_suffix(rr.result ? rr.result->config_json : rr.plan.config_json);
    rows.push_back(std::move(row));
  }
  // A result without a stored FP32 top-1 takes it from its baseline cell in the same report:
  // by baseline key, else the FP32 row of the same dataset, arch and seed.
  // Only baseline rows can be a baseline key's target, so only they are indexed.
  std::unordered_map<std::string, double> top1_by_key;
  std::map<std::tuple<std::string, std::string, std::optional<uint64_t>>, double> baseline_top1;
  for (const auto& row : rows) {
    auto t = row.top1();
    if (!t || !row.is_baseline()) continue;
    top1_by_key.emplace(row.cell_key, *t);
    baseline_top1.emplace(std::make_tuple(row.dataset, row.arch, row.seed), *t);
  }
  for (auto& row : rows) {
    if (row.fp32_top1 || !row.result) continue;
    if (row.is_baseline()) {
      row.fp32_top1 = row.top1();
      continue;
    }
    if (auto it = top1_by_key.find(row.result->baseline_key); it != top1_by_key.end()) {
      row.fp32_top1 = it->second;
    } else if (auto b = baseline_top1.find(std::make_tuple(row.dataset, row.arch, row.seed));
               b != baseline_top1.end()) {
      row.fp32_top1 = b->second;
    }
  }
  return rows;
}

const std::string Row::*axis_member(const std::string& axis) {
  if (axis == "dataset") return &Row::dataset;
  if (axis == "arch") return &Row::arch;
  if (axis == "algorithm") return &Row::algorithm;
  if (axis == "profile") return &Row::profile;
  if (axis == "bits") return &Row::bits_text;
  if (axis == "seed") return &Row::seed_text;
  if (axis == "kind") return &Row::kind;
  if (axis == "status") return &Row::status;
  throw ConfigError("unknown report axis '" + axis + "'" + did_you_mean(axis, axis_names()));
}

const std::string& axis_value(const Row& r, const std::string& axis) { return r.*axis_member(axis); }

std::vector<Row> apply_filters(const std::vector<Row>& rows, const std::vector<Filter>& filters) {
  if (filters.empty()) return rows;
  std::map<std::string, std::set<std::string>> wanted;  // key -> accepted values
  for (const auto& f : filters) {
    axis_value(Row{}, f.key);  // validates the key
    wanted[f.key].insert(f.value);
  }
  // A value no row has is almost always a typo: say so, with the values the run does have.
  for (const auto& [key, values] : wanted) {
    std::vector<std::string> present;
    for (const auto& r : rows) push_unique(present, axis_value(r, key));
    for (const auto& v : values)
      if (std::find(present.begin(), present.end(), v) == present.end())
        throw ConfigError("--filter " + key + "=" + v + ": no cell of this run has " + key + " '" + v + "'" +
                          did_you_mean(v, present));
  }
  auto passes = [&](const Row& r, bool shared_axes_only) {
    for (const auto& [key, values] : wanted) {
      if (shared_axes_only && (key == "algorithm" || key == "profile" || key == "bits" || key == "kind")) continue;
      if (!values.count(axis_value(r, key))) return false;
    }
    return true;
  };
  std::vector<Row> out;
  std::set<std::tuple<std::string, std::string, std::optional<uint64_t>>> referenced;
  for (const auto& r : rows)
    if (!r.is_baseline() && passes(r, false)) referenced.emplace(r.dataset, r.arch, r.seed);
  for (const auto& r : rows) {
    bool keep = passes(r, false);
    if (!keep && r.is_baseline())
      keep = passes(r, true) && referenced.count(std::make_tuple(r.dataset, r.arch, r.seed));
    if (keep) out.push_back(r);
  }
  return out;
}

Fields row_fields(const Row& r) {
  const CellResult* res = r.result;
  auto metric = [&](std::optional<double> CellResult::*field) {
    return res && (res->*field) ? Json(*(res->*field)) : Json(nullptr);
  };
  auto t = r.top1();
  auto d = r.delta();
  return Fields{
      {"run_id", r.run_id},
      {"cell_key", json_string(r.cell_key)},
      {"dataset", json_string(r.dataset)},
      {"arch", json_string(r.arch)},
      {"algorithm", json_string(r.algorithm)},
      {"profile", json_string(r.profile)},
      {"w_bits", r.w_bits ? Json(*r.w_bits) : Json(nullptr)},
      {"a_bits", r.a_bits ? Json(*r.a_bits) : Json(nullptr)},
      {"bits", json_string(r.bits())},
      {"seed", r.seed ? Json(*r.seed) : Json(nullptr)},
      {"kind", json_string(r.kind)},
      {"status", r.status},
      {"action", json_string(r.action)},
      {"top1", t ? Json(*t) : Json(nullptr)},
      {"top5", metric(&CellResult::top5)},
      {"loss", metric(&CellResult::loss)},
      {"fp32_top1", r.fp32_top1 ? Json(*r.fp32_top1) : Json(nullptr)},
      // Rounded to 1e-9 so that 91.11 - 91.23 prints as -0.12, not -0.12000000000000455.
      {"delta_top1", d ? Json(std::round(*d * 1e9) / 1e9) : Json(nullptr)},
      {"deploy_top1", metric(&CellResult::deploy_top1)},
      {"deploy_agreement", metric(&CellResult::deploy_agreement)},
      {"logit_cosine", metric(&CellResult::logit_cosine)},
      {"sqnr_db", metric(&CellResult::sqnr_db)},
      // The engine the four deploy_* numbers come from ("" / null when none is recorded).
      {"deploy_engine", res ? json_string(res->deploy_engine) : Json(nullptr)},
      {"latency_ms_p50", metric(&CellResult::latency_ms_p50)},
      {"latency_ms_p90", metric(&CellResult::latency_ms_p90)},
      {"latency_batch", res && res->latency_batch ? Json(*res->latency_batch) : Json(nullptr)},
      {"latency_source", res ? json_string(res->latency_source) : Json(nullptr)},
      {"quant_wall_s", metric(&CellResult::quant_wall_s)},
      {"eval_wall_s", metric(&CellResult::eval_wall_s)},
      {"wall_s", metric(&CellResult::wall_s)},
      {"eval_images", res ? Json(res->eval_images) : Json(nullptr)},
      {"threads", res ? Json(res->threads) : Json(nullptr)},
      {"error", res ? json_string(res->error) : Json(nullptr)},
      {"result_run_id", res ? Json(res->run_id) : Json(nullptr)},
      {"started_at", res ? json_string(res->started_at) : Json(nullptr)},
      {"finished_at", res ? json_string(res->finished_at) : Json(nullptr)},
  };
}

Json run_json(const store::RunInfo& run) {
  Json j;
  j["id"] = run.id;
  j["matrix_name"] = json_string(run.matrix_name);
  j["matrix_file"] = json_string(run.matrix_file);
  j["yaml_text"] = json_string(run.yaml_text);
  j["yaml_hash"] = json_string(run.yaml_hash);
  j["started_at"] = json_string(run.started_at);
  j["ended_at"] = json_string(run.ended_at);
  j["status"] = json_string(run.status);
  j["host"] = json_string(run.host);
  j["git_rev"] = json_string(run.git_rev);
  j["qbench_version"] = json_string(run.qbench_version);
  j["torch_version"] = json_string(run.torch_version);
  j["threads"] = run.threads;
  if (!run.device.empty() && run.device != "cpu") j["device"] = json_string(run.device);  // absent: the CPU
  j["command_line"] = json_string(run.command_line);
  // Embedded as an object, not as a string holding JSON; kept as text if it does not parse.
  auto env = Json::parse(run.environment_json, nullptr, /*allow_exceptions=*/false);
  j["environment"] = run.environment_json.empty() ? Json(nullptr)
                     : env.is_discarded()         ? Json(run.environment_json)
                                                  : env;
  return j;
}

bool is_code_label(const std::string& label) {
  return label == "git revision" || label == "matrix file" || label == "matrix sha256" || label == "command line";
}

// Generated from the qbench_registry_entry(report_tables ...) lines of lib/report/CMakeLists.txt:
// a table is its own file in src/tables/ plus that line.
void fill_report_tables(Registry<TableEntry>& r);

const Registry<TableEntry>& table_registry() {
  static const Registry<TableEntry> reg("report table", fill_report_tables);
  return reg;
}

Model build_model(const ReportInput& in, const ReportOptions& opt) {
  check_group_by(opt.group_by);
  check_tables(opt.tables);
  const auto all = resolve(in);
  Model m;
  m.rows = apply_filters(all, opt.filters);
  const auto& rows = m.rows;
  const auto& run = in.run;
  const auto& extra = opt.group_by;
  m.title = "qbench report: " + one_line(run.matrix_name);

  for (const auto& r : rows) {
    m.ok += r.status == "ok";
    m.failed += r.status == "failed";
    m.pending += r.status == "pending";
    m.skipped += r.action == "skipped";
  }
  auto& p = m.provenance;
  p.emplace_back("run id", std::to_string(run.id));
  p.emplace_back("started", run.started_at);
  p.emplace_back("ended", run.ended_at);
  p.emplace_back("status", run.status);
  p.emplace_back("host", run.host);
  p.emplace_back("git revision", run.git_rev);
  p.emplace_back("qbench version", run.qbench_version);
  p.emplace_back("LibTorch version", run.torch_version);
  p.emplace_back("threads", std::to_string(run.threads));
  if (!run.device.empty() && run.device != "cpu") p.emplace_back("device", run.device);  // absent: the CPU
  p.emplace_back("matrix file", run.matrix_file);
  p.emplace_back("matrix sha256", run.yaml_hash);
  p.emplace_back("command line", run.command_line);
  p.emplace_back("cells", std::to_string(rows.size()) + " planned: " + std::to_string(m.ok) + " ok, " +
                              std::to_string(m.failed) + " failed, " + std::to_string(m.pending) + " pending; " +
                              std::to_string(m.skipped) + " reused from earlier runs");
  if (!opt.filters.empty()) {
    std::vector<std::string> f;
    for (const auto& x : opt.filters) f.push_back(x.key + "=" + x.value);
    p.emplace_back("filters", join(f, ", ") + " (FP32 baselines of the kept cells stay as reference)");
  }
  if (!extra.empty()) p.emplace_back("grouped by", join(extra, ", "));

  // Baseline rows of the whole run (before filters) for the FP32 column's fallback.
  BaselineMap baselines;
  for (const auto& r : all)
    if (r.is_baseline()) baselines.emplace(std::make_tuple(r.dataset, r.arch, r.seed), &r);

  // The tables, in the registry's order (only those --table names). Noise rows go to the noise
  // table alone; every other table and the charts see the plain cells.
  std::vector<Row> plain, noisy;
  for (const auto& r : rows) (r.noise.empty() ? plain : noisy).push_back(r);
  const TableInput table_input{in, opt, plain, baselines, noisy};
  for (const auto& [id, entry] : table_registry().entries()) {
    if (!opt.tables.empty() && std::find(opt.tables.begin(), opt.tables.end(), id) == opt.tables.end()) continue;
    for (auto& t : entry.build(table_input)) {
      t.id = id;
      auto at = m.tables.end();
      if (!entry.beside.empty()) {
        auto it = std::find_if(m.tables.rbegin(), m.tables.rend(),
                               [&](const Table& x) { return x.id == entry.beside && x.group == t.group; });
        if (it != m.tables.rend()) at = it.base();
      }
      m.tables.insert(at, std::move(t));
    }
  }

  // Chart points: per (dataset, profile, group-by axes, arch, algorithm, bits, latency source).
  static const std::string kNoSource;
  auto source_of = [](const Row& r) -> const std::string& { return r.result ? r.result->latency_source : kNoSource; };
  const auto with_dataset = rows_where(plain, [](const Row& r) { return !r.dataset.empty(); });
  for (const auto& g : group_rows(with_dataset, [&](const Row& r, std::string& key) {
         for (const std::string* part : {&r.dataset, &r.profile, &r.arch, &r.algorithm, &r.bits_text, &source_of(r)})
           add_key(key, *part);
         for (const auto& a : extra) add_key(key, axis_value(r, a));
       })) {
    const Row& r = *g.first;
    Point pt;
    pt.dataset = r.dataset;
    pt.arch = opt_label(r.arch);
    pt.algorithm = opt_label(r.algorithm);
    pt.profile = opt_label(r.profile);
    pt.bits = opt_label(r.bits());
    pt.w_bits = r.w_bits.value_or(32);
    pt.a_bits = r.a_bits.value_or(32);
    pt.group_label = group_label(group_of(r, {}, extra), 0);
    pt.latency_source = source_of(r);
    pt.mixed = r.mixed;
    std::vector<std::string> engines;
    for (const Row* x : g.rows) {
      if (auto t = x->top1()) pt.top1.values.push_back(*t);
      if (x->fp32_top1 && x->top1()) pt.fp32_top1.values.push_back(*x->fp32_top1);
      if (auto l = x->ok_metric(&CellResult::latency_ms_p50)) pt.latency_p50.values.push_back(*l);
      if (x->result && x->result->status == "ok")
        if (auto c = in.model_cost.find(x->result->id); c != in.model_cost.end() && !c->second.empty()) {
          const auto& v = c->second.front().values;
          if (auto s = v.find("size_kb"); s != v.end()) pt.size_kb.values.push_back(s->second);
          if (auto b = v.find("bops_ratio"); b != v.end()) pt.bops_ratio.values.push_back(b->second);
        }
      if (auto d = x->ok_metric(&CellResult::deploy_top1)) {
        pt.deploy_top1.values.push_back(*d);
        if (!x->result->deploy_engine.empty()) push_unique(engines, x->result->deploy_engine);
      }
    }
    pt.deploy_engine = join(engines, ", ");
    m.points.push_back(std::move(pt));
  }
  return m;
}

}  // namespace qbench::report::detail
