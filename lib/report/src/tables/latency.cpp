// Latency per dataset, with its source on every row: rows of one source together (sources in a
// fixed order, CPU before GPU), and a note whenever a table mixes sources.
#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report::detail {
namespace {

int source_rank(const std::string& s) {
  static const char* const order[] = {"measured-fp32",      "measured-fakequant",      "measured-int8",
                                      "measured-int8-ort",  "measured-fp32-ort",       "modeled",
                                      "measured-fp32-cuda", "measured-fakequant-cuda"};
  constexpr int n = static_cast<int>(sizeof(order) / sizeof(order[0]));
  for (int i = 0; i < n; ++i)
    if (s == order[i]) return i;
  return n;
}

std::string describe_source(const std::string& s) {
  if (s == "measured-fp32") return "measured-fp32: the FP32 model, timed";
  if (s == "measured-fakequant")
    return "measured-fakequant: the simulated (fake-quantized) model timed in float, not the speed of an integer "
           "deployment";
  if (s == "measured-int8") return "measured-int8: the model run and timed on an integer backend";
  if (s == "measured-int8-ort")
    return "measured-int8-ort: the model exported as ONNX QDQ and timed in ONNX Runtime on the CPU (integer kernels "
           "where ONNX Runtime fused them: see the engines table for the share and the FP32 export's time)";
  if (s == "measured-fp32-ort")
    return "measured-fp32-ort: the same network exported as FP32 ONNX and timed in ONNX Runtime beside its QDQ "
           "export (algorithm fp32; one row per profile, whose BN folding it keeps)";
  if (s == "measured-fp32-cuda") return "measured-fp32-cuda: the FP32 model, timed on a CUDA GPU (not comparable with CPU times)";
  if (s == "measured-fakequant-cuda")
    return "measured-fakequant-cuda: the simulated (fake-quantized) model timed in float on a CUDA GPU, not the speed "
           "of an integer deployment";
  if (s == "modeled") return "modeled: estimated by a cost model, not measured";
  return s + ": unknown source";
}

constexpr const char* kFp32Ort = "measured-fp32-ort";

/// The FP32 exports ONNX Runtime timed beside the cells' QDQ models (their deploy_engines
/// records): per (arch, profile, batch), one row of source measured-fp32-ort.
std::vector<std::vector<Cell>> ort_fp32_rows(const TableInput& in, const TableGroup& g) {
  std::map<std::tuple<std::string, std::string, int>, Stat> by;
  for (const Row* r : g.rows) {
    if (!r->result) continue;
    auto it = in.input.deploy_engines.find(r->result->id);
    if (it == in.input.deploy_engines.end()) continue;
    for (const auto& d : it->second) {
      auto v = d.values.find("fp32_latency_ms_p50"), b = d.values.find("latency_batch");
      if (d.name != "onnxruntime" || v == d.values.end() || !std::isfinite(v->second)) continue;
      const int batch = b != d.values.end() ? static_cast<int>(b->second) : 0;
      by[{r->arch, r->profile, batch}].values.push_back(v->second);
    }
  }
  std::vector<std::vector<Cell>> out;
  for (const auto& [k, p50] : by)
    out.push_back({text_cell(std::get<0>(k)), text_cell("fp32"), text_cell(std::get<1>(k)), text_cell("fp32"),
                   std::get<2>(k) ? int_cell(std::get<2>(k)) : text_cell(""), stat_cell(p50, 3), stat_cell(Stat{}, 3),
                   int_cell(static_cast<long long>(p50.n())), text_cell(kFp32Ort)});
  return out;
}

void fill(const TableInput& in, const TableGroup& g, Table& t) {
  t.caption = "Forward-pass latency in milliseconds at the batch size shown; mean " + std::string(kPlusMinus) +
              " std over seeds. The source says what was timed.";
  t.columns = {{"arch"}, {"algorithm"}, {"profile"}, {"bits"}, {"batch", true}, {"p50 ms", true}, {"p90 ms", true},
               {"n", true}, {"source"}};
  // One row per (source, arch, algorithm, profile, bits, batch), sources in canonical order.
  auto lrows = group_rows(g.rows, [](const Row& r, std::string& key) {
    const auto& res = *r.result;
    for (const std::string* part : {&res.latency_source, &r.arch, &r.algorithm, &r.profile, &r.bits_text}) add_key(key, *part);
    key += res.latency_batch ? std::to_string(*res.latency_batch) : std::string("-");
  });
  std::stable_sort(lrows.begin(), lrows.end(), [](const RowGroup& a, const RowGroup& b) {
    return source_rank(a.first->result->latency_source) < source_rank(b.first->result->latency_source);
  });
  std::vector<std::string> sources;
  auto ort_rows = ort_fp32_rows(in, g);
  if (!ort_rows.empty()) push_unique(sources, std::string(kFp32Ort));
  for (const auto& lr : lrows) {
    // The FP32 exports' rows go where their source ranks.
    if (!ort_rows.empty() && source_rank(lr.first->result->latency_source) > source_rank(kFp32Ort)) {
      t.rows.insert(t.rows.end(), ort_rows.begin(), ort_rows.end());
      ort_rows.clear();
    }
    const Row& r = *lr.first;
    Stat p50, p90;
    for (const Row* m : lr.rows) {
      if (m->result->latency_ms_p50) p50.values.push_back(*m->result->latency_ms_p50);
      if (m->result->latency_ms_p90) p90.values.push_back(*m->result->latency_ms_p90);
    }
    push_unique(sources, r.result->latency_source);
    t.rows.push_back({text_cell(r.arch), text_cell(r.algorithm), text_cell(r.profile), text_cell(r.bits_text),
                      r.result->latency_batch ? int_cell(*r.result->latency_batch) : text_cell(""), stat_cell(p50, 3),
                      stat_cell(p90, 3), int_cell(static_cast<long long>(std::max(p50.n(), p90.n()))),
                      text_cell(r.result->latency_source)});
  }
  t.rows.insert(t.rows.end(), ort_rows.begin(), ort_rows.end());
  std::sort(sources.begin(), sources.end(), [](const std::string& a, const std::string& b) {
    return std::make_pair(source_rank(a), a) < std::make_pair(source_rank(b), b);
  });
  if (sources.size() > 1)
    t.notes.push_back("This table mixes latency sources (" + join(sources, ", ") +
                      "): compare numbers only between rows of one source.");
  for (const auto& s : sources) t.notes.push_back(describe_source(s.empty() ? "?" : s) + ".");
}

std::vector<Table> build(const TableInput& in) {
  auto timed = [](const Row& r) { return r.result && (r.result->latency_ms_p50 || r.result->latency_ms_p90); };
  return or_empty(per_group(in, {"dataset"}, "Latency: ", timed, [&](const TableGroup& g, Table& t) { fill(in, g, t); }),
                  "Latency",
                  "No cell has a latency measurement.");
}

}  // namespace

void register_latency(Registry<TableEntry>& r) {
  r.add("latency", {"forward-pass latency, with the source of each number", &build});
}

}  // namespace qbench::report::detail
