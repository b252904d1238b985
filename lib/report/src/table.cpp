// The pieces the report's tables share: grouping, cells, and the accuracy pivot of the academic
// and hardware tracks.
#include "table.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qbench/common/strings.h"

namespace qbench::report::detail {

// ---------------------------------------------------------------------------------------------
// Grouping

std::vector<RowGroup> group_rows(const std::vector<const Row*>& rows, const std::vector<std::string>& axes) {
  std::vector<const std::string Row::*> fields;
  for (const auto& a : axes) fields.push_back(axis_member(a));
  return group_rows(rows, [&](const Row& r, std::string& key) {
    for (auto f : fields) add_key(key, r.*f);
  });
}

Group group_of(const Row& r, const std::vector<std::string>& own, const std::vector<std::string>& group_by) {
  Group g;
  for (const auto& a : own) g.emplace_back(a, axis_value(r, a));
  for (const auto& a : group_by)
    if (std::find(own.begin(), own.end(), a) == own.end()) g.emplace_back(a, axis_value(r, a));
  return g;
}

std::string group_label(const Group& g, std::size_t n_own) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const std::string v = g[i].second.empty() ? "?" : one_line(g[i].second);
    parts.push_back(i < n_own ? v : g[i].first + "=" + v);
  }
  return join(parts, " / ");
}

std::vector<TableGroup> table_groups(const TableInput& in, const std::vector<std::string>& own,
                                     const std::vector<const Row*>& kept) {
  const auto& group_by = in.options.group_by;
  std::vector<std::string> axes = own;
  for (const auto& a : group_by)
    if (std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  std::vector<TableGroup> out;
  for (auto& g : group_rows(kept, axes))
    out.push_back({group_of(*g.first, own, group_by), own.size(), std::move(g.rows)});
  return out;
}

std::vector<Table> or_empty(std::vector<Table> tables, const std::string& title, const std::string& why) {
  if (tables.empty()) {
    Table t;
    t.title = title;
    t.empty_text = why;
    tables.push_back(std::move(t));
  }
  return tables;
}

std::vector<Table> unless_empty(Table t) {
  std::vector<Table> out;
  if (!t.rows.empty()) out.push_back(std::move(t));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cells

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

double round9(double v) { return std::round(v * 1e9) / 1e9; }

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

int kind_rank(const std::string& kind) {
  if (kind == "fp32") return 0;
  if (kind == "ptq") return 1;
  if (kind == "qat") return 2;
  return 3;
}

int engine_rank(const std::string& engine) {
  if (engine == "libtorch-onednn") return 0;
  if (engine == "libtorch-qnnpack") return 1;
  if (engine == "onnxruntime") return 2;
  return engine.empty() ? 4 : 3;
}

// ---------------------------------------------------------------------------------------------
// The accuracy pivot

namespace {

/// Bit-width columns: widest first (fp32, w8a8, w4a8, w4a4, ...), then unknown ones.
bool bits_before(const Row* a, const Row* b) {
  auto key = [](const Row* r) { return std::make_pair(-r->w_bits.value_or(-1), -r->a_bits.value_or(-1)); };
  return key(a) < key(b);
}

/// The FP32 column: one baseline value per seed among a table row's members (stored with the
/// cell, else the baseline row's own result, which may have failed).
CellStats fp32_stats(const std::vector<const Row*>& members, const BaselineMap& baselines) {
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

}  // namespace

void pivot(const TableGroup& g, const std::string& column_axis, bool baselines_only, const BaselineMap& baselines,
           Table& t) {
  t.caption = "Top-1 accuracy in percent (delta vs FP32 in points); mean " + std::string(kPlusMinus) +
              " sample std over seeds, with n when more than one seed.";
  // Rows (arch, algorithm) and columns in order of first appearance, then bit widths widest first.
  const auto keys = group_rows(g.rows, {"arch", "algorithm"});
  std::vector<RowGroup> cols;
  if (!baselines_only) cols = group_rows(g.rows, {column_axis});
  const auto column = axis_member(column_axis);
  std::unordered_map<std::string, std::size_t> col_index;
  for (std::size_t i = 0; i < cols.size(); ++i) col_index.emplace(cols[i].first->*column, i);
  std::vector<std::size_t> order(cols.size());
  std::iota(order.begin(), order.end(), 0);
  if (column_axis == "bits")
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return bits_before(cols[a].first, cols[b].first); });
  t.columns = {{"arch"}, {"algorithm"}, {"FP32", true}};
  for (auto i : order) {
    const std::string& name = cols[i].first->*column;
    t.columns.push_back({name.empty() ? "?" : name, true});
  }
  for (const auto& k : keys) {
    std::vector<Cell> cells{text_cell(k.first->arch), text_cell(k.first->algorithm),
                            stats_cell(fp32_stats(k.rows, baselines), false)};
    std::vector<CellStats> stats(cols.size());
    if (!baselines_only)
      for (const Row* r : k.rows) add_to_stats(*r, stats[col_index.at(r->*column)]);
    for (auto i : order) cells.push_back(stats_cell(stats[i], true));
    t.rows.push_back(std::move(cells));
  }
}

}  // namespace qbench::report::detail
