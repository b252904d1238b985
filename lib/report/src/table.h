#pragma once
// What a report table's file sees: the table registry, the rows it builds from, the grouping
// every table does and the cells it fills. Internal to report.
//
// A table is one file in src/tables/ that defines `void register_<file>(Registry<TableEntry>&)`
// and one `qbench_registry_entry(report_tables src/tables/<file>.cpp)` line in
// lib/report/CMakeLists.txt; the order of those lines is the order of the report.
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model.h"
#include "qbench/common/registry.h"

namespace qbench::report::detail {

/// FP32 baseline rows of the whole run (before --filter) by (dataset, arch, seed): the FP32
/// column's fallback when a cell has no stored FP32 top-1.
using BaselineMap = std::map<std::tuple<std::string, std::string, std::optional<uint64_t>>, const Row*>;

/// What every table is built from.
struct TableInput {
  const ReportInput& input;      ///< the run as loaded (e.g. its deploy_layers detail rows)
  const ReportOptions& options;  ///< --group-by, --filter, ...
  const std::vector<Row>& rows;  ///< after --filter, in plan order, without the noise rows
  const BaselineMap& baselines;
  /// The rows evaluated under a deployment noise (issue 20), after --filter: only the noise table
  /// reads them, so no other table mixes a noisy evaluation into a plain cell's.
  const std::vector<Row>& noise_rows;
};

/// Builds a table's tables: one per group, or one with `empty_text` saying why there is none,
/// or nothing. The model sets each table's id to the entry's name.
using TableBuilder = std::vector<Table> (*)(const TableInput&);

struct TableEntry {
  std::string help;  ///< one line for `--table`'s help (tables(), table_help())
  TableBuilder build;
  /// Optional: the id of an earlier table; each of this entry's tables then goes right after
  /// that table's table of the same group (cost by kind beside the cost of its dataset).
  std::string beside;
};

/// The tables in report order, from the qbench_registry_entry(report_tables ...) lines.
const Registry<TableEntry>& table_registry();

// ---------------------------------------------------------------------------------------------
// Grouping: one loop for every table.

using Group = std::vector<std::pair<std::string, std::string>>;  ///< axis -> value

struct RowGroup {
  const Row* first = nullptr;    ///< the group's first row (its axis values name the group)
  std::vector<const Row*> rows;  ///< the group's rows, in input order
};

/// Appends one part of a grouping key (ended by a unit separator, so ("a", "bc") != ("ab", "c")).
inline void add_key(std::string& key, const std::string& part) { (key += part) += '\x1f'; }

/// `rows` split by a key, groups in first-seen order, each group's rows in input order.
/// `key(row, out)` appends the row's key to `out` (with add_key).
template <class KeyFn>
std::vector<RowGroup> group_rows(const std::vector<const Row*>& rows, KeyFn key) {
  std::vector<RowGroup> out;
  std::unordered_map<std::string, std::size_t> index;
  std::string k;
  for (const Row* r : rows) {
    k.clear();
    key(*r, k);
    auto [it, inserted] = index.emplace(k, out.size());
    if (inserted) out.push_back({r, {}});
    out[it->second].rows.push_back(r);
  }
  return out;
}
/// `rows` split by the values of these axes (axis_names()), in first-seen order.
std::vector<RowGroup> group_rows(const std::vector<const Row*>& rows, const std::vector<std::string>& axes);

/// The rows that pass `keep`, in order.
template <class Pred>
std::vector<const Row*> rows_where(const std::vector<Row>& rows, Pred keep) {
  std::vector<const Row*> out;
  for (const auto& r : rows)
    if (keep(r)) out.push_back(&r);
  return out;
}

/// The group of a row: the table's own axes, then the --group-by axes it does not already have.
Group group_of(const Row& r, const std::vector<std::string>& own, const std::vector<std::string>& group_by);
/// "fashion-mnist / academic / seed=0": the own axes' values, then axis=value for the others.
std::string group_label(const Group& g, std::size_t n_own);

/// The rows of one table: those that pass the table's filter, split by the table's own axes plus
/// the --group-by axes (table_groups).
struct TableGroup {
  Group group;
  std::size_t n_own = 0;  ///< the table's own axes come first in `group`
  std::vector<const Row*> rows;
  std::string label() const { return group_label(group, n_own); }
};
/// `kept` split by `own` plus --group-by, in first-seen order.
std::vector<TableGroup> table_groups(const TableInput& in, const std::vector<std::string>& own,
                                     const std::vector<const Row*>& kept);

/// One table per group of the rows that pass `keep`: its title `title_prefix` + the group's
/// label, its group set, the rest filled by `fill(group, table)`.
template <class Pred, class Fill>
std::vector<Table> per_group(const TableInput& in, const std::vector<std::string>& own, const std::string& title_prefix,
                             Pred keep, Fill fill) {
  std::vector<Table> out;
  for (const auto& g : table_groups(in, own, rows_where(in.rows, keep))) {
    Table t;
    t.title = title_prefix + g.label();
    t.group = g.group;
    fill(g, t);
    out.push_back(std::move(t));
  }
  return out;
}
/// `tables`, or when there are none a table with no rows that says why (`title`, `why`).
std::vector<Table> or_empty(std::vector<Table> tables, const std::string& title, const std::string& why);
/// `t` alone, or no table when it has no rows.
std::vector<Table> unless_empty(Table t);

// ---------------------------------------------------------------------------------------------
// Cells

/// What the rows of one accuracy cell hold.
struct CellStats {
  Stat top1;
  Stat delta;  ///< top-1 - FP32 top-1 of each ok seed with a known baseline
  int failed = 0;
  int pending = 0;
};
void add_to_stats(const Row& r, CellStats& s);

/// Rounded to 1e-9 for JSON, so that a mean of 91.23 and 91.43 reads 91.33, not 91.33000000000001.
double round9(double v);
/// "91.23 (-0.12)", "91.23 ± 0.10 (-0.12, n=3)", "failed", "—".
Cell stats_cell(const CellStats& s, bool with_delta);
/// "1.234" or "1.234 ± 0.010" (n >= 2); "—" when empty.
Cell stat_cell(const Stat& s, int decimals);
Cell text_cell(const std::string& s);  ///< "—" when empty
Cell int_cell(long long v);
Cell num_cell(double v, int decimals);

/// fp32 < ptq < qat < anything else: the order of kinds in the cost tables.
int kind_rank(const std::string& kind);
/// libtorch-onednn < libtorch-qnnpack < onnxruntime < any other engine < "" (not recorded): the
/// order of deployment engines in the deploy and engines tables.
int engine_rank(const std::string& engine);
/// The rows the cost tables count: those with a wall time.
inline bool has_wall_time(const Row& r) { return r.result && r.result->wall_s; }

/// The accuracy pivot (academic and hardware tracks) of a group's rows: rows arch x algorithm,
/// columns FP32 then the values of `column_axis` (bit widths widest first); only FP32 with
/// `baselines_only`.
void pivot(const TableGroup& g, const std::string& column_axis, bool baselines_only, const BaselineMap& baselines,
           Table& t);

}  // namespace qbench::report::detail
