// The hardware track: per (dataset, bits), rows arch x algorithm, the profiles as columns; only
// where a dataset has two or more profiles (with one, it would repeat the academic track).
#include <map>
#include <set>

#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report::detail {
namespace {

std::vector<Table> build(const TableInput& in) {
  std::map<std::string, std::set<std::string>> profiles_of;  // dataset -> the profiles of its cells
  for (const auto& r : in.rows)
    if (!r.is_baseline() && !r.dataset.empty()) profiles_of[r.dataset].insert(r.profile);
  auto out = per_group(
      in, {"dataset", "bits"}, "Hardware track: ",
      [&](const Row& r) { return !r.dataset.empty() && !r.is_baseline() && profiles_of.at(r.dataset).size() >= 2; },
      [&](const TableGroup& g, Table& t) { pivot(g, "profile", false, in.baselines, t); });
  if (profiles_of.empty()) return out;  // no cells, nothing to compare
  std::set<std::string> profiles;
  for (const auto& [dataset, ps] : profiles_of) profiles.insert(ps.begin(), ps.end());
  return or_empty(std::move(out), "Hardware track",
                  "The hardware track compares profiles side by side; this run has one profile per dataset (" +
                      join(std::vector<std::string>(profiles.begin(), profiles.end()), ", ") +
                      "), shown in the academic track above.");
}

}  // namespace

void register_hardware(Registry<TableEntry>& r) {
  r.add("hardware", {"hardware track: top-1 by profile, per bit width", &build});
}

}  // namespace qbench::report::detail
