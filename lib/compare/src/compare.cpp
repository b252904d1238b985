#include "qbench/compare/compare.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::compare {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kBaselineVersion = 1;
const char* const kFormatTag = "qbench-baseline";

std::string fmt(double v, const char* f = "%.2f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  std::string s = buf;
  // A value that rounds to zero never prints as "-0.00".
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s[0] = f[1] == '+' ? '+' : ' ';
  if (s[0] == ' ') s.erase(0, 1);
  return s;
}

/// Rounded to 1e-6 so that the file holds 91.23, not 91.22999999999999.
double round6(double v) { return std::round(v * 1e6) / 1e6; }

std::string type_name(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_string()) return "\"" + j.get<std::string>() + "\"";
  return j.dump();
}

[[noreturn]] void bad(const std::string& file, const std::string& path, const std::string& what) {
  throw ConfigError(file + ": " + (path.empty() ? "" : path + ": ") + what);
}

void check_keys(const Json& obj, const std::vector<std::string>& allowed, const std::string& file, const std::string& path) {
  for (const auto& item : obj.items())
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end())
      bad(file, path.empty() ? item.key() : path + "." + item.key(),
          "unknown key" + did_you_mean(item.key(), allowed));
}

double number(const Json& obj, const char* key, const std::string& file, const std::string& path, bool non_negative) {
  const std::string p = path.empty() ? key : path + "." + key;
  auto it = obj.find(key);
  if (it == obj.end()) bad(file, p, "missing");
  if (!it->is_number()) bad(file, p, "expected a number, got " + type_name(*it));
  double v = it->get<double>();
  if (!std::isfinite(v) || (non_negative && v < 0)) bad(file, p, std::string("expected a ") + (non_negative ? "non-negative " : "") + "finite number, got " + it->dump());
  return v;
}

std::string text(const Json& obj, const char* key, const std::string& file, const std::string& path, bool required) {
  const std::string p = path.empty() ? key : path + "." + key;
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) bad(file, p, "missing");
    return "";
  }
  if (!it->is_string()) bad(file, p, "expected a string, got " + type_name(*it));
  return it->get<std::string>();
}

std::string first_line(const std::string& s, std::size_t max = 160) {
  std::string out = s.substr(0, s.find('\n'));
  if (out.size() > max) out = out.substr(0, max - 3) + "...";
  return out;
}

}  // namespace

std::string cell_identity(const report::CellView& c) {
  auto or_q = [](const std::string& s) { return s.empty() ? std::string("?") : s; };
  return or_q(c.dataset) + "/" + or_q(c.arch) + "/" + or_q(c.algorithm) + "/" + or_q(c.profile) + "/" + or_q(c.bits) +
         "/seed" + (c.seed ? std::to_string(*c.seed) : std::string("?"));
}

