// The conflicts of a merged run (`qbench merge`): a cell with two different ok results, all kept in
// the store, the earliest one used by the run's plan. Read from the run's environment_json
// (merge.conflicts); no table when the run has none (a run that was not merged has none).
#include <nlohmann/json.hpp>

#include <cstdio>

#include "table.h"

namespace qbench::report::detail {
namespace {

std::string top1_text(const nlohmann::json& v) {
  if (!v.is_number()) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v.get<double>());
  return buf;
}

std::vector<Table> build(const TableInput& in) {
  Table t;
  t.title = "Merge conflicts";
  t.caption = "Cells with more than one ok result of different metrics among the merged shards (e.g. a cell run twice "
              "on two machines that computed differently). Every result is kept in the store; the merged run and the "
              "tables above use the earliest (marked used).";
  t.columns = {{"cell"}, {"cell label"}, {"result id", true}, {"top-1", true}, {"job"}, {"host"}, {"finished"}, {"used"}};
  const auto env = nlohmann::json::parse(in.input.run.environment_json, nullptr, false);
  if (!env.is_object() || !env.contains("merge") || !env["merge"].contains("conflicts")) return {};
  for (const auto& c : env["merge"]["conflicts"]) {
    const std::string key = c.value("cell_key", std::string());
    const int64_t chosen = c.value("chosen", int64_t{0});
    for (const auto& r : c.value("results", nlohmann::json::array())) {
      const int64_t id = r.value("result_id", int64_t{0});
      t.rows.push_back({text_cell(key.substr(0, 12)), text_cell(c.value("label", std::string())),
                        Cell{std::to_string(id), Json(id)}, text_cell(top1_text(r.value("top1", nlohmann::json()))),
                        text_cell(r.value("job", std::string())), text_cell(r.value("host", std::string())),
                        text_cell(r.value("finished_at", std::string())), text_cell(id == chosen ? "used" : "kept")});
    }
  }
  return unless_empty(std::move(t));
}

}  // namespace

void register_conflicts(Registry<TableEntry>& r) {
  r.add("conflicts", {"a merged run's cells with two different ok results (all kept; the earliest used)", &build});
}

}  // namespace qbench::report::detail
