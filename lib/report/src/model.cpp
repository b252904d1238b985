#include "model.h"

#include <algorithm>
#include <array>
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

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

// ---------------------------------------------------------------------------------------------
// Cell text

/// What the rows of one pivot cell hold.
struct CellStats {
  Stat top1;
  Stat delta;  ///< top-1 - FP32 top-1 of each ok seed with a known baseline
  int failed = 0;
  int pending = 0;
};

void add_to_stats(const Row& r, CellStats& s) {
  if (auto t = r.top1()) {
    s.top1.values.push_back(*t);
    if (auto d = r.delta()) s.delta.values.push_back(*d);
  } else if (r.status == "failed") {
    ++s.failed;
  } else if (r.status == "pending") {
    ++s.pending;
  }
}

/// Rounded to 1e-9 for JSON, so that a mean of 91.23 and 91.43 reads 91.33, not 91.33000000000001.
double round9(double v) { return std::round(v * 1e9) / 1e9; }

/// "91.23 (-0.12)", "91.23 ± 0.10 (-0.12, n=3)", "failed", "—".
Cell stats_cell(const CellStats& s, bool with_delta) {
  Cell c;
  if (s.top1.empty()) {
    c.text = s.failed ? "failed" : kDash;
    if (s.failed || s.pending) c.value = Json{{"failed", s.failed}, {"pending", s.pending}};
    return c;
  }
  c.text = fixed(s.top1.mean(), 2);
  std::vector<std::string> notes;
  if (s.top1.n() >= 2) c.text += std::string(" ") + kPlusMinus + " " + fixed(s.top1.std(), 2);
  if (with_delta && !s.delta.empty()) notes.push_back(signed2(s.delta.mean()));
  if (s.top1.n() >= 2) notes.push_back("n=" + std::to_string(s.top1.n()));
  if (s.failed) notes.push_back(std::to_string(s.failed) + " failed");
  if (s.pending) notes.push_back(std::to_string(s.pending) + " pending");
  if (!notes.empty()) c.text += " (" + join(notes, ", ") + ")";
  c.value = Json{{"mean", round9(s.top1.mean())}, {"std", s.top1.n() >= 2 ? Json(round9(s.top1.std())) : Json(nullptr)},
                 {"n", s.top1.n()}};
  if (with_delta) c.value["delta"] = s.delta.empty() ? Json(nullptr) : Json(round9(s.delta.mean()));
  c.value["failed"] = s.failed;
  c.value["pending"] = s.pending;
  return c;
}

/// "1.234" or "1.234 ± 0.010" (n >= 2); "—" when empty.
Cell stat_cell(const Stat& s, int decimals) {
  Cell c;
  if (s.empty()) {
    c.text = kDash;
    return c;
  }
  c.text = fixed(s.mean(), decimals);
  if (s.n() >= 2) c.text += std::string(" ") + kPlusMinus + " " + fixed(s.std(), decimals);
  c.value = Json{{"mean", round9(s.mean())}, {"std", s.n() >= 2 ? Json(round9(s.std())) : Json(nullptr)}, {"n", s.n()}};
  return c;
}

Cell text_cell(const std::string& s) { return Cell{s.empty() ? std::string(kDash) : one_line(s), json_string(s)}; }
Cell int_cell(long long v) { return Cell{std::to_string(v), Json(v)}; }
Cell num_cell(double v, int decimals) { return Cell{fixed(v, decimals), Json(round9(v))}; }

// ---------------------------------------------------------------------------------------------
// Groups

using Group = std::vector<std::pair<std::string, std::string>>;

/// The group of a row: the table's own axes, then the --group-by axes it does not already have.
Group group_of(const Row& r, const std::vector<std::string>& base, const std::vector<std::string>& extra) {
  Group g;
  for (const auto& a : base) g.emplace_back(a, axis_value(r, a));
  for (const auto& a : extra)
    if (std::find(base.begin(), base.end(), a) == base.end()) g.emplace_back(a, axis_value(r, a));
  return g;
}

std::string group_label(const Group& g, std::size_t n_base) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const std::string v = g[i].second.empty() ? "?" : one_line(g[i].second);
    parts.push_back(i < n_base ? v : g[i].first + "=" + v);
  }
  return join(parts, " / ");
}

