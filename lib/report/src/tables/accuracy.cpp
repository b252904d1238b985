// The academic track: per (dataset, profile), rows arch x algorithm, columns FP32 and the bit
// widths. Baselines are the FP32 column; they get a table of their own only when their dataset
// has no other cells.
#include <set>

#include "table.h"

namespace qbench::report::detail {
namespace {

std::vector<Table> build(const TableInput& in) {
  std::set<std::string> datasets_with_cells;
  for (const auto& r : in.rows)
    if (!r.dataset.empty() && !r.is_baseline()) datasets_with_cells.insert(r.dataset);
  auto tables = [&](bool baselines_only, auto keep) {
    return per_group(in, {"dataset", "profile"}, "Academic track: ", keep, [&](const TableGroup& g, Table& t) {
      pivot(g, "bits", baselines_only, in.baselines, t);
    });
  };
  auto out = tables(false, [](const Row& r) { return !r.dataset.empty() && !r.is_baseline(); });
  for (auto& t : tables(true, [&](const Row& r) {
         return !r.dataset.empty() && r.is_baseline() && !datasets_with_cells.count(r.dataset);
       }))
    out.push_back(std::move(t));
  return out;
}

}  // namespace

void register_accuracy(Registry<TableEntry>& r) {
  r.add("accuracy", {"academic track: top-1 by arch x algorithm x bit width", &build});
}

}  // namespace qbench::report::detail
