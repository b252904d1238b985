// Each quantized cell on every engine it was deployed to, per dataset, from its deploy_engines
// detail rows: the simulated top-1, then per engine of the table its top-1 and prediction
// agreement; ONNX Runtime also the share of convs/matmuls it ran as integer kernels, its int8 and
// FP32-export latency and the speed-up. An engine that refused a cell shows "refused", its reason
// in a note under the table.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report::detail {
namespace {

const char* const kOrt = "onnxruntime";
const char* const kNotDeployed = "not deployed: ";
constexpr std::size_t kReasonChars = 200;  // a refusal's reason in a note, at most

std::optional<double> value(const CellDetail& d, const char* k) {
  auto v = d.values.find(k);
  if (v == d.values.end() || !std::isfinite(v->second)) return std::nullopt;
  return v->second;
}

Cell opt_cell(std::optional<double> v, int decimals) { return v ? num_cell(*v, decimals) : Cell{kDash, nullptr}; }

/// A row with no numbers: the engine could not export or run the cell ("not deployed: why").
bool refused(const CellDetail& d) { return d.values.empty(); }

/// The reason of a refusal, without its "not deployed: " prefix.
std::string reason_of(const CellDetail& d) {
  const std::size_t n = std::strlen(kNotDeployed);
  std::string s = d.text.compare(0, n, kNotDeployed) == 0 ? d.text.substr(n) : d.text;
  return s.empty() ? std::string("no reason recorded") : s;
}

/// `s` on one line, cut to kReasonChars bytes at a character boundary.
std::string shortened(const std::string& s) {
  std::string out = one_line(s);
  if (out.size() <= kReasonChars) return out;
  std::size_t n = kReasonChars;
  while (n > 0 && (static_cast<unsigned char>(out[n]) & 0xC0) == 0x80) --n;  // not inside a UTF-8 sequence
  return out.substr(0, n) + " ...";
}

/// The engine's name in the column headers.
std::string label(const std::string& engine) {
  if (engine == "libtorch-onednn") return "oneDNN";
  if (engine == "libtorch-qnnpack") return "QNNPACK";
  if (engine == kOrt) return "ORT";
  return engine;
}

/// "oneDNN = libtorch-onednn (...)": what an engine's label stands for, in the caption.
std::string legend(const std::string& engine) {
  const std::string l = label(engine);
  if (engine == "libtorch-onednn" || engine == "libtorch-qnnpack")
    return l + " = " + engine + " (LibTorch's quantized operators, qbench's integer lowering)";
  if (engine == kOrt) return l + " = " + engine + " (the ONNX QDQ export run in ONNX Runtime)";
  return engine;
}

/// A cell's row for one engine: the detail row with numbers, else its refusal, else none.
const CellDetail* find_engine(const CellDetails& rows, const std::string& engine) {
  const CellDetail* found = nullptr;
  for (const auto& d : rows)
    if (d.name == engine && (!found || (refused(*found) && !refused(d)))) found = &d;
  return found;
}

void fill(const TableInput& in, const TableGroup& g, Table& t) {
  // The engines of this table's cells (known ones in a fixed order, others as first seen), and
  // whether ONNX Runtime measured latency anywhere (its three latency columns only then).
  std::vector<std::string> engines;
  bool ort_latency = false;
  std::vector<int> batches;
  for (const Row* r : g.rows)
    for (const auto& d : in.input.deploy_engines.at(r->result->id)) {
      push_unique(engines, d.name);
      if (d.name == kOrt && value(d, "latency_ms_p50")) {
        ort_latency = true;
        if (auto b = value(d, "latency_batch")) push_unique(batches, static_cast<int>(*b));
      }
    }
  std::stable_sort(engines.begin(), engines.end(),
                   [](const std::string& a, const std::string& b) { return engine_rank(a) < engine_rank(b); });
  std::sort(batches.begin(), batches.end());

  t.columns = {{"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"seed", true}, {"simulated", true}};
  std::vector<std::string> named;
  for (const auto& e : engines) {
    const std::string l = label(e);
    t.columns.push_back({l + " top-1", true});
    t.columns.push_back({l + " agree %", true});
    if (e == kOrt) {
      t.columns.push_back({l + " int8 cov %", true});
      if (ort_latency) {
        t.columns.push_back({l + " int8 ms", true});
        t.columns.push_back({l + " FP32 ms", true});
        t.columns.push_back({l + " speed-up", true});
      }
    }
    named.push_back(legend(e));
  }

  // Refusals: one note per (engine, reason), numbered in order of first appearance.
  std::vector<std::pair<std::string, std::string>> refusals;  // (engine, reason)
  std::vector<int> refusal_cells;
  for (const Row* r : g.rows) {
    const auto& rows = in.input.deploy_engines.at(r->result->id);
    std::optional<double> sim = r->top1();
    for (const auto& d : rows)
      if (!sim) sim = value(d, "sim_top1");
    std::vector<Cell> cells{text_cell(r->arch),      text_cell(r->algorithm), text_cell(r->profile),
                            text_cell(r->bits_text), text_cell(r->seed_text), opt_cell(sim, 2)};
    for (const auto& e : engines) {
      const std::size_t width = e != kOrt ? 2 : ort_latency ? 6 : 3;
      const CellDetail* d = find_engine(rows, e);
      if (!d) {
        cells.insert(cells.end(), width, Cell{kDash, nullptr});
        continue;
      }
      if (refused(*d)) {
        const std::pair<std::string, std::string> key{e, reason_of(*d)};
        auto it = std::find(refusals.begin(), refusals.end(), key);
        if (it == refusals.end()) {
          refusals.push_back(key);
          refusal_cells.push_back(0);
          it = refusals.end() - 1;
        }
        const auto k = static_cast<std::size_t>(it - refusals.begin());
        ++refusal_cells[k];
        cells.push_back(Cell{"refused (" + std::to_string(k + 1) + ")", Json{{"refused", json_string(key.second)}}});
        cells.insert(cells.end(), width - 1, Cell{kDash, nullptr});
        continue;
      }
      cells.push_back(opt_cell(value(*d, "top1"), 2));
      cells.push_back(opt_cell(value(*d, "agreement"), 2));
      if (e != kOrt) continue;
      cells.push_back(opt_cell(value(*d, "int8_coverage"), 1));
      if (!ort_latency) continue;
      const auto int8 = value(*d, "latency_ms_p50"), fp32 = value(*d, "fp32_latency_ms_p50");
      cells.push_back(opt_cell(int8, 3));
      cells.push_back(opt_cell(fp32, 3));
      if (int8 && fp32 && *int8 > 0 && *fp32 > 0) {
        const double x = *fp32 / *int8;
        cells.push_back(Cell{fixed(x, 2) + "x", Json(round9(x))});
      } else {
        cells.push_back(Cell{kDash, nullptr});
      }
    }
    t.rows.push_back(std::move(cells));
  }

  t.caption = "Per quantized cell, from its deploy_engines rows: top-1 in percent of the simulated (fake-quantized) "
              "model and of the same model on each engine it was deployed to; agree = share of test images whose "
              "predicted class matches the simulation's (percent). Engines: " +
              join(named, "; ") + ".";
  if (std::find(engines.begin(), engines.end(), kOrt) != engines.end()) {
    t.caption += " ORT int8 cov = share of the convolutions and matrix products that ran as integer kernels in "
                 "ONNX Runtime's optimized graph (percent).";
    if (ort_latency) {
      std::vector<std::string> b;
      for (int x : batches) b.push_back(std::to_string(x));
      t.caption += " ORT int8 ms and FP32 ms = median latency in milliseconds of the QDQ model and of the FP32 export "
                   "of the same network in ONNX Runtime" +
                   (b.empty() ? std::string() : " at batch " + join(b, " or ")) +
                   "; speed-up = FP32 ms / int8 ms.";
    }
  }
  t.caption += std::string(" ") + kDash + " = not run on that engine";
  if (!refusals.empty())
    t.caption += "; refused (k) = the engine could not export or run the cell, for reason k below (cut at about " +
                 std::to_string(kReasonChars) + " characters; the full text is in the store's cell_details table)";
  t.caption += ".";
  for (std::size_t k = 0; k < refusals.size(); ++k)
    t.notes.push_back("(" + std::to_string(k + 1) + ") " + refusals[k].first + " refused " +
                      std::to_string(refusal_cells[k]) + (refusal_cells[k] == 1 ? " cell: " : " cells: ") +
                      shortened(refusals[k].second));
}

std::vector<Table> build(const TableInput& in) {
  auto has_engines = [&](const Row& r) {
    if (!r.result || r.is_baseline()) return false;
    auto it = in.input.deploy_engines.find(r.result->id);
    return it != in.input.deploy_engines.end() && !it->second.empty();
  };
  return or_empty(per_group(in, {"dataset"}, "Deployment engines: ", has_engines,
                            [&](const TableGroup& g, Table& t) { fill(in, g, t); }),
                  "Deployment engines",
                  "No cell of this run has per-engine deployment rows (pipeline.deploy.engines, or a profile whose "
                  "engine is onnxruntime), so there is no engine comparison to show.");
}

}  // namespace

void register_engines(Registry<TableEntry>& r) {
  r.add("engines", {"each quantized cell on every engine it was deployed to (LibTorch, ONNX Runtime)", &build});
}

}  // namespace qbench::report::detail
