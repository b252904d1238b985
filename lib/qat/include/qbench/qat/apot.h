#pragma once
// APoT: Additive Powers-of-Two quantization (Li, Dong & Wang, ICLR 2020, arXiv:1909.13144).
//
// Section names below are the paper's (Methodology: "Additive Powers-of-Two quantization",
// "Reparameterized clipping function" (RCF), "Weight normalization").
// Weights:
//   * weight normalisation: w_hat = (w - mean(w)) / std(w), statistics taken without
//     gradient as in the authors' CIFAR code (`weight.data.mean()`, `.std()`, unbiased std; their
//     ImageNet code lets the gradient flow through mean and std);
//   * reparameterised clipping function (RCF):
//         w_q = alpha * Proj_{Q(1, b)}( clip(w_hat / alpha, -1, 1) ),
//     Proj = nearest level of the APoT set with clipping threshold 1, sign kept;
//   * gradients (RCF): straight-through for Proj, so d w_q / d w_hat = 1 inside [-alpha,
//     alpha] and 0 outside (the authors' ImageNet code; their CIFAR code passes 1 everywhere);
//     d w_q / d alpha = sign(w_hat) outside, Proj(w_hat/alpha) - w_hat/alpha inside;
//   * alpha learnable, initialised to 3.0 (authors' code: clipping at 3 standard deviations).
//   The level set follows the authors' `build_power_value(B = b - 1)` exactly (one bit is the
//   sign): b = 3 -> single powers of two {0, 1/4, 1/2, 1}; b = 4 -> sums of two PoT terms
//   {0, .1, .2, .3, .4, .6, .8, 1}; b = 5, 6, 7 -> the authors' two/three-term sets. b = 2 is
//   uniform ternary {0, 1} (the authors' code quantizes 2-bit weights uniformly), and b = 8,
//   which build_power_value does not cover, is uniform with 127 magnitudes (the authors keep
//   8-bit layers uniform).
//   Output scale: the authors feed the normalised w_q straight into the convolution (a BN
//   follows). We multiply by the detached std (option `restore_scale`, on by default) so the
//   layer keeps its units: a positive per-layer constant that a following BN absorbs, needed
//   for a layer without BN (the classifier) and for starting from pretrained FP32 weights. The
//   representable set is then std * alpha * levels, still symmetric APoT.
// Activations: RCF with uniform levels and a learnable clipping alpha. (The authors' code can
// also project activations onto APoT levels, build_power_value(B = b); we keep them uniform so
// the activation grid stays affine and integer-lowerable; see affine_qparams()):
//   x_q = alpha * round(clip(x/alpha, 0, 1) * (2^b - 1)) / (2^b - 1)   (unsigned, after ReLU)
//   x_q = alpha * round(clip(x/alpha, -1, 1) * (2^(b-1) - 1)) / (2^(b-1) - 1)   (signed input)
//   with the same RCF gradient: d/d alpha = 1 (sign(x) when signed) above the clip,
//   q - x/alpha inside (the authors' `act_quantization` backward; PACT instead drops the inside
//   term), STE for x inside, 0 outside. alpha is initialised from the data: max |x| observed
//   (the authors hard-code 8.0 on CIFAR and 6.0 on ImageNet for ReLU outputs).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

/// The non-negative APoT magnitudes for a b-bit signed weight (b = 2..8), sorted ascending,
/// normalised so the largest is 1 (0 included). See the header comment for the construction.
std::vector<double> apot_weight_levels(int bits);

/// RCF on normalised weights: alpha * Proj(clip(w_hat/alpha, -1, 1)) with STE for Proj.
/// `levels` is the sorted magnitude tensor from apot_weight_levels.
at::Tensor apot_rcf(const at::Tensor& w_hat, const at::Tensor& alpha, const at::Tensor& levels);

class ApotWeightQuantizer : public FakeQuantizer {
 public:
  explicit ApotWeightQuantizer(QuantScheme scheme, double alpha_init = 3.0, bool restore_scale = true);
  at::Tensor forward(const at::Tensor& w) override;
  /// alpha = alpha_init (the weights are normalised, so no range statistic is needed); throws
  /// when nothing was observed.
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override { return {alpha_}; }
  /// alpha = step * m / std(w): the grid's step over APoT's m = 2^(b-1) - 1 positive levels, in
  /// the normalised weights' units (std of the observed weight, as forward() normalises).
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  const at::Tensor& alpha() const { return alpha_; }
  const at::Tensor& levels() const { return levels_; }  ///< magnitudes, ascending, max 1
  bool restore_scale() const { return restore_scale_; }

 private:
  double alpha_init_;
  bool restore_scale_;
  int64_t observed_ = 0;
  double observed_std_ = 1.0;  ///< forward()'s normalising std of the last observed weight
  at::Tensor alpha_, levels_, midpoints_;
};

class ApotActivationQuantizer : public FakeQuantizer {
 public:
  explicit ApotActivationQuantizer(QuantScheme scheme);
  at::Tensor forward(const at::Tensor& x) override;
  /// alpha = max |x| observed (1 for an all-zero input); signedness resolved from the data.
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override { return {alpha_}; }
  /// Uniform with zero point 0: scale alpha / (2^b - 1) on [0, 2^b - 1], or
  /// alpha / (2^(b-1) - 1) on [-(2^(b-1) - 1), 2^(b-1) - 1] when signed.
  std::optional<QParams> affine_qparams() const override;
  /// alpha = max(|lo|, |hi|).
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  const at::Tensor& alpha() const { return alpha_; }
  bool is_signed() const { return signed_; }
  int64_t positive_levels() const;  ///< 2^b - 1 unsigned, 2^(b-1) - 1 signed

 private:
  bool signed_ = false;
  int64_t observed_ = 0;
  double obs_min_ = 0.0, obs_absmax_ = 0.0;
  at::Tensor alpha_;
};

}  // namespace qbench::qat
