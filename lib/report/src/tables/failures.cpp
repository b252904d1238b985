// The failed cells with their error messages (no table when none failed).
#include "table.h"

namespace qbench::report::detail {
namespace {

std::vector<Table> build(const TableInput& in) {
  Table t;
  t.title = "Failed cells";
  t.caption = "Every failed cell with its error message.";
  t.columns = {{"cell"}, {"dataset"}, {"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"seed", true}, {"error", false, true}};
  for (const auto& r : in.rows) {
    if (r.status != "failed") continue;
    t.rows.push_back({text_cell(r.cell_key.substr(0, 12)), text_cell(r.dataset), text_cell(r.arch), text_cell(r.algorithm),
                      text_cell(r.profile), text_cell(r.bits()),
                      r.seed ? Cell{std::to_string(*r.seed), Json(*r.seed)} : text_cell(""),
                      text_cell(r.result ? r.result->error : std::string())});
  }
  return unless_empty(std::move(t));
}

}  // namespace

void register_failures(Registry<TableEntry>& r) {
  r.add("failures", {"the failed cells with their errors", &build});
}

}  // namespace qbench::report::detail
