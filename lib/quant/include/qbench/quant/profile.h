#pragma once
// Hardware profiles: how a deployment target quantizes a network. The profiles are data: YAML
// files read and validated by lib/profiles (experiments/profiles/ plus $QBENCH_PROFILES_DIR),
// turned here into QuantSchemes. A cell's profile name selects one.
#include <string>
#include <vector>

#include "qbench/common/registry.h"
#include "qbench/profiles/profiles.h"
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
  int bn_fold = -1;             ///< MQBench BN folding strategy (-1 = not folded)
  profiles::ProfileSpec spec;   ///< everything the file says (placement, allowed bits, engine...)
};

/// A validated profile file as a runnable profile (schemes with bits left at 8).
Profile profile_from_spec(const profiles::ProfileSpec& spec);

/// The profiles read from the search path on first use (a bad file throws ConfigError, naming it).
Registry<Profile>& profile_registry();

/// The bit width a tensor is quantized at in a cell: the cell's width, checked against the
/// profile's allowed widths and capped at its max_bits (32 stays float). Throws qbench::Error
/// naming the profile when the target does not accept the width.
int effective_bits(const Profile& p, bool weight, int cell_bits);

}  // namespace qbench::quant
