#include "qbench/report/report.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using store::CellResult;
using store::ReportRow;
using Json = nlohmann::ordered_json;  // keys in the documented order, not sorted

namespace {

constexpr int kJsonSchemaVersion = 1;
const char* const kDash = "\xe2\x80\x94";  // em dash: a cell with no result (yet)
const char* const kPlusMinus = "\xc2\xb1";

/// One report row with the cell's axes resolved: from its result when it has one, else from the
/// planned cell's config_json. Empty strings / empty optionals are "unknown".
struct Row {
  int64_t run_id = 0;
  std::string cell_key;
  std::string dataset, arch, algorithm, profile, kind;
  std::optional<int> w_bits, a_bits;
  std::optional<uint64_t> seed;
  std::string status;  ///< ok | failed | pending
  std::string action;  ///< run | skipped | pending
  const CellResult* result = nullptr;
  std::optional<double> fp32_top1;  ///< stored, else looked up from the baseline row

  bool is_baseline() const { return kind == "fp32" || algorithm == "fp32"; }
  std::optional<double> top1() const {
    if (result && result->status == "ok") return result->top1;
    return std::nullopt;
  }
  std::optional<double> delta() const {
    auto t = top1();
    if (!t || !fp32_top1) return std::nullopt;
    return *t - *fp32_top1;
  }
  std::string bits() const { return w_bits && a_bits ? bits_label(*w_bits, *a_bits) : std::string(); }
};

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

std::vector<Row> resolve(const ReportInput& in) {
  std::vector<Row> rows;
  rows.reserve(in.rows.size());
  for (const auto& rr : in.rows) {
    Row row;
    row.run_id = rr.plan.run_id;
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
    rows.push_back(std::move(row));
  }
  // A result without a stored FP32 top-1 takes it from its baseline cell in the same report:
  // by baseline key, else the FP32 row of the same dataset, arch and seed.
  std::map<std::string, double> top1_by_key;
  std::map<std::tuple<std::string, std::string, std::optional<uint64_t>>, double> baseline_top1;
  for (const auto& row : rows) {
    auto t = row.top1();
    if (!t) continue;
    top1_by_key.emplace(row.cell_key, *t);
    if (row.is_baseline()) baseline_top1.emplace(std::make_tuple(row.dataset, row.arch, row.seed), *t);
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

// ---------------------------------------------------------------------------------------------
// Number and text formatting

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

/// "+0.12" / "-0.12"; a delta that rounds to zero is "+0.00", never "-0.00".
std::string signed2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.2f", v);
  std::string s = buf;
  if (s == "-0.00") s = "+0.00";
  return s;
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }

/// Sample standard deviation (n - 1 in the denominator): seeds are a sample of all seeds.
double sample_std(const std::vector<double>& v) {
  double m = mean(v), ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / (v.size() - 1));
}

/// One line of text inside a markdown table cell.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out.empty() ? kDash : out;
}

std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

/// `text` as an inline code span, fenced with more backticks than it contains in a row.
std::string code(const std::string& text) {
  if (text.empty()) return kDash;
  std::size_t run = 0, longest = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  std::string fence(longest + 1, '`');
  std::string body = one_line(text);
  if (body.front() == '`' || body.back() == '`') body = " " + body + " ";
  return fence + body + fence;
}

std::string or_dash(const std::string& s) { return s.empty() ? std::string(kDash) : one_line(s); }

std::string seed_text(const std::optional<uint64_t>& s) { return s ? std::to_string(*s) : std::string("?"); }

// ---------------------------------------------------------------------------------------------
// Markdown

/// What the rows of one pivot cell hold.
struct CellStats {
  std::vector<double> values;  ///< top-1 of each ok seed
  std::vector<double> deltas;  ///< top-1 - FP32 top-1 of each ok seed with a known baseline
  int failed = 0;
  int pending = 0;
};

/// "91.23 (-0.12)", "91.23 ± 0.10 (-0.12, n=3)", "failed", "—".
std::string format_stats(const CellStats& s, bool with_delta) {
  if (s.values.empty()) return s.failed ? "failed" : kDash;
  std::string text = fixed(mean(s.values), 2);
  std::vector<std::string> notes;
  if (s.values.size() >= 2) text += std::string(" ") + kPlusMinus + " " + fixed(sample_std(s.values), 2);
  if (with_delta && !s.deltas.empty()) notes.push_back(signed2(mean(s.deltas)));
  if (s.values.size() >= 2) notes.push_back("n=" + std::to_string(s.values.size()));
  if (s.failed) notes.push_back(std::to_string(s.failed) + " failed");
  if (s.pending) notes.push_back(std::to_string(s.pending) + " pending");
  if (!notes.empty()) text += " (" + join(notes, ", ") + ")";
  return text;
}

