#include "qbench/quant/profile.h"

namespace qbench::quant {

namespace {
void register_builtin_profiles(Registry<Profile>& r) {
  Profile academic;
  academic.name = "academic";
  academic.description =
      "academic setting: per-tensor symmetric weights, per-tensor activations (unsigned when non-negative) at the "
      "inputs of conv/linear only, BN not folded, first and last layer at 8 bits";
  academic.source = "MQBench (Li et al. 2021, arXiv:2111.03759), Sec. 3 and mqbench-paper academic config";
  academic.weight.granularity = Granularity::PerTensor;
  academic.weight.symmetric = true;
  academic.weight.signedness = Signedness::Signed;
  academic.activation.granularity = Granularity::PerTensor;
  academic.activation.symmetric = true;
  academic.activation.signedness = Signedness::Auto;
  academic.first_last_8bit = true;
  academic.fold_bn = false;
  r.add("academic", academic);
}
}  // namespace

Registry<Profile>& profile_registry() {
  static Registry<Profile> reg = [] {
    Registry<Profile> r("profile");
    register_builtin_profiles(r);
    return r;
  }();
  return reg;
}

}  // namespace qbench::quant
