#pragma once
// PACT and DoReFa-Net fake quantizers (registered as QAT methods "pact" and "dorefa" by
// register_pact_dorefa in src/methods/pact_dorefa.cpp). Public so the numeric tests can check
// them against the papers' formulas.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

/// DoReFa's quantize_k (Zhou et al. 2016, Eq. 5): round((2^k - 1) r) / (2^k - 1) for r in [0, 1],
/// with the straight-through estimator (dq/dr = 1).
at::Tensor dorefa_quantize_k(const at::Tensor& r, int bits);

/// DoReFa weight quantization (Eq. 9): w_q = 2 quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1.
/// Autograd differentiates tanh and the max as the paper's TensorFlow code does; only the
/// rounding is straight-through. The result lies in [-1, 1] and is used as the weight directly.
at::Tensor dorefa_weight(const at::Tensor& w, int bits);

/// PACT (Choi et al. 2018, Eqs. 1-3): y = clip(x, 0, alpha) (or clip(x, -alpha, alpha) when
/// `is_signed`), y_q = round(y n / alpha) alpha / n with n = 2^b - 1 (signed: 2^(b-1) - 1).
/// Gradients: dy_q/dx = 1 on [0, alpha) (signed: (-alpha, alpha)), 0 elsewhere; dy_q/dalpha = 1
/// where x >= alpha (signed: -1 where x <= -alpha), 0 elsewhere - Eq. 3, which passes the
/// rounding straight through and does not differentiate the step alpha / n.
at::Tensor pact_fake_quantize(const at::Tensor& x, const at::Tensor& alpha, int bits, bool is_signed);

/// DoReFa-Net weights (Zhou et al. 2016, "DoReFa-Net", arXiv:1606.06160, Eq. 9). No learnable
/// parameters. Also PACT's weight quantizer: Choi et al. 2018 quantize weights with DoReFa.
class DorefaWeightQuantizer : public FakeQuantizer {
 public:
  explicit DorefaWeightQuantizer(QuantScheme scheme);
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  /// Always nullopt: the levels (2k - (2^b - 1)) / (2^b - 1), k = 0..2^b-1, are uniform but have
  /// no integer zero point (it would be (2^b - 1) / 2), and they are a function of tanh(w), not w.
  std::optional<QParams> affine_qparams() const override { return std::nullopt; }
  std::string describe() const override;

 private:
  bool observed_ = false;
};

/// DoReFa-Net activations (Zhou et al. 2016, Eq. 11): quantize_k(clip(a, 0, 1)), STE. No learnable
/// parameters. Signed inputs (Signedness::Signed, or Auto with a negative observed minimum - in
/// practice only the image fed to the first layer, which the paper leaves unquantized) use our
/// symmetric extension round(clip(a, -1, 1) n) / n with n = 2^(b-1) - 1.
class DorefaActivationQuantizer : public FakeQuantizer {
 public:
  /// `calibrated_range` false: the paper's Eq. 11 exactly, q(clip(a, 0, 1)). True: the same
  /// quantizer on a fixed range r taken at initialisation (r = the observed max |a|):
  /// r * q(clip(a / r, 0, 1)). The paper trains from scratch, so its activations learn to live
  /// in [0, 1]; starting from a pretrained FP32 network (the aligned pipeline) they do not, and
  /// clipping them at 1 costs ~10 points before any training. r = 1 reduces to Eq. 11.
  explicit DorefaActivationQuantizer(QuantScheme scheme, bool calibrated_range = false);
  double range() const { return range_; }
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  /// scale 1 / n, zero point 0, range [0, n] (signed: [-n, n]).
  std::optional<QParams> affine_qparams() const override;
  /// With a calibrated range: r = max(|lo|, |hi|). Eq. 11's fixed r = 1 has none to set.
  bool init_range(const QParams& qp) override;
  std::string describe() const override;
  bool is_signed() const { return signed_; }

 private:
  bool observed_ = false, signed_ = false, calibrated_range_ = false;
  double observed_min_ = 0.0, observed_absmax_ = 0.0, range_ = 1.0;
};

struct PactOptions {
  /// Initial clipping level: 10 in Choi et al. 2018 (MQBench's PACTFakeQuantize uses 6).
  double alpha_init = 10.0;
  /// L2 penalty lambda_alpha on alpha (the paper regularises alpha; see qat_pact_dorefa.cpp).
  double alpha_weight_decay = 5e-4;
};

/// PACT activations (Choi et al. 2018, "PACT: Parameterized Clipping Activation for Quantized
/// Neural Networks", arXiv:1805.06085, Eqs. 1-3) with a learnable clipping level alpha.
/// Unsigned (the paper: inputs after ReLU) unless the scheme says Signed or, with Auto, the
/// observed input goes negative; then our symmetric extension clip(x, -alpha, alpha) on the
/// narrow signed grid (as MQBench's symmetric PACT, with one alpha for both sides).
class PactQuantizer : public FakeQuantizer {
 public:
  explicit PactQuantizer(QuantScheme scheme, PactOptions options = {});
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override { return {alpha_}; }
  double quant_weight_decay() const override { return options_.alpha_weight_decay; }
  /// scale alpha / n, zero point 0, range [0, n] (signed: [-n, n]).
  std::optional<QParams> affine_qparams() const override;
  /// alpha = max(|lo|, |hi|).
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  const at::Tensor& alpha() const { return alpha_; }
  bool is_signed() const { return signed_; }

 private:
  PactOptions options_;
  at::Tensor alpha_;
  bool observed_ = false, signed_ = false;
  double observed_min_ = 0.0;
};

}  // namespace qbench::qat