void add_to_stats(const Row& r, CellStats& s) {
  if (auto t = r.top1()) {
    s.values.push_back(*t);
    if (auto d = r.delta()) s.deltas.push_back(*d);
  } else if (r.status == "failed") {
    ++s.failed;
  } else if (r.status == "pending") {
    ++s.pending;
  }
}

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

void table_header(std::string& out, const std::vector<std::string>& cols) {
  out += "|";
  for (const auto& c : cols) out += " " + c + " |";
  out += "\n|";
  for (std::size_t i = 0; i < cols.size(); ++i) out += "---|";
  out += "\n";
}

void table_row(std::string& out, const std::vector<std::string>& cells) {
  out += "|";
  for (const auto& c : cells) out += " " + c + " |";
  out += "\n";
}

/// One (dataset, profile) section: rows arch x algorithm, columns FP32 then bit widths.
void pivot_section(std::string& out, const std::vector<Row>& rows, const std::string& dataset,
                   const std::string& profile, bool baselines_only) {
  using Key = std::pair<std::string, std::string>;  // (arch, algorithm)
  std::vector<Key> keys;
  std::vector<std::string> bit_cols;
  std::map<Key, std::vector<const Row*>> members;
  for (const auto& r : rows) {
    if (r.dataset != dataset || r.profile != profile || r.is_baseline() != baselines_only) continue;
    Key k{r.arch, r.algorithm};
    push_unique(keys, k);
    if (!baselines_only) push_unique(bit_cols, r.bits());
    members[k].push_back(&r);
  }
  // Baseline rows of this dataset, by (arch, seed), for the FP32 column.
  std::map<std::pair<std::string, std::optional<uint64_t>>, const Row*> baseline;
  for (const auto& r : rows)
    if (r.is_baseline() && r.dataset == dataset) baseline.emplace(std::make_pair(r.arch, r.seed), &r);

  out += "## " + one_line(dataset) + " / " + one_line(profile) + "\n\n";
  std::vector<std::string> cols{"arch", "algorithm", "FP32"};
  cols.insert(cols.end(), bit_cols.begin(), bit_cols.end());
  for (std::size_t i = 3; i < cols.size(); ++i) cols[i] = md_cell(cols[i].empty() ? "?" : cols[i]);
  table_header(out, cols);
  for (const auto& k : keys) {
    const auto& m = members[k];
    // FP32 column: one baseline value per seed of this row (stored with the cell, else the
    // baseline row's own result).
    std::vector<std::optional<uint64_t>> seeds;
    for (const Row* r : m) push_unique(seeds, r->seed);
    CellStats fp32;
    for (const auto& seed : seeds) {
      std::optional<double> v;
      for (const Row* r : m)
        if (r->seed == seed && r->fp32_top1 && !v) v = r->fp32_top1;
      auto b = baseline.find(std::make_pair(k.first, seed));
      if (!v && b != baseline.end()) {
        add_to_stats(*b->second, fp32);
        continue;
      }
      if (v) fp32.values.push_back(*v);
    }
    std::vector<std::string> cells{md_cell(k.first), md_cell(k.second), format_stats(fp32, false)};
    for (const auto& bits : bit_cols) {
      CellStats s;
      for (const Row* r : m)
        if (r->bits() == bits) add_to_stats(*r, s);
      cells.push_back(format_stats(s, true));
    }
    table_row(out, cells);
  }
  out += "\n";
}

std::string opt_fixed(const std::optional<double>& v, int decimals) {
  return v ? fixed(*v, decimals) : std::string(kDash);
}

