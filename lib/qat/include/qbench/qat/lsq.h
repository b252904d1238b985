#pragma once
// LSQ and LSQ+ learnable fake quantizers (registered as QAT methods "lsq" and "lsq+" by
// register_lsq in src/methods/lsq.cpp). The classes are public so the numeric tests can check
// the forward pass, the gradients and the initialisation against the papers' formulas.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

/// Which tensor a QAT quantizer sits on: the two papers treat weights and activations differently.
enum class QatRole { Weight, Activation };

/// Smallest step size (and LSQ+ scale) the quantizers use: float epsilon, as PyTorch's observers
/// and MQBench's LearnableFakeQuantize do. An all-zero tensor would otherwise give s = 0 and a
/// NaN forward (x / s).
constexpr double kLsqMinStep = 1.1920928955078125e-07;

/// LSQ forward (Esser et al. 2019, Eqs. 1-2): round(clip(x / s, qmin, qmax)) * s, with the
/// paper's gradients (Eq. 3) derived by autograd from round_ste, and the step's gradient scaled
/// by g (Sec. 2, "step size gradient scale") through grad_scale. `s` has one element (per tensor) or one per channel
/// along `ch_axis` (ch_axis >= 0). Exposed for the tests.
at::Tensor lsq_fake_quantize(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g,
                             int64_t ch_axis = -1);

/// LSQ+ forward (Bhalgat et al. 2020, Sec. 3, learnable asymmetric quantization): round(clip((x - beta) / s, qmin,
/// qmax)) * s + beta, per tensor; the gradients of s and beta are scaled by g.
at::Tensor lsq_plus_fake_quantize(const at::Tensor& x, const at::Tensor& s, const at::Tensor& beta, int64_t qmin,
                                  int64_t qmax, double g);

/// LSQ's gradient scale g = 1 / sqrt(N * Qp) (Esser et al. 2019, Sec. 2, "step size gradient scale"). N is the number
/// of elements one step size serves: weights numel (per channel: numel / channels); activations the number of features
/// of one sample, numel / batch, which is the paper's N_F. (MQBench uses the numel of the whole batch for activations;
/// we follow the paper.)
double lsq_grad_scale(const at::Tensor& x, QatRole role, int64_t ch_axis, int64_t qp);

/// LSQ (Esser et al. 2019, "Learned Step Size Quantization", arXiv:1902.08153).
///   Weights: signed [-2^(b-1), 2^(b-1)-1] (narrow range honoured), per tensor or per output
///   channel (scheme.granularity). Activations: per tensor; unsigned [0, 2^b-1] when the observed
///   input is non-negative (Signedness::Auto, decided at compute_qparams), else signed.
///   Init (Sec. 2): s = 2 <|v|> / sqrt(Qp), <|v|> averaged over the observed batches.
///   Weights are always symmetric signed (the paper's weight quantizer): scheme.symmetric and
///   scheme.signedness are not consulted for them.
class LsqQuantizer : public FakeQuantizer {
 public:
  LsqQuantizer(QuantScheme scheme, QatRole role);
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override { return {scale_}; }
  std::optional<QParams> affine_qparams() const override;
  /// s = (hi - lo) / (qmax - qmin) of the given grid's range, per channel where both are.
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  QatRole role() const { return role_; }
  const at::Tensor& step() const { return scale_; }
  QRange range() const { return range_; }
  int64_t ch_axis() const { return per_channel_ ? scheme_.ch_axis : -1; }

 private:
  void observe(const at::Tensor& x);

  QatRole role_;
  bool per_channel_ = false;
  QRange range_;
  at::Tensor scale_;  ///< learnable step size: shape {1}, or {channels} per channel
  // What was observed: the running sum of per-batch mean |x| (per channel for per-channel
  // weights), the number of batches and the smallest value seen (Auto signedness).
  at::Tensor sum_mean_abs_;
  int64_t batches_ = 0;
  double observed_min_ = 0.0;
};

/// LSQ+ (Bhalgat et al. 2020, "LSQ+: Improving low-bit quantization through learnable offsets
/// and better initialization", arXiv:2004.09576).
///   Activations: asymmetric, x^ = round(clip((x - beta) / s, n, p)) * s + beta with learnable s
///   and beta (Sec. 3); unsigned [0, 2^b-1] (the offset absorbs negative values, so no sign bit
///   is spent; Signedness::Signed in the scheme keeps a signed range). Init (Sec. 3,
///   initialisation): s and beta minimising ||x^ - x||^2 on the observed batches (see
///   init_activation in src/qat_lsq.cpp). Weights: symmetric signed as in LSQ, initialised with
///   s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1) (Sec. 3, initialisation), per tensor or
///   per channel. The gradients of s and beta are both scaled by LSQ's g.
///   affine_qparams: zero point round(-beta / s) (the learned offset is continuous, so this is
///   the nearest integer), nullopt when that falls outside the integer range.
class LsqPlusQuantizer : public FakeQuantizer {
 public:
  LsqPlusQuantizer(QuantScheme scheme, QatRole role);
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override;
  std::optional<QParams> affine_qparams() const override;
  /// s as LSQ's; activations also beta = lo - s * qmin, so the grid starts at the range's lo.
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  QatRole role() const { return role_; }
  const at::Tensor& step() const { return scale_; }
  const at::Tensor& offset() const { return beta_; }  ///< undefined for weights
  QRange range() const { return range_; }
  int64_t ch_axis() const { return per_channel_ ? scheme_.ch_axis : -1; }

  /// Observed values kept for the activation MSE initialisation: at most this many per batch
  /// (an evenly strided subsample) and in total (later batches only update min/max).
  static constexpr int64_t kSamplesPerBatch = int64_t(1) << 15;
  static constexpr int64_t kMaxSamples = int64_t(1) << 18;

 private:
  void observe(const at::Tensor& x);
  void init_weight();
  void init_activation();

  QatRole role_;
  bool per_channel_ = false;
  QRange range_;
  at::Tensor scale_, beta_;
  // Weights: running sums of per-channel (or per-tensor) mean and population std.
  at::Tensor sum_mean_, sum_std_;
  int64_t batches_ = 0;
  // Activations: a subsample of the observed values and the exact running min / max.
  std::vector<at::Tensor> samples_;
  int64_t stored_ = 0;
  double observed_min_ = 0.0, observed_max_ = 0.0;
};

}  // namespace qbench::qat
