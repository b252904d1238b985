#pragma once
// The QAT runner: attaches a QAT method's quantizers under the cell's profile, initialises them
// on a few training images, then fine-tunes the whole network with the aligned QAT recipe.
#include <string>
#include <vector>

#include "qbench/quant/algorithm.h"
#include "qbench/qat/method.h"

namespace qbench::qat {

class QatAlgorithm : public quant::Algorithm {
 public:
  explicit QatAlgorithm(std::string method) : method_(std::move(method)) {}
  void apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) override;

 private:
  std::string method_;
};

/// Attaches the method's weight and activation quantizers to every conv/linear layer (first and
/// last layer at 8 bits when the profile says so; 32 bits stays float). Returns how many.
int attach_qat_quantizers(quant::QuantModel& model, const QatMethod& method, const quant::Profile& profile,
                          int w_bits, int a_bits);

/// The method's activation quantizer as attach_qat_quantizers makes it from a profile's scheme:
/// an unsigned affine scheme (uint8 with a zero point) is handed over as signedness Auto, so a
/// method without a learned offset takes its signed grid (the unsigned grid with zero point
/// 2^(b-1)) on an edge observed negative instead of clipping it at 0.
std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> qat_activation_factory(const QatMethod& method);

/// Initialises every quantizer from `images` (observe, then compute_qparams) and turns
/// quantization on.
void init_quantizers(quant::QuantModel& model, const at::Tensor& images, int64_t batch_size);

/// The ranges the shared MSE observer picks for every quantizer the profile places, in
/// QuantModel::quantizers() order: attaches observer-calibrated quantizers (replaced by the next
/// attach), calibrates them on `images` and reads their grids. pipeline.qat.range_init: mse.
std::vector<quant::QParams> mse_ranges(quant::QuantModel& model, const quant::Profile& profile, int w_bits,
                                       int a_bits, const at::Tensor& images, int64_t batch_size);

/// Restarts each quantizer's learnable range from ranges[i] (FakeQuantizer::init_range), after
/// init_quantizers. Returns how many quantizers took it; the others keep their method's start.
int restart_ranges(quant::QuantModel& model, const std::vector<quant::QParams>& ranges);

/// Adds every QAT method of qat_method_registry() to the algorithm registry (kind "qat").
void register_algorithms(Registry<quant::AlgorithmEntry>& r);

}  // namespace qbench::qat
