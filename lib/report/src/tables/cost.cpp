// Cost per dataset: seconds per cell by kind, arch and algorithm (kinds fp32, PTQ, QAT in that
// order), with the total wall time of each row.
#include <algorithm>
#include <array>
#include <numeric>

#include "table.h"

namespace qbench::report::detail {
namespace {

void fill(const TableGroup& g, Table& t) {
  t.caption = "Seconds per cell (mean " + std::string(kPlusMinus) +
              " std over its cells, failed ones included): train/calibrate = FP32 training, PTQ calibration or QAT "
              "fine-tuning; eval = the test set; wall = the whole cell.";
  t.columns = {{"kind"}, {"arch"}, {"algorithm"}, {"cells", true}, {"train/calibrate s", true}, {"eval s", true},
               {"wall s", true}, {"total wall s", true}};
  auto crows = group_rows(g.rows, {"kind", "arch", "algorithm"});
  std::stable_sort(crows.begin(), crows.end(), [](const RowGroup& a, const RowGroup& b) {
    return kind_rank(a.first->kind) < kind_rank(b.first->kind);
  });
  for (const auto& c : crows) {
    std::array<Stat, 3> s;  // train/calibrate, eval, wall
    for (const Row* r : c.rows) {
      const auto& res = *r->result;
      if (res.quant_wall_s) s[0].values.push_back(*res.quant_wall_s);
      if (res.eval_wall_s) s[1].values.push_back(*res.eval_wall_s);
      s[2].values.push_back(*res.wall_s);
    }
    const double sum = std::accumulate(s[2].values.begin(), s[2].values.end(), 0.0);
    t.rows.push_back({text_cell(c.first->kind), text_cell(c.first->arch), text_cell(c.first->algorithm),
                      int_cell(static_cast<long long>(s[2].n())), stat_cell(s[0], 1), stat_cell(s[1], 1),
                      stat_cell(s[2], 1), num_cell(sum, 1)});
  }
}

std::vector<Table> build(const TableInput& in) { return per_group(in, {"dataset"}, "Cost: ", has_wall_time, fill); }

}  // namespace

void register_cost(Registry<TableEntry>& r) {
  r.add("cost", {"seconds per cell by kind, arch and algorithm", &build});
}

}  // namespace qbench::report::detail
