// Where each deployed cell departs from its simulation, from its deploy_layers detail rows: the
// first layer (in execution order) whose deployed output differs anywhere, and the layer with the
// lowest output SQNR. No table when no cell has such rows.
#include <cmath>

#include "table.h"

namespace qbench::report::detail {
namespace {

std::optional<double> value(const CellDetail& d, const char* k) {
  auto v = d.values.find(k);
  if (v == d.values.end() || !std::isfinite(v->second)) return std::nullopt;
  return v->second;
}

Cell opt_cell(std::optional<double> v, int decimals) { return v ? num_cell(*v, decimals) : Cell{kDash, nullptr}; }

std::vector<Table> build(const TableInput& in) {
  Table t;
  t.title = "Where deployment departs from simulation";
  t.caption = "Per deployed cell, from its per-layer rows (first test batch): the first layer whose integer output "
              "differs from the simulation's on any value (share of values differing, the op's own largest error "
              "in output steps when fed the simulation's input, the operator), and the layer with the lowest "
              "output SQNR (dB) with errors accumulated from earlier layers. Full rows: table cell_details.";
  t.columns = {{"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"seed", true}, {"agreement %", true},
               {"first differing layer"}, {"differing %", true}, {"op error steps", true}, {"op"},
               {"lowest-SQNR layer"}, {"SQNR dB", true}};
  for (const auto& r : in.rows) {
    if (!r.result) continue;
    auto it = in.input.deploy_layers.find(r.result->id);
    if (it == in.input.deploy_layers.end() || it->second.empty()) continue;
    const CellDetail* first = nullptr;
    const CellDetail* worst = nullptr;
    for (const auto& d : it->second) {
      if (!first && value(d, "mismatch_pct").value_or(0) > 0) first = &d;
      auto sq = value(d, "sqnr_db");
      if (sq && (!worst || *sq < *value(*worst, "sqnr_db"))) worst = &d;
    }
    t.rows.push_back({text_cell(r.arch), text_cell(r.algorithm), text_cell(r.profile), text_cell(r.bits_text),
                      text_cell(r.seed_text), opt_cell(r.result->deploy_agreement, 2),
                      text_cell(first ? first->name : "none (bit-exact on this batch)"),
                      opt_cell(first ? value(*first, "mismatch_pct") : std::nullopt, 3),
                      opt_cell(first ? value(*first, "op_max_err_steps") : std::nullopt, 0),
                      text_cell(first ? first->text : ""), text_cell(worst ? worst->name : ""),
                      opt_cell(worst ? value(*worst, "sqnr_db") : std::nullopt, 1)});
  }
  return unless_empty(std::move(t));
}

}  // namespace

void register_deploy_layers(Registry<TableEntry>& r) {
  r.add("deploy_layers", {"where each deployed cell departs from its simulation", &build});
}

}  // namespace qbench::report::detail