Json json_string(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }
template <class T>
Json json_opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json row_json(const Row& r) {
  const CellResult* res = r.result;
  auto metric = [&](std::optional<double> CellResult::*field) {
    return res ? json_opt(res->*field) : Json(nullptr);
  };
  Json j;
  j["run_id"] = r.run_id;
  j["cell_key"] = json_string(r.cell_key);
  j["dataset"] = json_string(r.dataset);
  j["arch"] = json_string(r.arch);
  j["algorithm"] = json_string(r.algorithm);
  j["profile"] = json_string(r.profile);
  j["w_bits"] = json_opt(r.w_bits);
  j["a_bits"] = json_opt(r.a_bits);
  j["bits"] = json_string(r.bits());
  j["seed"] = json_opt(r.seed);
  j["kind"] = json_string(r.kind);
  j["status"] = r.status;
  j["action"] = json_string(r.action);
  j["top1"] = json_opt(r.top1());
  j["top5"] = metric(&CellResult::top5);
  j["loss"] = metric(&CellResult::loss);
  j["fp32_top1"] = json_opt(r.fp32_top1);
  // Rounded to 1e-9 so that 91.11 - 91.23 prints as -0.12, not -0.12000000000000455.
  auto d = r.delta();
  j["delta_top1"] = d ? Json(std::round(*d * 1e9) / 1e9) : Json(nullptr);
  j["latency_ms_p50"] = metric(&CellResult::latency_ms_p50);
  j["latency_ms_p90"] = metric(&CellResult::latency_ms_p90);
  j["latency_batch"] = res ? json_opt(res->latency_batch) : Json(nullptr);
  j["latency_source"] = res ? json_string(res->latency_source) : Json(nullptr);
  j["quant_wall_s"] = metric(&CellResult::quant_wall_s);
  j["eval_wall_s"] = metric(&CellResult::eval_wall_s);
  j["wall_s"] = metric(&CellResult::wall_s);
  j["eval_images"] = res ? Json(res->eval_images) : Json(nullptr);
  j["threads"] = res ? Json(res->threads) : Json(nullptr);
  j["error"] = res ? json_string(res->error) : Json(nullptr);
  j["result_run_id"] = res ? Json(res->run_id) : Json(nullptr);
  j["started_at"] = res ? json_string(res->started_at) : Json(nullptr);
  j["finished_at"] = res ? json_string(res->finished_at) : Json(nullptr);
  return j;
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
  j["command_line"] = json_string(run.command_line);
  // Embedded as an object, not as a string holding JSON; kept as text if it does not parse.
  auto env = Json::parse(run.environment_json, nullptr, /*allow_exceptions=*/false);
  j["environment"] = run.environment_json.empty() ? Json(nullptr)
                     : env.is_discarded()         ? Json(run.environment_json)
                                                  : env;
  return j;
}