/// Rows split by group, groups in first-appearance order.
template <class Pred>
std::vector<std::pair<Group, std::vector<const Row*>>> split(const std::vector<Row>& rows, const std::vector<std::string>& base,
                                                             const std::vector<std::string>& extra, Pred keep) {
  std::vector<std::pair<Group, std::vector<const Row*>>> out;
  std::vector<std::string> axes = base;
  for (const auto& a : extra)
    if (std::find(base.begin(), base.end(), a) == base.end()) axes.push_back(a);
  std::unordered_map<std::string, std::size_t> index;
  std::string k;
  for (const auto& r : rows) {
    if (!keep(r)) continue;
    k.clear();
    for (const auto& a : axes) (k += axis_value(r, a)) += '\x1f';
    auto [it, inserted] = index.emplace(k, out.size());
    if (inserted) out.emplace_back(group_of(r, base, extra), std::vector<const Row*>{});
    out[it->second].second.push_back(&r);
  }
  return out;
}

int kind_rank(const std::string& kind) {
  if (kind == "fp32") return 0;
  if (kind == "ptq") return 1;
  if (kind == "qat") return 2;
  return 3;
}

int source_rank(const std::string& s) {
  static const char* const order[] = {"measured-fp32",      "measured-fakequant",      "measured-int8", "modeled",
                                      "measured-fp32-cuda", "measured-fakequant-cuda"};
  constexpr int n = static_cast<int>(sizeof(order) / sizeof(order[0]));
  for (int i = 0; i < n; ++i)
    if (s == order[i]) return i;
  return n;
}

/// Bit-width columns: widest first (fp32, w8a8, w4a8, w4a4, ...), then unknown ones.
bool bits_before(const Row* a, const Row* b) {
  auto key = [](const Row* r) { return std::make_pair(-r->w_bits.value_or(-1), -r->a_bits.value_or(-1)); };
  return key(a) < key(b);
}

/// The FP32 column: one baseline value per seed among a table row's members (stored with the
/// cell, else the baseline row's own result, which may have failed).
CellStats fp32_stats(const std::vector<const Row*>& members,
                     const std::map<std::tuple<std::string, std::string, std::optional<uint64_t>>, const Row*>& baselines) {
  std::vector<std::optional<uint64_t>> seeds;
  for (const Row* r : members) push_unique(seeds, r->seed);
  CellStats fp32;
  for (const auto& seed : seeds) {
    std::optional<double> v;
    const Row* any = nullptr;
    for (const Row* r : members) {
      if (r->seed != seed) continue;
      any = r;
      if (r->fp32_top1 && !v) v = r->fp32_top1;
    }
    if (v) {
      fp32.top1.values.push_back(*v);
      continue;
    }
    auto b = baselines.find(std::make_tuple(any->dataset, any->arch, seed));
    if (b != baselines.end()) add_to_stats(*b->second, fp32);
  }
  return fp32;
}

using BaselineMap = std::map<std::tuple<std::string, std::string, std::optional<uint64_t>>, const Row*>;

