#pragma once
// Configures a model's quantizers from a profile by walking its declared layers.
#include <string>

#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"

namespace qbench::quant {

struct PrepareOptions {
  int w_bits = 8, a_bits = 8;  ///< 32 leaves that tensor in float
  std::string weight_observer, activation_observer;  ///< empty: the profile's default
};

/// Attaches weight and input quantizers to every conv/linear layer (first/last layer at 8 bits
/// when the profile says so). Returns the number of quantizers attached.
int prepare_model(QuantModel& model, const Profile& profile, const PrepareOptions& opt);

void set_observing(QuantModel& model, bool on);
void set_quantizing(QuantModel& model, bool on);
/// Freezes every observer into scale/zero point.
void compute_all_qparams(QuantModel& model);

}  // namespace qbench::quant