std::map<std::string, std::string> numeric_environment(const std::string& environment_json) {
  std::map<std::string, std::string> out;
  Json j = Json::parse(environment_json.empty() ? "{}" : environment_json, nullptr, false);
  if (!j.is_object()) return out;
  for (const char* k : {"torch_version", "cpu", "cpu_isa", "blas", "onednn_max_cpu_isa"}) {
    auto it = j.find(k);
    if (it == j.end()) continue;
    out[k] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

Baseline baseline_from_run(const report::ReportInput& run, std::optional<double> tolerance, bool allow_incomplete,
                           const Baseline* previous) {
  Baseline b;
  b.matrix = run.run.matrix_name;
  b.environment = numeric_environment(run.run.environment_json);
  b.source_run = "run " + std::to_string(run.run.id) + ", git " + (run.run.git_rev.empty() ? "?" : run.run.git_rev) +
                 ", host " + (run.run.host.empty() ? "?" : run.run.host) + ", " + run.run.started_at;
  if (tolerance) {
    if (!std::isfinite(*tolerance) || *tolerance < 0)
      throw ConfigError("--tolerance: expected a non-negative number of points, got " + fmt(*tolerance));
    b.tolerance = *tolerance;
  } else if (previous) {
    b.tolerance = previous->tolerance;
  }
  std::map<std::string, std::optional<double>> kept;
  if (previous)
    for (const auto& c : previous->cells) kept[c.cell] = c.tolerance;

  std::vector<std::string> incomplete;
  std::set<std::string> seen;
  for (const auto& c : report::cell_views(run)) {
    const std::string id = cell_identity(c);
    if (c.status != "ok" || !c.top1) {
      incomplete.push_back(id + " (" + c.status + ")");
      continue;
    }
    if (!seen.insert(id).second)
      throw ConfigError("run " + std::to_string(run.run.id) + " has two cells named " + id +
                        "; a baseline needs one cell per identity");
    BaselineCell bc;
    bc.cell = id;
    bc.key = c.cell_key.substr(0, 12);
    bc.top1 = round6(*c.top1);
    if (auto it = kept.find(id); it != kept.end()) bc.tolerance = it->second;
    b.cells.push_back(bc);
  }
  if (!incomplete.empty() && !allow_incomplete)
    throw ConfigError("run " + std::to_string(run.run.id) + " has " + std::to_string(incomplete.size()) +
                      " cell(s) that did not finish ok: " + join(incomplete, ", ") +
                      "; a baseline records finished cells (pass --allow-incomplete to leave them out)");
  if (b.cells.empty()) throw ConfigError("run " + std::to_string(run.run.id) + " has no finished cell to record");
  return b;
}

std::string to_json(const Baseline& b) {
  Json head;
  head["format"] = kFormatTag;
  head["version"] = kBaselineVersion;
  head["matrix"] = b.matrix;
  head["source"] = b.source_run;
  head["metric"] = "top1";
  head["tolerance"] = b.tolerance;
  if (!b.environment.empty()) head["environment"] = b.environment;
  std::string out = "{\n";
  for (const auto& item : head.items()) out += "  " + Json(item.key()).dump() + ": " + item.value().dump() + ",\n";
  out += "  \"cells\": [\n";
  for (std::size_t i = 0; i < b.cells.size(); ++i) {
    const auto& c = b.cells[i];
    Json j;
    j["cell"] = c.cell;
    j["top1"] = c.top1;
    if (c.tolerance) j["tolerance"] = *c.tolerance;
    j["key"] = c.key;
    out += "    " + j.dump() + (i + 1 < b.cells.size() ? ",\n" : "\n");
  }
  out += "  ]\n}\n";
  return out;
}

Baseline parse_baseline(const std::string& content, const std::string& file) {
  Json j;
  try {
    j = Json::parse(content);
  } catch (const Json::parse_error& e) {
    bad(file, "", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(file, "", "expected a JSON object at the top level, got " + std::string(j.type_name()));
  check_keys(j, {"format", "version", "matrix", "source", "metric", "tolerance", "environment", "cells"}, file, "");
  if (text(j, "format", file, "", true) != kFormatTag)
    bad(file, "format", "expected \"" + std::string(kFormatTag) + "\", got " + type_name(j["format"]));
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kBaselineVersion)
    bad(file, "version", "expected " + std::to_string(kBaselineVersion) + " (this qbench's baseline version), got " +
                             (j.contains("version") ? type_name(j["version"]) : std::string("nothing")));
  if (j.contains("metric") && (!j["metric"].is_string() || j["metric"] != "top1"))
    bad(file, "metric", "only \"top1\" is supported, got " + type_name(j["metric"]));
  Baseline b;
  b.matrix = text(j, "matrix", file, "", false);
  b.source_run = text(j, "source", file, "", false);
  b.tolerance = number(j, "tolerance", file, "", true);
  if (j.contains("environment")) {
    const auto& e = j["environment"];
    if (!e.is_object()) bad(file, "environment", "expected an object of strings, got " + type_name(e));
    for (const auto& item : e.items()) {
      if (!item.value().is_string())
        bad(file, "environment." + item.key(), "expected a string, got " + type_name(item.value()));
      b.environment[item.key()] = item.value().get<std::string>();
    }
  }
  auto cells = j.find("cells");
  if (cells == j.end()) bad(file, "cells", "missing");
  if (!cells->is_array()) bad(file, "cells", "expected a list, got " + type_name(*cells));
  std::set<std::string> seen;
  for (std::size_t i = 0; i < cells->size(); ++i) {
    const auto& c = (*cells)[i];
    const std::string path = "cells[" + std::to_string(i) + "]";
    if (!c.is_object()) bad(file, path, "expected an object, got " + type_name(c));
    check_keys(c, {"cell", "top1", "tolerance", "key"}, file, path);
    BaselineCell bc;
    bc.cell = text(c, "cell", file, path, true);
    if (std::count(bc.cell.begin(), bc.cell.end(), '/') != 5 || bc.cell.find("/seed") == std::string::npos)
      bad(file, path + ".cell", "expected dataset/arch/algorithm/profile/bits/seedN, got \"" + bc.cell + "\"");
    if (!seen.insert(bc.cell).second) bad(file, path + ".cell", "duplicate cell \"" + bc.cell + "\"");
    bc.top1 = number(c, "top1", file, path, true);
    if (c.contains("tolerance")) bc.tolerance = number(c, "tolerance", file, path, true);
    bc.key = text(c, "key", file, path, false);
    b.cells.push_back(bc);
  }
  return b;
}

Baseline load_baseline(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ConfigError(path + ": cannot read the baseline file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_baseline(ss.str(), path);
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Ok: return "ok";
    case Verdict::Improved: return "improved";
    case Verdict::Regressed: return "REGRESSED";
    case Verdict::Failed: return "FAILED";
    case Verdict::Missing: return "MISSING";
    case Verdict::New: return "new";
  }
  return "?";
}

int Comparison::count(Verdict v) const {
  return static_cast<int>(std::count_if(cells.begin(), cells.end(), [&](const CellComparison& c) { return c.verdict == v; }));
}

bool Comparison::passed() const {
  return count(Verdict::Regressed) == 0 && count(Verdict::Failed) == 0 && count(Verdict::Missing) == 0;
}

Comparison compare_run(const Baseline& baseline, const std::string& baseline_file, const report::ReportInput& run) {
  Comparison out;
  out.baseline_file = baseline_file;
  out.baseline_source = baseline.source_run;
  out.current_run = "run " + std::to_string(run.run.id) + " (" + run.run.matrix_name + "), git " +
                    (run.run.git_rev.empty() ? "?" : run.run.git_rev);
  if (!baseline.matrix.empty() && baseline.matrix != run.run.matrix_name)
    out.warning = "the baseline was written from matrix '" + baseline.matrix + "' but run " + std::to_string(run.run.id) +
                  " is matrix '" + run.run.matrix_name + "'";
  // A library update or another CPU moves low-bit cells without any commit: say so beside the
  // verdicts (which stay what the numbers say).
  std::vector<std::string> env_diff;
  const auto now = numeric_environment(run.run.environment_json);
  for (const auto& [k, v] : baseline.environment) {
    auto it = now.find(k);
    const std::string cur = it == now.end() ? "(not recorded)" : it->second;
    if (cur != v) env_diff.push_back(k + " " + v + " -> " + cur);
  }
  if (!env_diff.empty())
    out.warning += std::string(out.warning.empty() ? "" : "; ") +
                   "the environment differs from the baseline's (" + join(env_diff, ", ") +
                   "): top-1 can move with it alone, most at low bit widths";
  std::map<std::string, report::CellView> current;
  std::vector<std::string> order;
  for (auto& c : report::cell_views(run)) {
    std::string id = cell_identity(c);
    if (current.count(id)) {
      // Two planned cells with one identity (e.g. a resumed matrix): the finished one counts.
      if (current[id].status == "ok" || c.status != "ok") continue;
    } else {
      order.push_back(id);
    }
    current[id] = std::move(c);
  }
  std::set<std::string> in_baseline;
  for (const auto& bc : baseline.cells) {
    in_baseline.insert(bc.cell);
    CellComparison cc;
    cc.cell = bc.cell;
    cc.baseline = bc.top1;
    cc.tolerance = bc.tolerance.value_or(baseline.tolerance);
    auto it = current.find(bc.cell);
    if (it == current.end()) {
      cc.verdict = Verdict::Missing;
      cc.note = "not in run " + std::to_string(run.run.id);
    } else if (it->second.status == "failed") {
      cc.verdict = Verdict::Failed;
      cc.note = "error: " + first_line(it->second.error.empty() ? std::string("(no message)") : it->second.error);
    } else if (!it->second.top1) {
      cc.verdict = Verdict::Missing;
      cc.note = it->second.status + " in run " + std::to_string(run.run.id) + " (never finished)";
    } else {
      cc.current = it->second.top1;
      const double delta = *cc.current - *cc.baseline;
      // A hair of slack so that a drop of exactly the tolerance, printed to 2 decimals, passes.
      if (-delta > *cc.tolerance + 1e-9) cc.verdict = Verdict::Regressed;
      else if (delta > *cc.tolerance + 1e-9) cc.verdict = Verdict::Improved;
      if (!bc.key.empty() && it->second.cell_key.compare(0, bc.key.size(), bc.key) != 0)
        cc.note = "configuration changed (key " + it->second.cell_key.substr(0, 12) + ", was " + bc.key + ")";
      if (cc.verdict == Verdict::Improved)
        cc.note += std::string(cc.note.empty() ? "" : "; ") + "better than the baseline by more than its tolerance";
    }
    out.cells.push_back(std::move(cc));
  }
  for (const auto& id : order) {
    if (in_baseline.count(id)) continue;
    const auto& c = current[id];
    CellComparison cc;
    cc.cell = id;
    cc.verdict = Verdict::New;
    cc.current = c.top1;
    cc.note = c.status == "ok" ? "not in the baseline" : "not in the baseline (" + c.status + ")";
    out.cells.push_back(std::move(cc));
  }
  return out;
}

std::string render_text(const Comparison& c) {
  std::size_t width = 4;
  for (const auto& cell : c.cells) width = std::max(width, cell.cell.size());
  auto opt = [](const std::optional<double>& v) { return v ? fmt(*v) : std::string("-"); };
  std::string out = "baseline: " + c.baseline_file + (c.baseline_source.empty() ? "" : " (" + c.baseline_source + ")") +
                    "\ncurrent:  " + c.current_run + "\n" + (c.warning.empty() ? "" : "warning:  " + c.warning + "\n") + "\n";
  char line[1024];
  std::snprintf(line, sizeof line, "%-9s  %-*s  %8s  %8s  %7s  %6s  %s\n", "status", static_cast<int>(width), "cell",
                "baseline", "current", "delta", "tol", "note");
  out += line;
  for (const auto& cell : c.cells) {
    std::string delta = cell.baseline && cell.current ? fmt(*cell.current - *cell.baseline, "%+.2f") : "-";
    std::string row;
    std::snprintf(line, sizeof line, "%-9s  %-*s  %8s  %8s  %7s  %6s  ", verdict_name(cell.verdict),
                  static_cast<int>(width), cell.cell.c_str(), opt(cell.baseline).c_str(), opt(cell.current).c_str(),
                  delta.c_str(), opt(cell.tolerance).c_str());
    row = line;
    row += cell.note;
    while (!row.empty() && row.back() == ' ') row.pop_back();
    out += row + "\n";
  }
  out += "\n" + std::to_string(c.cells.size()) + " cells: " + std::to_string(c.count(Verdict::Ok)) + " ok, " +
         std::to_string(c.count(Verdict::Improved)) + " improved, " + std::to_string(c.count(Verdict::Regressed)) +
         " regressed, " + std::to_string(c.count(Verdict::Failed)) + " failed, " + std::to_string(c.count(Verdict::Missing)) +
         " missing, " + std::to_string(c.count(Verdict::New)) + " new: " + (c.passed() ? "PASS" : "FAIL") + "\n";
  return out;
}

std::string render_json(const Comparison& c) {
  Json j;
  j["passed"] = c.passed();
  j["baseline"] = c.baseline_file;
  j["baseline_source"] = c.baseline_source;
  j["current"] = c.current_run;
  j["warning"] = c.warning.empty() ? Json(nullptr) : Json(c.warning);
  Json counts;
  for (auto v : {Verdict::Ok, Verdict::Improved, Verdict::Regressed, Verdict::Failed, Verdict::Missing, Verdict::New}) {
    std::string name = verdict_name(v);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    counts[name] = c.count(v);
  }
  j["counts"] = counts;
  j["cells"] = Json::array();
  auto opt = [](const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); };
  for (const auto& cell : c.cells) {
    std::string name = verdict_name(cell.verdict);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    j["cells"].push_back(Json{{"cell", cell.cell},
                              {"status", name},
                              {"baseline", opt(cell.baseline)},
                              {"current", opt(cell.current)},
                              {"delta", cell.baseline && cell.current ? Json(round6(*cell.current - *cell.baseline)) : Json(nullptr)},
                              {"tolerance", opt(cell.tolerance)},
                              {"note", cell.note}});
  }
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace qbench::compare