/// Pivot: rows arch x algorithm, columns FP32 then the values of `column_axis`.
Table pivot(const std::string& id, const std::string& title, const Group& group, const std::vector<const Row*>& members,
            const std::string& column_axis, bool baselines_only, const BaselineMap& baselines) {
  Table t;
  t.id = id;
  t.title = title;
  t.group = group;
  t.caption = "Top-1 accuracy in percent (delta vs FP32 in points); mean " + std::string(kPlusMinus) +
              " sample std over seeds, with n when more than one seed.";
  // One pass: each member goes to its (arch, algorithm) row and its column, both in order of
  // first appearance (then bit widths widest first).
  std::vector<std::pair<std::string, std::string>> keys;
  std::unordered_map<std::string, std::size_t> key_index, col_index;
  std::vector<std::vector<const Row*>> by_key;
  std::vector<std::vector<std::pair<std::size_t, const Row*>>> by_key_col;  // (column, row)
  std::vector<std::string> cols;
  std::vector<const Row*> col_rep;  // a row per column, for ordering bit widths
  std::string k;
  for (const Row* r : members) {
    k.clear();
    (k += r->arch) += '\x1f';
    k += r->algorithm;
    auto [kit, knew] = key_index.emplace(k, keys.size());
    if (knew) {
      keys.emplace_back(r->arch, r->algorithm);
      by_key.emplace_back();
      by_key_col.emplace_back();
    }
    by_key[kit->second].push_back(r);
    if (baselines_only) continue;
    const std::string& c = axis_value(*r, column_axis);
    auto [cit, cnew] = col_index.emplace(c, cols.size());
    if (cnew) {
      cols.push_back(c);
      col_rep.push_back(r);
    }
    by_key_col[kit->second].emplace_back(cit->second, r);
  }
  std::vector<std::size_t> order(cols.size());
  std::iota(order.begin(), order.end(), 0);
  if (column_axis == "bits")
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return bits_before(col_rep[a], col_rep[b]); });
  t.columns = {{"arch"}, {"algorithm"}, {"FP32", true}};
  for (auto i : order) t.columns.push_back({cols[i].empty() ? "?" : cols[i], true});
  for (std::size_t ki = 0; ki < keys.size(); ++ki) {
    std::vector<Cell> cells{text_cell(keys[ki].first), text_cell(keys[ki].second),
                            stats_cell(fp32_stats(by_key[ki], baselines), false)};
    std::vector<CellStats> stats(cols.size());
    for (const auto& [ci, r] : by_key_col[ki]) add_to_stats(*r, stats[ci]);
    for (auto i : order) cells.push_back(stats_cell(stats[i], true));
    t.rows.push_back(std::move(cells));
  }
  return t;
}

