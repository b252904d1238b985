// Mixed precision (issue 19): budget -> accuracy beside the uniform widths of the same arch and
// profile, with what each cell's weights and BOPs cost; and the widths each budget gave each layer.
// No tables when the run has no mixed cell.
#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "table.h"

namespace qbench::report::detail {
namespace {

double cost_value(const TableInput& in, const Row& r, const char* key) {
  if (!r.result) return -1;
  auto it = in.input.model_cost.find(r.result->id);
  if (it == in.input.model_cost.end() || it->second.empty()) return -1;
  auto v = it->second.front().values.find(key);
  return v == it->second.front().values.end() ? -1 : v->second;
}

bool group_has_mixed(const TableGroup& g) {
  return std::any_of(g.rows.begin(), g.rows.end(), [](const Row* r) { return r->mixed; });
}

std::vector<Table> budgets(const TableInput& in) {
  std::vector<Table> out;
  auto quantized = [](const Row& r) { return !r.is_baseline() && r.status != "pending"; };
  for (const auto& g : table_groups(in, {"dataset", "arch", "profile"}, rows_where(in.rows, quantized))) {
    if (!group_has_mixed(g)) continue;
    Table t;
    t.title = "Mixed precision: " + g.label();
    t.group = g.group;
    t.caption = "Top-1 (mean " + std::string(kPlusMinus) +
                " std over seeds, delta to FP32) per algorithm and bits: a mixed entry is a budget, the widths "
                "chosen per layer by the exact search; uniform widths beside it. Size = weights at their widths "
                "in KiB (biases and BN excluded), BOPs relative to the same model at w8a8, average widths "
                "weighted by weights and by input elements.";
    t.columns = {{"algorithm"}, {"bits"}, {"top-1 %", true}, {"size KiB", true}, {"BOPs / w8a8", true},
                 {"avg w bits", true}, {"avg a bits", true}};
    auto cells = group_rows(g.rows, {"algorithm", "bits"});
    std::stable_sort(cells.begin(), cells.end(), [&](const RowGroup& a, const RowGroup& b) {
      if (a.first->algorithm != b.first->algorithm) return false;
      return cost_value(in, *a.first, "size_kb") > cost_value(in, *b.first, "size_kb");
    });
    for (const auto& c : cells) {
      CellStats s;
      std::array<Stat, 4> cost;
      const char* keys[] = {"size_kb", "bops_ratio", "avg_w_bits", "avg_a_bits"};
      for (const Row* r : c.rows) {
        add_to_stats(*r, s);
        for (int i = 0; i < 4; ++i)
          if (double v = cost_value(in, *r, keys[i]); v >= 0) cost[i].values.push_back(v);
      }
      t.rows.push_back({text_cell(c.first->algorithm), text_cell(c.first->bits_text), stats_cell(s, true),
                        stat_cell(cost[0], 1), stat_cell(cost[1], 3), stat_cell(cost[2], 2), stat_cell(cost[3], 2)});
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<Table> allocation(const TableInput& in) {
  std::vector<Table> out;
  auto mixed_ok = [&](const Row& r) { return r.mixed && r.result && in.input.bit_allocation.count(r.result->id); };
  for (const auto& g : table_groups(in, {"dataset", "arch", "profile"}, rows_where(in.rows, mixed_ok))) {
    // The allocation depends on the baseline (seed), the profile and the budget, not on the
    // algorithm: one column per budget, from the first seed's first cell.
    std::map<std::string, const Row*> by_budget;
    std::vector<std::string> order;
    const auto first_seed = g.rows.front()->seed_text;
    for (const Row* r : g.rows) {
      if (r->seed_text != first_seed) continue;
      if (by_budget.emplace(r->bits_text, r).second) order.push_back(r->bits_text);
    }
    Table t;
    t.title = "Bit allocation: " + g.label() + " seed " + first_seed;
    t.group = g.group;
    t.caption = "Weight and input-activation widths per layer (wXaY) for each budget, as the exact search chose "
                "them from the sensitivities (* = fixed by the profile's first/last-layer policy). Full rows, "
                "with each layer's sensitivity: table cell_details, section bit_allocation.";
    t.columns = {{"layer"}, {"params", true}};
    for (const auto& b : order) t.columns.push_back({b});
    std::vector<std::string> layers;
    std::map<std::string, std::map<std::string, std::string>> cell;
    std::map<std::string, double> params;
    for (const auto& b : order) {
      for (const auto& d : in.input.bit_allocation.at(by_budget[b]->result->id)) {
        if (!cell.count(d.name)) layers.push_back(d.name);
        auto v = [&](const char* k) { auto it = d.values.find(k); return it == d.values.end() ? 0.0 : it->second; };
        cell[d.name][b] = "w" + std::to_string(static_cast<int>(v("w_bits"))) + "a" +
                          std::to_string(static_cast<int>(v("a_bits"))) + (v("fixed") > 0 ? "*" : "");
        params[d.name] = v("params");
      }
    }
    for (const auto& l : layers) {
      std::vector<Cell> row{text_cell(l), int_cell(static_cast<long long>(params[l]))};
      for (const auto& b : order) row.push_back(text_cell(cell[l][b]));
      t.rows.push_back(std::move(row));
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

void register_mixed(Registry<TableEntry>& r) {
  r.add("mixed", {"mixed-precision budgets against uniform widths: top-1, size, BOPs, average widths", &budgets});
  r.add("bit_allocation", {"the widths each mixed-precision budget gave each layer", &allocation});
}

}  // namespace qbench::report::detail
