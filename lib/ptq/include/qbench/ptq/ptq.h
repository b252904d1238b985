#pragma once
// Post-training quantization algorithms.
#include "qbench/quant/algorithm.h"

namespace qbench::ptq {

/// Observer calibration: attach quantizers per the profile, run the calibration images through
/// the FP32 model while the observers watch, freeze scales and zero points, quantize.
class MinMaxCalibration : public quant::Algorithm {
 public:
  void apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) override;
};

/// The same observer calibration with the observers the matrix names in pipeline.ptq.observer
/// (e.g. {weight: minmax, activation: mse}); `minmax` is this with minmax for both.
class ObserverCalibration : public quant::Algorithm {
 public:
  void apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) override;
};

/// Runs calibration batches through the model with every quantizer observing (and, so that
/// later layers see the quantized activations of earlier ones, not quantizing), then freezes.
void calibrate_observers(quant::QuantModel& model, quant::AlgorithmContext& ctx);

/// Adds the PTQ algorithms to the registry.
void register_algorithms(Registry<quant::AlgorithmEntry>& r);

}  // namespace qbench::ptq
