// Simulated vs deployed, per dataset, where a cell was also run on an integer backend: the engine
// the deployed numbers come from, both top-1s, their gap, prediction agreement, logit cosine and
// SQNR, means over seeds. Rows of one engine together; rows of different engines never averaged.
#include <algorithm>
#include <array>
#include <string>

#include "table.h"

namespace qbench::report::detail {
namespace {

void fill(const TableGroup& g, Table& t) {
  t.caption = "Top-1 in percent of the simulated (fake-quantized) model and of the same model deployed on an integer "
              "backend; engine = the backend the deployed numbers come from (libtorch-onednn, libtorch-qnnpack: "
              "LibTorch's quantized operators; onnxruntime: the ONNX QDQ export run in ONNX Runtime; " +
              std::string(kDash) +
              ": not recorded, a row stored before engines were named); gap = deployed - simulated; agreement = "
              "share of test images with the same predicted class (percent); logit cosine similarity and SQNR (dB) "
              "of the deployed logits against the simulated ones. Means over seeds, never over engines.";
  t.columns = {{"arch"},          {"algorithm"},         {"profile"},            {"bits"},
               {"engine"},        {"simulated", true},   {"deployed", true},     {"gap", true},
               {"agreement %", true}, {"logit cosine", true}, {"SQNR dB", true}, {"n", true}};
  auto mean_cell = [](const Stat& st, int d, bool sign) {
    if (st.empty()) return Cell{kDash, nullptr};
    return Cell{sign ? signed2(st.mean()) : fixed(st.mean(), d), Json(round9(st.mean()))};
  };
  auto add = [](Stat& st, std::optional<double> v) {
    if (v) st.values.push_back(*v);
  };
  // One row per (arch, algorithm, profile, bits, engine), rows of one engine together.
  auto krows = group_rows(g.rows, [](const Row& r, std::string& key) {
    for (const std::string* part : {&r.arch, &r.algorithm, &r.profile, &r.bits_text, &r.result->deploy_engine})
      add_key(key, *part);
  });
  std::stable_sort(krows.begin(), krows.end(), [](const RowGroup& a, const RowGroup& b) {
    return engine_rank(a.first->result->deploy_engine) < engine_rank(b.first->result->deploy_engine);
  });
  for (const auto& k : krows) {
    std::array<Stat, 6> s;  // sim, deploy, gap, agreement, cosine, sqnr
    for (const Row* r : k.rows) {
      auto sim = r->top1(), dep = r->ok_metric(&CellResult::deploy_top1);
      add(s[0], sim);
      add(s[1], dep);
      if (sim && dep) s[2].values.push_back(*dep - *sim);
      add(s[3], r->ok_metric(&CellResult::deploy_agreement));
      add(s[4], r->ok_metric(&CellResult::logit_cosine));
      add(s[5], r->ok_metric(&CellResult::sqnr_db));
    }
    std::size_t n = 0;
    for (const auto& st : s) n = std::max(n, st.n());
    const Row& r = *k.first;
    t.rows.push_back({text_cell(r.arch), text_cell(r.algorithm), text_cell(r.profile), text_cell(r.bits_text),
                      text_cell(r.result->deploy_engine), mean_cell(s[0], 2, false), mean_cell(s[1], 2, false),
                      mean_cell(s[2], 2, true), mean_cell(s[3], 2, false), mean_cell(s[4], 4, false),
                      mean_cell(s[5], 1, false), int_cell(static_cast<long long>(n))});
  }
}

std::vector<Table> build(const TableInput& in) {
  auto deployed = [](const Row& r) {
    return r.ok_metric(&CellResult::deploy_top1) || r.ok_metric(&CellResult::deploy_agreement) ||
           r.ok_metric(&CellResult::logit_cosine) || r.ok_metric(&CellResult::sqnr_db);
  };
  return or_empty(per_group(in, {"dataset"}, "Simulated vs deployed: ", deployed, fill), "Simulated vs deployed",
                  "No cell of this run was deployed to an integer backend, so there is no simulated-vs-deployed gap to "
                  "show.");
}

}  // namespace

void register_deploy(Registry<TableEntry>& r) {
  r.add("deploy", {"simulated vs deployed top-1, agreement, cosine, SQNR", &build});
}

}  // namespace qbench::report::detail
