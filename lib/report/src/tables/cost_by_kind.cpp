// Cost by kind, per dataset: the wall time of the fp32, PTQ and QAT cells and each kind's share.
// Each table sits right after the cost table of its dataset.
#include <map>
#include <numeric>

#include "table.h"

namespace qbench::report::detail {
namespace {

void fill(const TableGroup& g, Table& t) {
  t.caption = "Wall time of the cells of each kind (fp32 baselines, PTQ, QAT).";
  t.columns = {{"kind"}, {"cells", true}, {"wall s per cell", true}, {"total wall s", true}, {"share %", true}};
  std::map<std::pair<int, std::string>, Stat> by_kind;
  double total = 0;
  for (const Row* r : g.rows) {
    by_kind[{kind_rank(r->kind), r->kind}].values.push_back(*r->result->wall_s);
    total += *r->result->wall_s;
  }
  for (const auto& [kind, st] : by_kind) {
    const double sum = std::accumulate(st.values.begin(), st.values.end(), 0.0);
    t.rows.push_back({text_cell(kind.second), int_cell(static_cast<long long>(st.n())), stat_cell(st, 1),
                      num_cell(sum, 1), num_cell(total > 0 ? 100.0 * sum / total : 0.0, 1)});
  }
}

std::vector<Table> build(const TableInput& in) {
  return per_group(in, {"dataset"}, "Cost by kind: ", has_wall_time, fill);
}

}  // namespace

void register_cost_by_kind(Registry<TableEntry>& r) {
  r.add("cost_by_kind", {"wall time per kind (fp32, PTQ, QAT) and its share", &build, "cost"});
}

}  // namespace qbench::report::detail
