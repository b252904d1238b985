// Deployment-system noise (issue 20, SysNoise): per arch, the FP32 cell and each quantized cell,
// the quantization delta beside each noise's delta against its own reference, and the count of
// test images whose prediction the noise flips. No table when the run has no noise cell.
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "table.h"

namespace qbench::report::detail {
namespace {

/// "fp32", or "minmax w4a4 academic": the plain cell a noise row evaluates.
std::string cell_id(const Row& r) {
  if (r.kind == "fp32" || r.algorithm == "fp32") return "fp32";
  return r.algorithm + " " + r.bits_text + " " + r.profile;
}

std::optional<double> value_of(const CellDetails& d, const char* key) {
  if (d.empty()) return std::nullopt;
  auto it = d.front().values.find(key);
  if (it == d.front().values.end()) return std::nullopt;
  return it->second;
}

std::vector<Table> noise_tables(const TableInput& in) {
  std::vector<Table> out;
  std::vector<const Row*> rows;
  for (const auto& r : in.rows)
    if (r.status == "ok") rows.push_back(&r);
  for (const auto& r : in.noise_rows)
    if (r.status == "ok" && r.result && in.input.noise.count(r.result->id)) rows.push_back(&r);
  for (const auto& g : table_groups(in, {"dataset", "arch"}, rows)) {
    std::vector<std::string> noises, cells;
    for (const Row* r : g.rows)
      if (!r->noise.empty()) push_unique(noises, r->noise);
    if (noises.empty()) continue;
    for (const Row* r : g.rows) push_unique(cells, cell_id(*r));
    // cell -> plain top-1 and the quantization delta; cell -> noise -> delta, flips, images.
    std::map<std::string, CellStats> plain;
    std::map<std::string, std::map<std::string, Stat>> delta, flips;
    std::map<std::string, double> images;
    std::map<std::string, std::string> text;
    // The int8 deployment beside the noises: a plain quantized cell run on an integer engine,
    // deployed - simulated top-1 and the predictions that differ (from the agreement).
    std::map<std::string, Stat> dep_delta, dep_flips;
    std::vector<std::string> engines;
    for (const Row* r : g.rows) {
      const std::string id = cell_id(*r);
      if (r->noise.empty()) {
        add_to_stats(*r, plain[id]);
        const auto sim = r->top1(), dep = r->ok_metric(&CellResult::deploy_top1);
        const auto agree = r->ok_metric(&CellResult::deploy_agreement);
        if (sim && dep && r->result) {
          dep_delta[id].values.push_back(*dep - *sim);
          if (agree) dep_flips[id].values.push_back(std::round((100.0 - *agree) / 100.0 * static_cast<double>(r->result->eval_images)));
          push_unique(engines, r->result->deploy_engine.empty() ? std::string("int8") : r->result->deploy_engine);
        }
        continue;
      }
      const CellDetails& d = in.input.noise.at(r->result->id);
      if (auto v = value_of(d, "delta")) delta[id][r->noise].values.push_back(*v);
      if (auto f = value_of(d, "flips")) flips[id][r->noise].values.push_back(*f);
      images[r->noise] = value_of(d, "images").value_or(0);
      if (!d.empty()) text[r->noise] = d.front().text;
    }
    Table t;
    t.title = "Deployment noise (SysNoise): " + g.label();
    t.group = g.group;
    t.caption = "Top-1 of each cell (FP32, then each quantized cell, with its delta to FP32 = the quantization "
                "delta) and, per noise, the top-1 delta against the noise's own reference with the number of test "
                "images whose prediction flips, in parentheses (mean over seeds). References: decode-* against "
                "libjpeg-turbo ISLOW on the same JPEG bytes; resize-*, yuv-*, bf16, fp16, ceil-mode and count-include-pad against the plain "
                "evaluation. fp16 is emulated (half rounding at each conv/linear boundary, float32 inside).";
    t.columns = {{"cell"}, {"top-1 % (quant. delta)", true}};
    for (const auto& n : noises) t.columns.push_back({n == "fp16" ? "fp16 (emulated)" : n, true});
    if (!dep_delta.empty()) t.columns.push_back({"int8 deployed", true});
    for (const auto& c : cells) {
      std::vector<Cell> row{text_cell(c)};
      auto p = plain.find(c);
      row.push_back(p == plain.end() ? text_cell("") : stats_cell(p->second, c != "fp32"));
      for (const auto& n : noises) {
        auto d = delta[c].find(n);
        if (d == delta[c].end() || d->second.empty()) {
          row.push_back(text_cell(""));
          continue;
        }
        const Stat& f = flips[c][n];
        Cell cell;
        cell.text = signed2(d->second.mean()) + " (" + (f.empty() ? std::string("?") : fixed(f.mean(), f.n() > 1 ? 1 : 0)) + ")";
        cell.value = Json{{"delta", round9(d->second.mean())}, {"flips", f.empty() ? Json(nullptr) : Json(round9(f.mean()))},
                          {"n", d->second.n()}};
        row.push_back(std::move(cell));
      }
      if (!dep_delta.empty()) {
        auto d = dep_delta.find(c);
        if (d == dep_delta.end()) {
          row.push_back(text_cell(""));
        } else {
          const Stat& f = dep_flips[c];
          row.push_back(Cell{signed2(d->second.mean()) + " (" + (f.empty() ? std::string("?") : fixed(f.mean(), f.n() > 1 ? 1 : 0)) + ")",
                             Json{{"delta", round9(d->second.mean())}, {"flips", f.empty() ? Json(nullptr) : Json(round9(f.mean()))},
                                  {"n", d->second.n()}}});
        }
      }
      t.rows.push_back(std::move(row));
    }
    for (const auto& n : noises)
      if (auto it = text.find(n); it != text.end())
        t.notes.push_back(n + ": " + it->second + " (" + fixed(images[n], 0) + " test images)");
    if (!dep_delta.empty())
      t.notes.push_back("int8 deployed: the cell run on its integer engine (" + join(engines, ", ") +
                        ") against its simulated (fake-quantized) evaluation; flips = test images whose predictions differ");
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

void register_noise(Registry<TableEntry>& r) {
  r.add("noise", {"deployment-system noise (SysNoise): each noise's top-1 delta and prediction flips beside the "
                  "quantization delta, per arch",
                  &noise_tables});
}

}  // namespace qbench::report::detail
