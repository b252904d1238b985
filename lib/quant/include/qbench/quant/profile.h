#pragma once
// Hardware profiles: how a deployment target quantizes a network. Only `academic` here; the
// profiles-as-data issue turns this into validated YAML files.
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/scheme.h"

namespace qbench::quant {

struct Profile {
  std::string name;
  std::string description;
  std::string source;  ///< where the facts come from
  QuantScheme weight;  ///< bits filled per cell
  QuantScheme activation;
  std::string weight_observer = "minmax";
  std::string activation_observer = "minmax";
  bool first_last_8bit = true;  ///< first and last layer: weights and their input at 8 bits
  bool fold_bn = false;
};

Registry<Profile>& profile_registry();

}  // namespace qbench::quant
