#include "qbench/quant/profile.h"

#include <algorithm>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/quant/observer.h"

namespace qbench::quant {

namespace {
QuantScheme scheme_from_spec(const profiles::SchemeSpec& s) {
  QuantScheme q;
  q.granularity = s.granularity == "per-channel" ? Granularity::PerChannel : Granularity::PerTensor;
  q.ch_axis = s.axis;
  q.symmetric = s.symmetric;
  q.signedness = s.signedness == "unsigned" ? Signedness::Unsigned
                 : s.signedness == "auto"   ? Signedness::Auto
                                            : Signedness::Signed;
  q.narrow_range = s.narrow_range;
  q.pot_scale = s.pot_scale;
  q.pot_max_frac_bits = s.pot_max_frac_bits;
  return q;
}
}  // namespace

Profile profile_from_spec(const profiles::ProfileSpec& spec) {
  Profile p;
  p.name = spec.name;
  p.description = spec.description;
  p.source = spec.source;
  p.weight = scheme_from_spec(spec.weight);
  p.activation = scheme_from_spec(spec.activation);
  p.weight_observer = spec.weight.observer;
  p.activation_observer = spec.activation.observer;
  p.first_last_8bit = spec.first_last == "8bit";
  p.bn_fold = spec.bn_fold;
  p.spec = spec;
  return p;
}

int effective_bits(const Profile& p, bool weight, int cell_bits) {
  if (cell_bits >= 32) return 32;
  const auto& s = weight ? p.spec.weight : p.spec.activation;
  if (std::find(s.bits.begin(), s.bits.end(), cell_bits) == s.bits.end()) {
    std::vector<std::string> ok;
    for (int b : s.bits) ok.push_back(std::to_string(b));
    throw Error("profile " + p.name + " does not quantize " + (weight ? "weights" : "activations") + " at " +
                      std::to_string(cell_bits) + " bits (allowed: " + join(ok, ", ") + "; " + p.spec.file + ")");
  }
  return std::min(cell_bits, s.max_bits);
}

Registry<Profile>& profile_registry() {
  static Registry<Profile> reg = [] {
    Registry<Profile> r("profile");
    for (const auto& spec : profiles::load_default_profiles(observer_registry().names()))
      r.add(spec.name, profile_from_spec(spec));
    return r;
  }();
  return reg;
}

}  // namespace qbench::quant
