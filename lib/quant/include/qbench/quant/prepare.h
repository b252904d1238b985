#pragma once
// Configures a model's quantizers from a profile by walking its declared structure: conv/linear
// layers (weights and inputs) and residual adds (operands and output), as the profile's
// placement says. No per-model code.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"

namespace qbench::quant {

struct PrepareOptions {
  int w_bits = 8, a_bits = 8;  ///< 32 leaves that tensor in float
  std::string weight_observer, activation_observer;  ///< empty: the profile's default
};

/// Makes one quantizer for a scheme (bits already set): observer-calibrated for PTQ, a QAT
/// method's learnable quantizer for QAT.
struct QuantizerFactory {
  std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> weight, activation;
};

/// Attaches quantizers where the profile places them, with the widths of the cell (first/last
/// layer at 8 bits when the profile says so; the profile's allowed widths and max_bits apply), or
/// a layer's own widths where the model carries a bit allocation (QuantModel::bit_allocation):
///   conv_linear_inputs  every conv/linear input     graph_input  the first layer's input
///   add_inputs          both operands of every add   add_outputs  every add's output
/// Placements a profile lists that are not implemented yet are skipped with a warning (once per
/// profile). Throws qbench::Error for a profile that cannot run (e.g. a log-domain quantizer).
/// Returns the number of quantizers attached.
int attach_quantizers(QuantModel& model, const Profile& profile, int w_bits, int a_bits,
                      const QuantizerFactory& make);

/// attach_quantizers with observer-calibrated quantizers (the profile's observers unless `opt` names them).
int prepare_model(QuantModel& model, const Profile& profile, const PrepareOptions& opt);

void set_observing(QuantModel& model, bool on);
void set_quantizing(QuantModel& model, bool on);
/// Freezes every observer into scale/zero point.
void compute_all_qparams(QuantModel& model);

/// The observer protocol in one call: in eval mode and without gradients, runs `images` through
/// the model in batches of `batch_size` with every quantizer observing (not quantizing), freezes
/// the observed ranges, then turns quantization on. `after_batch(done, total)` (may be empty) is
/// called after each batch, e.g. for progress or to honour an interrupt.
void calibrate(QuantModel& model, const at::Tensor& images, int64_t batch_size,
               const std::function<void(int64_t, int64_t)>& after_batch = {});

}  // namespace qbench::quant