std::string describe_source(const std::string& s) {
  if (s == "measured-fp32") return "measured-fp32: the FP32 model, timed";
  if (s == "measured-fakequant")
    return "measured-fakequant: the simulated (fake-quantized) model timed in float, not the speed of an integer "
           "deployment";
  if (s == "measured-int8") return "measured-int8: the model run and timed on an integer backend";
  if (s == "measured-fp32-cuda") return "measured-fp32-cuda: the FP32 model, timed on a CUDA GPU (not comparable with CPU times)";
  if (s == "measured-fakequant-cuda")
    return "measured-fakequant-cuda: the simulated (fake-quantized) model timed in float on a CUDA GPU, not the speed "
           "of an integer deployment";
  if (s == "modeled") return "modeled: estimated by a cost model, not measured";
  return s + ": unknown source";
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

const std::string& axis_value(const Row& r, const std::string& axis) {
  if (axis == "dataset") return r.dataset;
  if (axis == "arch") return r.arch;
  if (axis == "algorithm") return r.algorithm;
  if (axis == "profile") return r.profile;
  if (axis == "bits") return r.bits_text;
  if (axis == "seed") return r.seed_text;
  if (axis == "kind") return r.kind;
  if (axis == "status") return r.status;
  throw ConfigError("unknown report axis '" + axis + "'" + did_you_mean(axis, axis_names()));
}

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

  // Academic track: per (dataset, profile), rows arch x algorithm, columns bit widths. Baselines
  // are the FP32 column; they get a table of their own only when their dataset has no other.
  std::set<std::string> datasets_with_cells;
  for (const auto& r : rows)
    if (!r.dataset.empty() && !r.is_baseline()) datasets_with_cells.insert(r.dataset);
  const std::vector<std::string> acc_base{"dataset", "profile"};
  for (const auto& [g, members] : split(rows, acc_base, extra, [](const Row& r) { return !r.dataset.empty() && !r.is_baseline(); }))
    m.tables.push_back(pivot("accuracy", "Academic track: " + group_label(g, 2), g, members, "bits", false, baselines));
  for (const auto& [g, members] : split(rows, acc_base, extra, [&](const Row& r) {
         return !r.dataset.empty() && r.is_baseline() && !datasets_with_cells.count(r.dataset);
       }))
    m.tables.push_back(pivot("accuracy", "Academic track: " + group_label(g, 2), g, members, "bits", true, baselines));

  // Hardware track: per (dataset, bits), columns profile; only where a dataset has two or more
  // profiles (with one, it would repeat the academic track).
  std::map<std::string, std::set<std::string>> profiles_of;
  for (const auto& r : rows)
    if (!r.is_baseline() && !r.dataset.empty()) profiles_of[r.dataset].insert(r.profile);
  const std::vector<std::string> hw_base{"dataset", "bits"};
  for (const auto& [g, members] : split(rows, hw_base, extra, [&](const Row& r) {
         return !r.dataset.empty() && !r.is_baseline() && profiles_of[r.dataset].size() >= 2;
       })) {
    auto t = pivot("hardware", "Hardware track: " + group_label(g, 2), g, members, "profile", false, baselines);
    m.tables.push_back(std::move(t));
  }
  if (!datasets_with_cells.empty() &&
      std::none_of(profiles_of.begin(), profiles_of.end(), [](const auto& p) { return p.second.size() >= 2; })) {
    Table t;
    t.id = "hardware";
    t.title = "Hardware track";
    std::set<std::string> profiles;
    for (const auto& [dataset, ps] : profiles_of) profiles.insert(ps.begin(), ps.end());
    std::vector<std::string> names(profiles.begin(), profiles.end());
    t.empty_text = "The hardware track compares profiles side by side; this run has one profile per dataset (" +
                   join(names, ", ") + "), shown in the academic track above.";
    m.tables.push_back(std::move(t));
  }

  // Latency, with its source on every row; rows of one source together.
  const std::vector<std::string> ds_base{"dataset"};
  bool any_latency = false;
  for (const auto& [g, members] : split(rows, ds_base, extra, [](const Row& r) {
         return r.result && (r.result->latency_ms_p50 || r.result->latency_ms_p90);
       })) {
    any_latency = true;
    Table t;
    t.id = "latency";
    t.title = "Latency: " + group_label(g, 1);
    t.group = g;
    t.caption = "Forward-pass latency in milliseconds at the batch size shown; mean " + std::string(kPlusMinus) +
                " std over seeds. The source says what was timed.";
    t.columns = {{"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"batch", true}, {"p50 ms", true}, {"p90 ms", true},
                 {"n", true}, {"source"}};
    // Rows of one (source, arch, algorithm, profile, bits, batch), sources in canonical order.
    struct LatencyRow {
      int rank;
      const Row* first;
      Stat p50, p90;
    };
    std::vector<LatencyRow> lrows;
    std::unordered_map<std::string, std::size_t> index;
    std::vector<std::string> sources;
    std::string k;
    for (const Row* r : members) {
      const auto& res = *r->result;
      k.clear();
      for (const std::string* part : {&res.latency_source, &r->arch, &r->algorithm, &r->profile, &r->bits_text}) (k += *part) += '\x1f';
      k += res.latency_batch ? std::to_string(*res.latency_batch) : std::string("-");
      auto [it, inserted] = index.emplace(k, lrows.size());
      if (inserted) {
        lrows.push_back({source_rank(res.latency_source), r, {}, {}});
        push_unique(sources, res.latency_source);
      }
      auto& lr = lrows[it->second];
      if (res.latency_ms_p50) lr.p50.values.push_back(*res.latency_ms_p50);
      if (res.latency_ms_p90) lr.p90.values.push_back(*res.latency_ms_p90);
    }
    std::stable_sort(lrows.begin(), lrows.end(), [](const LatencyRow& a, const LatencyRow& b) { return a.rank < b.rank; });
    for (const auto& lr : lrows) {
      const Row& r = *lr.first;
      t.rows.push_back({text_cell(r.arch), text_cell(r.algorithm), text_cell(r.profile), text_cell(r.bits_text),
                        r.result->latency_batch ? int_cell(*r.result->latency_batch) : text_cell(""), stat_cell(lr.p50, 3),
                        stat_cell(lr.p90, 3), int_cell(static_cast<long long>(std::max(lr.p50.n(), lr.p90.n()))),
                        text_cell(r.result->latency_source)});
    }
    std::sort(sources.begin(), sources.end(), [](const std::string& a, const std::string& b) {
      return std::make_pair(source_rank(a), a) < std::make_pair(source_rank(b), b);
    });
    if (sources.size() > 1) {
      t.notes.push_back("This table mixes latency sources (" + join(sources, ", ") +
                        "): compare numbers only between rows of one source.");
    }
    for (const auto& s : sources) t.notes.push_back(describe_source(s.empty() ? "?" : s) + ".");
    m.tables.push_back(std::move(t));
  }
  if (!any_latency) {
    Table t;
    t.id = "latency";
    t.title = "Latency";
    t.empty_text = "No cell has a latency measurement.";
    m.tables.push_back(std::move(t));
  }

  // Simulated vs deployed, where a cell was also run on an integer backend.
  bool any_deploy = false;
  for (const auto& [g, members] : split(rows, ds_base, extra, [](const Row& r) {
         return r.ok_metric(&CellResult::deploy_top1) || r.ok_metric(&CellResult::deploy_agreement) ||
                r.ok_metric(&CellResult::logit_cosine) || r.ok_metric(&CellResult::sqnr_db);
       })) {
    any_deploy = true;
    Table t;
    t.id = "deploy";
    t.title = "Simulated vs deployed: " + group_label(g, 1);
    t.group = g;
    t.caption = "Top-1 in percent of the simulated (fake-quantized) model and of the same model deployed on an integer "
                "backend; gap = deployed - simulated; agreement = share of test images with the same predicted class "
                "(percent); logit cosine similarity and SQNR (dB) of the deployed logits against the simulated ones. "
                "Means over seeds.";
    t.columns = {{"arch"},           {"algorithm"},        {"profile"},        {"bits"},
                 {"simulated", true}, {"deployed", true},   {"gap", true},      {"agreement %", true},
                 {"logit cosine", true}, {"SQNR dB", true}, {"n", true}};
    std::vector<const Row*> keys;  // the first row of each (arch, algorithm, profile, bits)
    std::vector<std::array<Stat, 6>> stats;  // sim, deploy, gap, agreement, cosine, sqnr
    std::unordered_map<std::string, std::size_t> index;
    std::string key;
    for (const Row* r : members) {
      key.clear();
      for (const std::string* part : {&r->arch, &r->algorithm, &r->profile, &r->bits_text}) (key += *part) += '\x1f';
      auto [it, inserted] = index.emplace(key, keys.size());
      if (inserted) {
        keys.push_back(r);
        stats.emplace_back();
      }
      auto& s = stats[it->second];
      auto add = [](Stat& st, std::optional<double> v) {
        if (v) st.values.push_back(*v);
      };
      auto sim = r->top1(), dep = r->ok_metric(&CellResult::deploy_top1);
      add(s[0], sim);
      add(s[1], dep);
      if (sim && dep) s[2].values.push_back(*dep - *sim);
      add(s[3], r->ok_metric(&CellResult::deploy_agreement));
      add(s[4], r->ok_metric(&CellResult::logit_cosine));
      add(s[5], r->ok_metric(&CellResult::sqnr_db));
    }
    for (std::size_t ki = 0; ki < keys.size(); ++ki) {
      const Row& k = *keys[ki];
      const auto& s = stats[ki];
      auto mean_cell = [](const Stat& st, int d, bool sign) {
        if (st.empty()) return Cell{kDash, nullptr};
        return Cell{sign ? signed2(st.mean()) : fixed(st.mean(), d), Json(round9(st.mean()))};
      };
      std::size_t n = 0;
      for (const auto& st : s) n = std::max(n, st.n());
      t.rows.push_back({text_cell(k.arch), text_cell(k.algorithm), text_cell(k.profile), text_cell(k.bits_text),
                        mean_cell(s[0], 2, false), mean_cell(s[1], 2, false),
                        mean_cell(s[2], 2, true), mean_cell(s[3], 2, false), mean_cell(s[4], 4, false),
                        mean_cell(s[5], 1, false), int_cell(static_cast<long long>(n))});
    }
    m.tables.push_back(std::move(t));
  }
  // Where each deployed cell departs from its simulation: the first layer (in execution order)
  // whose deployed output differs anywhere, and the layer with the lowest output SQNR.
  {
    Table t;
    t.id = "deploy_layers";
    t.title = "Where deployment departs from simulation";
    t.caption = "Per deployed cell, from its per-layer rows (first test batch): the first layer whose integer output "
                "differs from the simulation's on any value (share of values differing, the op's own largest error "
                "in output steps when fed the simulation's input, the operator), and the layer with the lowest "
                "output SQNR (dB) with errors accumulated from earlier layers. Full rows: table cell_details.";
    t.columns = {{"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"seed", true}, {"agreement %", true},
                 {"first differing layer"}, {"differing %", true}, {"op error steps", true}, {"op"},
                 {"lowest-SQNR layer"}, {"SQNR dB", true}};
    for (const auto& r : rows) {
      if (!r.result) continue;
      auto it = in.deploy_layers.find(r.result->id);
      if (it == in.deploy_layers.end() || it->second.empty()) continue;
      auto value = [](const CellDetail& d, const char* k) -> std::optional<double> {
        auto v = d.values.find(k);
        if (v == d.values.end() || !std::isfinite(v->second)) return std::nullopt;
        return v->second;
      };
      const CellDetail* first = nullptr;
      const CellDetail* worst = nullptr;
      for (const auto& d : it->second) {
        if (!first && value(d, "mismatch_pct").value_or(0) > 0) first = &d;
        auto sq = value(d, "sqnr_db");
        if (sq && (!worst || *sq < *value(*worst, "sqnr_db"))) worst = &d;
      }
      auto opt_cell = [](std::optional<double> v, int dec) { return v ? num_cell(*v, dec) : Cell{kDash, nullptr}; };
      t.rows.push_back({text_cell(r.arch), text_cell(r.algorithm), text_cell(r.profile), text_cell(r.bits_text),
                        text_cell(r.seed_text), opt_cell(r.result->deploy_agreement, 2),
                        text_cell(first ? first->name : "none (bit-exact on this batch)"),
                        opt_cell(first ? value(*first, "mismatch_pct") : std::nullopt, 3),
                        opt_cell(first ? value(*first, "op_max_err_steps") : std::nullopt, 0),
                        text_cell(first ? first->text : ""), text_cell(worst ? worst->name : ""),
                        opt_cell(worst ? value(*worst, "sqnr_db") : std::nullopt, 1)});
    }
    if (!t.rows.empty()) m.tables.push_back(std::move(t));
  }
  if (!any_deploy) {
    Table t;
    t.id = "deploy";
    t.title = "Simulated vs deployed";
    t.empty_text = "No cell of this run was deployed to an integer backend, so there is no simulated-vs-deployed gap to show.";
    m.tables.push_back(std::move(t));
  }

  // Cost: wall time per cell by kind, arch and algorithm, then totals per kind (PTQ vs QAT).
  for (const auto& [g, members] : split(rows, ds_base, extra, [](const Row& r) { return r.result && r.result->wall_s; })) {
    Table t;
    t.id = "cost";
    t.title = "Cost: " + group_label(g, 1);
    t.group = g;
    t.caption = "Seconds per cell (mean " + std::string(kPlusMinus) +
                " std over its cells, failed ones included): train/calibrate = FP32 training, PTQ calibration or QAT "
                "fine-tuning; eval = the test set; wall = the whole cell.";
    t.columns = {{"kind"}, {"arch"}, {"algorithm"}, {"cells", true}, {"train/calibrate s", true}, {"eval s", true},
                 {"wall s", true}, {"total wall s", true}};
    struct CostRow {
      int rank;
      const Row* first;
      std::array<Stat, 3> s;  // train/calibrate, eval, wall
    };
    std::vector<CostRow> crows;
    std::unordered_map<std::string, std::size_t> index;
    std::map<std::pair<int, std::string>, Stat> by_kind;
    double total = 0;
    std::string key;
    for (const Row* r : members) {
      const auto& res = *r->result;
      key.clear();
      for (const std::string* part : {&r->kind, &r->arch, &r->algorithm}) (key += *part) += '\x1f';
      auto [it, inserted] = index.emplace(key, crows.size());
      if (inserted) crows.push_back({kind_rank(r->kind), r, {}});
      auto& s = crows[it->second].s;
      if (res.quant_wall_s) s[0].values.push_back(*res.quant_wall_s);
      if (res.eval_wall_s) s[1].values.push_back(*res.eval_wall_s);
      s[2].values.push_back(*res.wall_s);
      by_kind[{kind_rank(r->kind), r->kind}].values.push_back(*res.wall_s);
      total += *res.wall_s;
    }
    std::stable_sort(crows.begin(), crows.end(), [](const CostRow& a, const CostRow& b) { return a.rank < b.rank; });
    for (const auto& c : crows) {
      const auto& s = c.s;
      double sum = std::accumulate(s[2].values.begin(), s[2].values.end(), 0.0);
      t.rows.push_back({text_cell(c.first->kind), text_cell(c.first->arch), text_cell(c.first->algorithm),
                        int_cell(static_cast<long long>(s[2].n())), stat_cell(s[0], 1), stat_cell(s[1], 1),
                        stat_cell(s[2], 1), num_cell(sum, 1)});
    }
    m.tables.push_back(std::move(t));

    Table k;
    k.id = "cost_by_kind";
    k.title = "Cost by kind: " + group_label(g, 1);
    k.group = g;
    k.caption = "Wall time of the cells of each kind (fp32 baselines, PTQ, QAT).";
    k.columns = {{"kind"}, {"cells", true}, {"wall s per cell", true}, {"total wall s", true}, {"share %", true}};
    for (const auto& [kk, st] : by_kind) {
      double sum = std::accumulate(st.values.begin(), st.values.end(), 0.0);
      k.rows.push_back({text_cell(kk.second), int_cell(static_cast<long long>(st.n())), stat_cell(st, 1), num_cell(sum, 1),
                        num_cell(total > 0 ? 100.0 * sum / total : 0.0, 1)});
    }
    m.tables.push_back(std::move(k));
  }

  // Failures with their errors.
  if (m.failed) {
    Table t;
    t.id = "failures";
    t.title = "Failed cells";
    t.caption = "Every failed cell with its error message.";
    t.columns = {{"cell"}, {"dataset"}, {"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"seed", true}, {"error", false, true}};
    for (const auto& r : rows) {
      if (r.status != "failed") continue;
      t.rows.push_back({text_cell(r.cell_key.substr(0, 12)), text_cell(r.dataset), text_cell(r.arch), text_cell(r.algorithm),
                        text_cell(r.profile), text_cell(r.bits()),
                        r.seed ? Cell{std::to_string(*r.seed), Json(*r.seed)} : text_cell(""),
                        text_cell(r.result ? r.result->error : std::string())});
    }
    m.tables.push_back(std::move(t));
  }

  if (!opt.tables.empty())
    m.tables.erase(std::remove_if(m.tables.begin(), m.tables.end(),
                                  [&](const Table& t) {
                                    return std::find(opt.tables.begin(), opt.tables.end(), t.id) == opt.tables.end();
                                  }),
                   m.tables.end());

  // Chart points: per (dataset, profile, group-by axes, arch, algorithm, bits, latency source).
  std::unordered_map<std::string, std::size_t> point_index;
  std::string key;
  static const std::string kNoSource;
  for (const auto& r : rows) {
    if (r.dataset.empty()) continue;
    const std::string& source = r.result ? r.result->latency_source : kNoSource;
    key.clear();
    for (const std::string* part : {&r.dataset, &r.profile, &r.arch, &r.algorithm, &r.bits_text, &source}) (key += *part) += '\x1f';
    for (const auto& a : extra) (key += axis_value(r, a)) += '\x1f';
    auto [it, inserted] = point_index.emplace(key, m.points.size());
    if (inserted) {
      const std::string label = group_label(group_of(r, {}, extra), 0);
      Point pt;
      pt.dataset = r.dataset;
      pt.arch = opt_label(r.arch);
      pt.algorithm = opt_label(r.algorithm);
      pt.profile = opt_label(r.profile);
      pt.bits = opt_label(r.bits());
      pt.w_bits = r.w_bits.value_or(32);
      pt.a_bits = r.a_bits.value_or(32);
      pt.group_label = label;
      pt.latency_source = source;
      m.points.push_back(pt);
    }
    Point& pt = m.points[it->second];
    if (auto t = r.top1()) pt.top1.values.push_back(*t);
    if (r.fp32_top1 && r.top1()) pt.fp32_top1.values.push_back(*r.fp32_top1);
    if (auto l = r.ok_metric(&CellResult::latency_ms_p50)) pt.latency_p50.values.push_back(*l);
    if (auto d = r.ok_metric(&CellResult::deploy_top1)) pt.deploy_top1.values.push_back(*d);
  }
  return m;
}

}  // namespace qbench::report::detail
