#include "qbench/runner/registries.h"

#include <cstdio>
#include <map>
#include <mutex>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/profile.h"
#include "qbench/sysnoise/noise.h"

namespace qbench::runner {

void ensure_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto& r = quant::algorithm_registry();
    r.add("fp32", {CellKind::Fp32, "the FP32 baseline (trained once per arch, dataset, recipe and seed)", nullptr});
    ptq::register_algorithms(r);
    qat::register_algorithms(r);
  });
}

config::Catalog build_catalog() {
  ensure_registered();
  config::Catalog c;
  for (const auto& e : quant::algorithm_registry().entries()) {
    c.algorithms.push_back({e.first, e.second.kind, e.second.settings});
    if (!e.second.nonuniform.empty()) c.nonuniform_algorithms[e.first] = e.second.nonuniform;
  }
  c.archs = models::arch_registry().names();
  c.datasets = data::dataset_registry().names();
  for (const auto& e : data::dataset_registry().entries()) c.dataset_options[e.first] = e.second.options;
  c.profiles = quant::profile_registry().names();
  for (const auto& e : quant::profile_registry().entries()) {
    c.profile_hashes[e.first] = e.second.spec.canonical_sha256();
    c.profile_bn_fold[e.first] = e.second.bn_fold;
    const auto& s = e.second.spec;
    c.profile_widths[e.first] = {s.weight.bits, s.activation.bits, s.weight.max_bits, s.activation.max_bits,
                                 s.roofline.declared()};
  }
  for (const auto& e : quant::profile_registry().entries())
    if (!e.second.spec.not_implemented.empty())
      c.unrunnable_profiles[e.first] = join(e.second.spec.not_implemented, "; ");
  using config::Refusal;
  const std::string qat = "planned QAT method (not in the quantizer library yet)";
  for (const char* n : {"lsq", "lsq+", "pact", "dsq", "dorefa", "apot", "qil", "tqt", "binary"})
    if (!quant::algorithm_registry().contains(n)) c.refused_algorithms[n] = {Refusal::Why::NotImplemented, qat};
  for (const auto& e : quant::observer_registry().entries()) c.observers.push_back(e.first);
  const std::string src = "a calibration source, not an algorithm: set pipeline.ptq.calibration.source";
  for (const char* n : {"zeroq", "dsg"}) c.refused_algorithms[n] = {Refusal::Why::ElsewhereInFile, src};
  for (const auto& n : sysnoise::noises()) c.noises.push_back({n.name, sysnoise::kind_name(n.kind), n.description});
  return c;
}

std::vector<std::string> list_kinds() { return {"algorithms", "archs", "datasets", "profiles", "observers"}; }

std::vector<ListEntry> list_registry(const std::string& what) {
  ensure_registered();
  std::vector<ListEntry> out;
  if (what == "algorithms") {
    const auto& entries = quant::algorithm_registry().entries();
    // A shared settings table (adaround, brecq and qdrop read pipeline.ptq.reconstruction) is
    // printed once, under the first algorithm that reads it.
    std::map<std::string, std::vector<std::string>> readers;
    for (const auto& e : entries)
      if (!e.second.settings.empty()) readers[e.second.settings.id()].push_back(e.first);
    for (const auto& e : entries) {
      ListEntry l{e.first, to_string(e.second.kind), e.second.description, {}};
      const SettingsSection& sec = e.second.settings;
      if (sec.empty()) {
        l.details.push_back("settings: none");
        out.push_back(std::move(l));
        continue;
      }
      const auto& names = readers[sec.id()];
      std::string line = "settings: pipeline." + sec.id();
      if (names.size() > 1) line += " (read by " + join(names, ", ") + ")";
      if (names.front() != e.first) {
        l.details.push_back(line + "; listed under " + names.front());
        out.push_back(std::move(l));
        continue;
      }
      l.details.push_back(line);
      for (const auto& o : sec.options) {
        char buf[512];
        std::snprintf(buf, sizeof buf, "  %-12s %-18s default %-7s %s%s%s%s", o.name.c_str(), o.range_text().c_str(),
                      o.def.dump().c_str(), o.help.c_str(), o.paper.empty() ? "" : "; papers: ", o.paper.c_str(),
                      o.in_key ? "" : " (not in the cell key: cannot change a result)");
        l.details.push_back(buf);
      }
      out.push_back(std::move(l));
    }
    for (const auto& [name, why] : build_catalog().refused_algorithms)
      out.push_back({name, "-",
                     (why.why == config::Refusal::Why::NotImplemented ? "not implemented yet: " : "") + why.message, {}});
  } else if (what == "archs") {
    // Sizes are measured on the built network (one forward pass at the reference input), next to
    // the published figures they are tested against.
    for (const auto& e : models::arch_registry().entries()) {
      const auto spec = models::reference_spec(e.first);
      auto m = models::make_model(e.first, spec);
      char buf[160];
      std::snprintf(buf, sizeof buf, "%.2fM params, %.3f GMACs at %lldx%lldx%lld", models::parameter_count(*m) / 1e6,
                    models::count_macs(*m, spec) / 1e9, static_cast<long long>(spec.in_channels),
                    static_cast<long long>(spec.image_size), static_cast<long long>(spec.image_size));
      std::string d = buf;
      if (e.second.published_params) {
        std::snprintf(buf, sizeof buf, " (published %.2fM, %.3fG)", e.second.published_params / 1e6,
                      e.second.published_gmacs);
        d += buf;
      }
      out.push_back({e.first, "", e.second.description + "\n      " + d, {}});
    }
  } else if (what == "datasets") {
    for (const auto& e : data::dataset_registry().entries()) out.push_back({e.first, "", e.second.description, {}});
  } else if (what == "profiles") {
    for (const auto& e : quant::profile_registry().entries())
      out.push_back({e.first, "", e.second.description + "\n      " + e.second.spec.summary(), {}});
  } else if (what == "observers") {
    for (const auto& e : quant::observer_registry().entries()) out.push_back({e.first, "", e.second.description, {}});
  } else {
    throw UnknownNameError("unknown list '" + what + "'" + did_you_mean(what, list_kinds()));
  }
  return out;
}

}  // namespace qbench::runner
