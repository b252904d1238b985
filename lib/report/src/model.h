#pragma once
// The report as data: resolved rows and the tables every format renders. Internal to report.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qbench/common/registry.h"
#include "qbench/report/report.h"

namespace qbench::report::detail {

using Json = nlohmann::ordered_json;  // keys in the documented order, not sorted
using store::CellResult;

extern const char* const kDash;       // em dash: a cell with no result (yet)
extern const char* const kPlusMinus;  // ±

/// One report row with the cell's axes resolved: from its result when it has one, else from the
/// planned cell's config_json. Empty strings / empty optionals are "unknown".
struct Row {
  int64_t run_id = 0;
  int position = 0;
  std::string cell_key;
  std::string dataset, arch, algorithm, profile, kind;
  std::optional<int> w_bits, a_bits;
  std::optional<uint64_t> seed;
  std::string status;  ///< ok | failed | pending
  std::string action;  ///< run | skipped | pending
  const CellResult* result = nullptr;
  std::optional<double> fp32_top1;  ///< stored, else looked up from the baseline row

  /// The FP32 baseline itself (the baseline evaluated under a noise is a noise row).
  bool is_baseline() const { return (kind == "fp32" || algorithm == "fp32") && noise.empty(); }
  std::optional<double> top1() const {
    if (result && result->status == "ok") return result->top1;
    return std::nullopt;
  }
  std::optional<double> delta() const {
    auto t = top1();
    if (!t || !fp32_top1) return std::nullopt;
    return *t - *fp32_top1;
  }
  /// An ok result's metric (NULL for failed / pending cells).
  std::optional<double> ok_metric(std::optional<double> CellResult::*field) const {
    if (result && result->status == "ok") return result->*field;
    return std::nullopt;
  }
  const std::string& bits() const { return bits_text; }

  // Set by resolve(): the axes that are not plain strings, as text, computed once per row.
  std::string bits_text;  ///< "w4a4", "fp32", "mixed:size_kb=100", "" when unknown
  bool mixed = false;     ///< a mixed-precision budget (bits_text is its label)
  std::string noise;      ///< the deployment noise it was evaluated under ("" for a plain cell)
  std::string seed_text;  ///< decimal, "" when unknown
};

/// Rows of the input in plan order, axes and FP32 references resolved (before filtering, so a
/// filtered-out baseline still gives its cells their delta).
std::vector<Row> resolve(const ReportInput& in);
/// The value of `axis` (one of axis_names()) for a row, as text ("" when unknown).
const std::string& axis_value(const Row& r, const std::string& axis);
/// The Row member that holds `axis`'s text (for loops over many rows); throws on an unknown axis.
const std::string Row::*axis_member(const std::string& axis);
/// Keeps the rows that pass every filter. FP32 baselines are the reference column: filters on
/// algorithm, profile, bits and kind keep the baselines of the cells they keep. A filter value
/// that matches no row of the run is a ConfigError (a typo should not give an empty report).
std::vector<Row> apply_filters(const std::vector<Row>& rows, const std::vector<Filter>& filters);

/// Mean ± sample standard deviation of a list of values.
struct Stat {
  std::vector<double> values;
  double mean() const;
  double std() const;  ///< n - 1 in the denominator; 0 for one value
  std::size_t n() const { return values.size(); }
  bool empty() const { return values.empty(); }
};

struct Column {
  std::string name;
  bool numeric = false;  ///< right-aligned in LaTeX/HTML
  bool wide = false;     ///< free text that wraps (error messages)
};
struct Cell {
  std::string text;      ///< as shown ("91.33 ± 0.14 (-0.27, n=2)", "—")
  Json value = nullptr;  ///< the numbers behind it, for JSON (null when none)
};
/// One table of the report. Every format renders the same tables.
struct Table {
  std::string id;     ///< the name of its entry in the table registry (table.h): accuracy, hardware, ...
  std::string title;  ///< "Academic track: fashion-mnist / academic"
  std::vector<std::pair<std::string, std::string>> group;  ///< axis -> value of this table's group
  std::string caption;                                     ///< what a cell holds
  std::vector<Column> columns;
  std::vector<std::vector<Cell>> rows;
  std::vector<std::string> notes;  ///< warnings a reader must see (mixed latency sources...)
  std::string empty_text;          ///< shown instead of the table when it has no rows
};

/// One aggregated point for the charts: arch x algorithm x profile x bits within a group.
struct Point {
  std::string dataset, arch, algorithm, profile, bits, group_label;
  int w_bits = 32, a_bits = 32;
  Stat top1, fp32_top1, latency_p50, deploy_top1;
  Stat size_kb, bops_ratio;  ///< from model_cost detail rows (quantized cells)
  bool mixed = false;        ///< a mixed-precision budget
  std::string latency_source;
  std::string deploy_engine;  ///< the engines of deploy_top1's values, ", "-joined ("" when none recorded)
};

struct Model {
  std::string title;
  std::vector<std::pair<std::string, std::string>> provenance;  ///< label -> text
  std::vector<Table> tables;
  std::vector<Point> points;  ///< for the charts
  std::vector<Row> rows;      ///< after filters
  int ok = 0, failed = 0, pending = 0, skipped = 0;
};

Model build_model(const ReportInput& in, const ReportOptions& opt);

/// Provenance lines whose value is shown as code (revision, file, hash, command line).
bool is_code_label(const std::string& label);

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

/// Formatting shared by the renderers.
std::string fixed(double v, int decimals);
std::string signed2(double v);
std::string one_line(const std::string& s);
std::string seed_text(const std::optional<uint64_t>& s);
Json json_string(const std::string& s);
std::string dump(const Json& j, int indent = -1);
/// The documented per-row fields in order (JSON rows, CSV lines): one list, so the two formats
/// never disagree. A plain list, not a JSON object: 100,000 rows x 35 keys must stay cheap.
using Fields = std::vector<std::pair<const char*, Json>>;
Fields row_fields(const Row& r);
Json run_json(const store::RunInfo& run);

}  // namespace qbench::report::detail
