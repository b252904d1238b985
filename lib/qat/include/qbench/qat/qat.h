#pragma once
// The QAT runner: attaches a QAT method's quantizers under the cell's profile, initialises them
// on a few training images, then fine-tunes the whole network with the aligned QAT recipe.
#include <string>

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

/// Initialises every quantizer from `images` (observe, then compute_qparams) and turns
/// quantization on.
void init_quantizers(quant::QuantModel& model, const at::Tensor& images, int64_t batch_size);

/// Adds every QAT method of qat_method_registry() to the algorithm registry (kind "qat").
void register_algorithms(Registry<quant::AlgorithmEntry>& r);

}  // namespace qbench::qat