std::string dump(const Json& j, int indent = -1) {
  // Error messages may carry bytes that are not UTF-8 (file names, library messages).
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

/// RFC 4180: quote a field holding a comma, quote, CR or LF, and double its quotes.
std::string csv_field(const Json& v) {
  if (v.is_null()) return "";
  if (!v.is_string()) return dump(v);
  std::string s = v.get<std::string>();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string bits_label(int w_bits, int a_bits) {
  if (w_bits == 32 && a_bits == 32) return "fp32";
  return "w" + std::to_string(w_bits) + "a" + std::to_string(a_bits);
}

Format parse_format(const std::string& name) {
  const std::string n = lower(name);
  if (n == "markdown" || n == "md") return Format::Markdown;
  if (n == "csv") return Format::Csv;
  if (n == "json") return Format::Json;
  throw ConfigError("unknown report format '" + name + "'" +
                    did_you_mean(n, {"markdown", "md", "csv", "json"}));
}

std::string render_markdown(const ReportInput& in) {
  const auto rows = resolve(in);
  const auto& run = in.run;
  std::string out = "# qbench report: " + one_line(run.matrix_name) + "\n\n";

  int ok = 0, failed = 0, pending = 0, skipped = 0;
  for (const auto& r : rows) {
    ok += r.status == "ok";
    failed += r.status == "failed";
    pending += r.status == "pending";
    skipped += r.action == "skipped";
  }
  out += "- run id: " + std::to_string(run.id) + "\n";
  out += "- started: " + or_dash(run.started_at) + "\n";
  out += "- ended: " + or_dash(run.ended_at) + "\n";
  out += "- status: " + or_dash(run.status) + "\n";
  out += "- host: " + or_dash(run.host) + "\n";
  out += "- git revision: " + code(run.git_rev) + "\n";
  out += "- qbench version: " + or_dash(run.qbench_version) + "\n";
  out += "- LibTorch version: " + or_dash(run.torch_version) + "\n";
  out += "- threads: " + std::to_string(run.threads) + "\n";
  out += "- matrix file: " + code(run.matrix_file) + " (sha256 " + code(run.yaml_hash) + ")\n";
  out += "- command line: " + code(run.command_line) + "\n";
  out += "- cells: " + std::to_string(rows.size()) + " planned: " + std::to_string(ok) + " ok, " +
         std::to_string(failed) + " failed, " + std::to_string(pending) + " pending; " +
         std::to_string(skipped) + " reused from earlier runs\n\n";

  // Sections in first-appearance order. Baseline rows feed the FP32 column of every section of
  // their dataset; they get a section of their own only when their dataset has no other.
  std::vector<std::pair<std::string, std::string>> sections;
  std::set<std::string> datasets_with_section;
  for (const auto& r : rows) {
    if (r.dataset.empty() || r.is_baseline()) continue;
    push_unique(sections, std::make_pair(r.dataset, r.profile));
    datasets_with_section.insert(r.dataset);
  }
  for (const auto& [dataset, profile] : sections) pivot_section(out, rows, dataset, profile, false);
  std::vector<std::pair<std::string, std::string>> baseline_sections;
  for (const auto& r : rows)
    if (!r.dataset.empty() && r.is_baseline() && !datasets_with_section.count(r.dataset))
      push_unique(baseline_sections, std::make_pair(r.dataset, r.profile));
  for (const auto& [dataset, profile] : baseline_sections) pivot_section(out, rows, dataset, profile, true);

  out += "## Latency\n\n";
  bool any_latency = false;
  for (const auto& r : rows) {
    if (!r.result || (!r.result->latency_ms_p50 && !r.result->latency_ms_p90)) continue;
    if (!any_latency) {
      table_header(out, {"arch", "algorithm", "profile", "bits", "seed", "batch", "p50 ms", "p90 ms", "source"});
      any_latency = true;
    }
    const auto& res = *r.result;
    table_row(out, {md_cell(r.arch), md_cell(r.algorithm), md_cell(r.profile), md_cell(r.bits()),
                    seed_text(r.seed), res.latency_batch ? std::to_string(*res.latency_batch) : kDash,
                    opt_fixed(res.latency_ms_p50, 3), opt_fixed(res.latency_ms_p90, 3),
                    md_cell(res.latency_source)});
  }
  if (!any_latency) out += "No cell has a latency measurement.\n";

  if (failed) {
    out += "\n## Failed cells\n\n";
    for (const auto& r : rows) {
      if (r.status != "failed") continue;
      out += "- `" + r.cell_key.substr(0, 12) + "` " + one_line(r.arch) + " / " + one_line(r.algorithm) + " / " +
             one_line(r.profile) + " / " + r.bits() + " / seed " + seed_text(r.seed) + ": " +
             or_dash(r.result ? r.result->error : std::string()) + "\n";
    }
  }
  return out;
}

std::string render_csv(const ReportInput& in) {
  const auto rows = resolve(in);
  std::string out;
  // The header comes from the same object as each line, so CSV and JSON never disagree.
  Json header_source = row_json(Row{});
  std::vector<std::string> names;
  for (const auto& item : header_source.items()) names.push_back(item.key());
  out += join(names, ",") + "\n";
  for (const auto& r : rows) {
    Json j = row_json(r);
    std::vector<std::string> fields;
    for (const auto& item : j.items()) fields.push_back(csv_field(item.value()));
    out += join(fields, ",") + "\n";
  }
  return out;
}

std::string render_json(const ReportInput& in) {
  const auto rows = resolve(in);
  Json j;
  j["schema_version"] = kJsonSchemaVersion;
  j["run"] = run_json(in.run);
  j["rows"] = Json::array();
  for (const auto& r : rows) j["rows"].push_back(row_json(r));
  return dump(j, 2) + "\n";
}

std::string render(Format f, const ReportInput& in) {
  switch (f) {
    case Format::Markdown:
      return render_markdown(in);
    case Format::Csv:
      return render_csv(in);
    case Format::Json:
      return render_json(in);
  }
  return render_markdown(in);
}

ReportInput load_input(const store::Store& store, std::optional<int64_t> run_id) {
  if (!run_id) {
    run_id = store.latest_run_id();
    if (!run_id) throw ConfigError("store '" + store.path() + "' has no runs yet");
  }
  auto run = store.run(*run_id);
  if (!run) throw ConfigError("store '" + store.path() + "' has no run " + std::to_string(*run_id));
  return ReportInput{*run, store.report_rows(*run_id)};
}

}  // namespace qbench::report
