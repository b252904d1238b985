// Latency per dataset, with its source on every row: rows of one source together (sources in a
// fixed order, CPU before GPU), and a note whenever a table mixes sources.
#include <algorithm>

#include "qbench/common/strings.h"
#include "table.h"

namespace qbench::report::detail {
namespace {

int source_rank(const std::string& s) {
  static const char* const order[] = {"measured-fp32",      "measured-fakequant",      "measured-int8",
                                      "measured-int8-ort",  "modeled",                 "measured-fp32-cuda",
                                      "measured-fakequant-cuda"};
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
  if (s == "measured-fp32-cuda") return "measured-fp32-cuda: the FP32 model, timed on a CUDA GPU (not comparable with CPU times)";
  if (s == "measured-fakequant-cuda")
    return "measured-fakequant-cuda: the simulated (fake-quantized) model timed in float on a CUDA GPU, not the speed "
           "of an integer deployment";
  if (s == "modeled") return "modeled: estimated by a cost model, not measured";
  return s + ": unknown source";
}

void fill(const TableGroup& g, Table& t) {
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
  for (const auto& lr : lrows) {
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
  return or_empty(per_group(in, {"dataset"}, "Latency: ", timed, fill), "Latency",
                  "No cell has a latency measurement.");
}

}  // namespace

void register_latency(Registry<TableEntry>& r) {
  r.add("latency", {"forward-pass latency, with the source of each number", &build});
}

}  // namespace qbench::report::detail
