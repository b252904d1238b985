#pragma once
// DSQ: Differentiable Soft Quantization (Gong et al. 2019, arXiv:1908.05033, Sec. 3).
//
// The clipping range [l, u] is cut into 2^b - 1 cells of width Delta = (u - l) / (2^b - 1). Inside
// cell P_i = [l + i*Delta, l + (i+1)*Delta) with centre m_i = l + (i + 1/2)*Delta the soft
// quantizer is
//     Q_S(x) = l + Delta * (i + (phi(x) + 1) / 2),   phi(x) = s * tanh(k * (x - m_i)),
//     s = 1 / tanh(k*Delta/2)                         (Sec. 3, "DSQ function": Q_S and phi)
// and Q_S(x) = l below l, u above u. The characteristic variable alpha = 1 - tanh(k*Delta/2)
// (Sec. 3, "evolution") parameterises the curve: s = 1 / (1 - alpha), k*Delta = log(2/alpha - 1)
// (MQBench's dsq.py computes the same k and s); alpha is kept in (0, 0.5) as the paper requires.
// The forward value is the hard quantizer obtained with sgn(phi) in place of phi (uniform levels
// l + j*Delta); the backward pass differentiates the soft curve Q_S with respect to x, l, u and
// alpha (Sec. 3: l, u and alpha are all learned by back-propagation).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

/// The DSQ quantizer as a plain function: value l + Delta*j (the hard level), gradient that of
/// the soft curve Q_S. `lower`, `upper`, `alpha` are 0-d tensors; alpha must lie in (0, 0.5).
at::Tensor dsq_quantize(const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper,
                        const at::Tensor& alpha, int bits);

class DsqQuantizer : public FakeQuantizer {
 public:
  enum class Role { Weight, Activation };
  /// alpha_init: 0.2 by default; MQBench instead fixes alpha = 0.4 and does not learn it.
  DsqQuantizer(QuantScheme scheme, Role role, double alpha_init = 0.2);

  at::Tensor forward(const at::Tensor& x) override;
  /// l, u from the observed range (weights: symmetric, [-max|w|, max|w|]; activations: the
  /// observed [min, max] widened to include 0, so [0, max] after a ReLU); alpha = alpha_init.
  /// An all-zero observation starts from [0, 1].
  void compute_qparams() override;
  std::vector<at::Tensor> quant_parameters() override { return {lower_, upper_, alpha_}; }
  /// Activations: l = lo, u = hi. Weights: symmetric, u = -l = step * n / 2 (the grid's step
  /// over DSQ's n = 2^b - 1 cells). alpha keeps alpha_init.
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  const at::Tensor& lower() const { return lower_; }
  const at::Tensor& upper() const { return upper_; }
  const at::Tensor& alpha() const { return alpha_; }
  /// Resolved at compute_qparams(): weights always signed; activations per scheme.signedness.
  bool is_signed() const { return signed_; }
  Role role() const { return role_; }

 private:
  Role role_;
  double alpha_init_;
  bool signed_ = true;
  int64_t observed_ = 0;
  double obs_min_ = 0.0, obs_max_ = 0.0;
  at::Tensor lower_, upper_, alpha_;
};

}  // namespace qbench::qat
