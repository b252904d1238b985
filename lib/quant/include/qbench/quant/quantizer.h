#pragma once
// Fake quantizers as modules. Every quantizer, fixed (observer-calibrated, for PTQ) or learnable
// (LSQ, PACT, ... for QAT), follows one protocol that the runners drive:
//   1. set_observing(true); forward calibration batches  -> statistics are collected
//   2. compute_qparams()                                -> scale/zero point (or the learnable
//                                                          parameters' initial values) are set
//   3. set_quantizing(true); forward                    -> fake-quantized output
#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/quant/fake_quant.h"
#include "qbench/quant/observer.h"

namespace qbench::quant {

class FakeQuantizer : public torch::nn::Module {
 public:
  explicit FakeQuantizer(QuantScheme scheme) : scheme_(scheme) {}
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  virtual void set_observing(bool on) { observing_ = on; }
  /// Throws qbench::Error when turned on before compute_qparams().
  virtual void set_quantizing(bool on);
  /// Freezes what was observed into the quantizer's parameters (initial values for learnable ones).
  virtual void compute_qparams() = 0;
  /// Learnable quantizer parameters (step sizes, clipping levels...): trained in their own
  /// parameter group. Empty for fixed quantizers.
  virtual std::vector<at::Tensor> quant_parameters() { return {}; }
  /// Weight decay for quant_parameters() (e.g. PACT's L2 penalty on alpha); 0 = none.
  virtual double quant_weight_decay() const { return 0.0; }
  /// The affine scale/zero point equivalent to the current state, when the quantizer is affine
  /// (used for integer lowering and reports); nullopt for non-uniform quantizers (APoT, DSQ...).
  virtual std::optional<QParams> affine_qparams() const { return std::nullopt; }
  /// QAT (pipeline.qat.range_init: mse): after compute_qparams(), restarts the learnable range
  /// from `qp`, a range the shared observer library picked on the same observations, so that
  /// every method starts from the same quantizer. Returns false where the method has no
  /// learnable range to set (DoReFa's tanh-normalised weights) and keeps its own start.
  virtual bool init_range(const QParams& qp) {
    (void)qp;
    return false;
  }
  virtual std::string describe() const = 0;

  bool observing() const { return observing_; }
  bool quantizing() const { return quantizing_; }
  bool ready() const { return ready_; }
  const QuantScheme& scheme() const { return scheme_; }

 protected:
  QuantScheme scheme_;
  bool observing_ = false, quantizing_ = false, ready_ = false;
};

/// Observer-calibrated affine quantizer with frozen scale/zero point (PTQ).
class QuantizerImpl : public FakeQuantizer {
 public:
  QuantizerImpl(QuantScheme scheme, std::unique_ptr<Observer> observer);

  /// Observing: folds x into the observer. Quantizing: returns fake_quantize(x) with the frozen
  /// parameters. Both may be on (observe then quantize); neither: identity.
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  std::optional<QParams> affine_qparams() const override { return qparams_; }
  std::string describe() const override;

  const QParams& qparams() const { return qparams_; }
  void set_qparams(const QParams& qp);
  Observer& observer() { return *observer_; }

 private:
  std::unique_ptr<Observer> observer_;
  QParams qparams_;
};

}  // namespace qbench::quant
