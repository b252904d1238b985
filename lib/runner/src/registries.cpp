#include "qbench/runner/registries.h"

#include <mutex>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/profile.h"

namespace qbench::runner {

void ensure_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto& r = quant::algorithm_registry();
    r.add("fp32", {"fp32", "the FP32 baseline (trained once per arch, dataset, recipe and seed)", nullptr});
    ptq::register_algorithms(r);
    qat::register_algorithms(r);
  });
}

config::Catalog build_catalog() {
  ensure_registered();
  config::Catalog c;
  for (const auto& e : quant::algorithm_registry().entries()) c.algorithms.push_back({e.first, e.second.kind});
  c.archs = models::arch_registry().names();
  c.datasets = data::dataset_registry().names();
  c.profiles = quant::profile_registry().names();
  const std::string qat = "planned QAT method (not in the quantizer library yet)";
  for (const char* n : {"lsq", "lsq+", "pact", "dsq", "dorefa", "apot", "qil", "tqt", "binary"})
    if (!quant::algorithm_registry().contains(n)) c.planned_algorithms[n] = qat;
  for (const auto& e : quant::observer_registry().entries()) c.observers.push_back(e.first);
  const std::string adv = "advanced PTQ is planned (issue: AdaRound, BRECQ, QDrop and data-free calibration)";
  for (const char* n : {"adaround", "brecq", "qdrop", "zeroq", "dsg"}) c.planned_algorithms[n] = adv;
  return c;
}

std::vector<std::string> list_kinds() { return {"algorithms", "archs", "datasets", "profiles", "observers"}; }

std::vector<ListEntry> list_registry(const std::string& what) {
  ensure_registered();
  std::vector<ListEntry> out;
  if (what == "algorithms") {
    for (const auto& e : quant::algorithm_registry().entries()) out.push_back({e.first, e.second.kind, e.second.description});
  } else if (what == "archs") {
    for (const auto& e : models::arch_registry().entries()) out.push_back({e.first, "", e.second.description});
  } else if (what == "datasets") {
    for (const auto& e : data::dataset_registry().entries()) out.push_back({e.first, "", e.second.description});
  } else if (what == "profiles") {
    for (const auto& e : quant::profile_registry().entries()) out.push_back({e.first, "", e.second.description});
  } else if (what == "observers") {
    for (const auto& e : quant::observer_registry().entries()) out.push_back({e.first, "", e.second.description});
  } else {
    throw UnknownNameError("unknown list '" + what + "'" + did_you_mean(what, list_kinds()));
  }
  return out;
}

}  // namespace qbench::runner
