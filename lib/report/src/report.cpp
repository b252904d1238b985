// The report's public entry points: the table and format registries, option parsing and loading
// a run.
#include "qbench/report/report.h"

#include <algorithm>
#include <cctype>

#include "model.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// "<option>: unknown <what> 'x' (did you mean: ...)" for the first of `names` not in `valid`.
void check_known(const char* option, const char* what, const std::vector<std::string>& names,
                 const std::vector<std::string>& valid) {
  for (const auto& n : names)
    if (std::find(valid.begin(), valid.end(), n) == valid.end())
      throw ConfigError(std::string(option) + ": unknown " + what + " '" + n + "'" + did_you_mean(n, valid));
}

}  // namespace

const std::vector<std::string>& axis_names() {
  static const std::vector<std::string> names{"dataset", "arch", "algorithm", "profile", "bits", "seed", "kind", "status"};
  return names;
}

Filter parse_filter(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw ConfigError("--filter: expected KEY=VALUE (KEY one of " + join(axis_names(), ", ") + "), got '" + text + "'");
  Filter f{lower(text.substr(0, eq)), text.substr(eq + 1)};
  const auto& names = axis_names();
  if (std::find(names.begin(), names.end(), f.key) == names.end())
    throw ConfigError("--filter " + text + ": unknown key '" + f.key + "'" + did_you_mean(f.key, names));
  return f;
}

void check_group_by(const std::vector<std::string>& axes) { check_known("--group-by", "axis", axes, axis_names()); }

const std::vector<TableInfo>& tables() {
  static const std::vector<TableInfo> list = [] {
    std::vector<TableInfo> out;
    for (const auto& [id, entry] : detail::table_registry().entries()) out.push_back({id, entry.help});
    return out;
  }();
  return list;
}

const std::vector<std::string>& table_ids() {
  static const std::vector<std::string> ids = detail::table_registry().names();
  return ids;
}

std::string table_help() {
  std::size_t width = 0;
  for (const auto& t : tables()) width = std::max(width, t.id.size());
  std::string out;
  for (const auto& t : tables()) {
    if (!out.empty()) out += '\n';
    out += "  " + t.id + std::string(width - t.id.size() + 2, ' ') + t.help;
  }
  return out;
}

void check_tables(const std::vector<std::string>& ids) { check_known("--table", "table", ids, table_ids()); }

// Generated from the qbench_registry_entry(report_formats ...) lines of lib/report/CMakeLists.txt:
// a format is its own file in src/formats/ plus that line.
void fill_report_formats(Registry<FormatInfo>& r);

const std::vector<FormatInfo>& formats() {
  static const std::vector<FormatInfo> list = [] {
    const Registry<FormatInfo> r("report format", fill_report_formats);
    std::vector<FormatInfo> out;
    std::vector<std::string> spellings;  // names and aliases: each must mean one format
    for (const auto& [name, f] : r.entries()) {
      spellings.push_back(name);
      for (const auto& a : f.aliases) {
        if (std::find(spellings.begin(), spellings.end(), a) != spellings.end() || r.contains(a))
          throw Error("report format alias '" + a + "' is already a format's name or alias");
        spellings.push_back(a);
      }
      out.push_back(f);
    }
    return out;
  }();
  return list;
}

const FormatInfo& find_format(const std::string& name) {
  const std::string n = lower(name);
  std::vector<std::string> names;
  for (const auto& f : formats()) {
    if (f.name == n || std::find(f.aliases.begin(), f.aliases.end(), n) != f.aliases.end()) return f;
    names.push_back(f.name);
    names.insert(names.end(), f.aliases.begin(), f.aliases.end());
  }
  throw ConfigError("unknown report format '" + name + "'" + did_you_mean(n, names));
}

std::string render(const std::string& format, const ReportInput& in, const ReportOptions& opt) {
  return find_format(format).render(in, opt);
}

std::string bits_label(int w_bits, int a_bits) {
  if (w_bits == 32 && a_bits == 32) return "fp32";
  return "w" + std::to_string(w_bits) + "a" + std::to_string(a_bits);
}

std::optional<int64_t> parse_run_id(const std::string& text) {
  if (text == "latest") return std::nullopt;
  try {
    std::size_t pos = 0;
    long long id = std::stoll(text, &pos);
    if (pos == text.size() && id > 0) return id;
  } catch (const std::exception&) {
  }
  throw ConfigError("--run: expected a run id or 'latest', got '" + text + "'");
}

std::vector<CellView> cell_views(const ReportInput& in) {
  std::vector<CellView> out;
  for (const auto& r : detail::resolve(in)) {
    CellView v;
    v.cell_key = r.cell_key;
    v.dataset = r.dataset;
    v.arch = r.arch;
    v.algorithm = r.algorithm;
    v.profile = r.profile;
    v.bits = r.bits();
    v.kind = r.kind;
    v.seed = r.seed;
    v.status = r.status;
    if (r.result) v.error = r.result->error;
    v.top1 = r.top1();
    v.fp32_top1 = r.fp32_top1;
    v.deploy_top1 = r.ok_metric(&store::CellResult::deploy_top1);
    out.push_back(std::move(v));
  }
  return out;
}

ReportInput load_input(const store::Store& store, std::optional<int64_t> run_id) {
  if (!run_id) {
    run_id = store.latest_run_id();
    if (!run_id) throw ConfigError("store '" + store.path() + "' has no runs yet");
  }
  auto run = store.run(*run_id);
  if (!run) throw ConfigError("store '" + store.path() + "' has no run " + std::to_string(*run_id));
  ReportInput in{*run, store.report_rows(*run_id), {}, {}, {}, {}, {}};
  for (const auto& r : in.rows) {
    if (!r.result) continue;
    if (r.result->deploy_agreement) in.deploy_layers[r.result->id] = store.details(r.result->id, "deploy_layers");
    if (r.result->status == "ok" && r.result->config_json.find("\"noise\"") != std::string::npos)
      in.noise[r.result->id] = store.details(r.result->id, "noise");
    // Every ok quantized cell: one whose every engine refused it has no deploy_* columns to tell.
    if (r.result->status == "ok" && r.result->kind != "fp32") {
      auto engines = store.details(r.result->id, "deploy_engines");
      if (!engines.empty()) in.deploy_engines[r.result->id] = std::move(engines);
      auto cost = store.details(r.result->id, "model_cost");
      if (!cost.empty()) in.model_cost[r.result->id] = std::move(cost);
      if (r.result->config_json.find("\"mixed\"") != std::string::npos)
        in.bit_allocation[r.result->id] = store.details(r.result->id, "bit_allocation");
    }
  }
  return in;
}

}  // namespace qbench::report
