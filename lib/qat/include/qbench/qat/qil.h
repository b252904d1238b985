#pragma once
// QIL: Quantization Interval Learning (Jung et al., CVPR 2019, arXiv:1808.05779, Sec. 3).
//
// A learnable interval, centre c and half-width ("distance") d, is mapped onto the quantizer's
// input range by a transformer T, then the discretiser D rounds uniformly:
//   weights     (T_W)  w_hat = 0                               |w| < c - d   (pruned)
//                            = sign(w)                         |w| > c + d   (clipped)
//                            = sign(w) (alpha|w| + beta)^gamma otherwise
//   activations (T_X)  x_hat = clip(alpha x + beta, 0, 1)      (gamma = 1)
//   alpha = 0.5/d, beta = -0.5 c/d + 0.5, so alpha|w| + beta = (|w| - (c - d)) / (2d), the form
//   computed here (no 1/d^2 in the backward pass, which keeps tiny magnitudes finite);
//   D(x_hat) = round(x_hat * q) / q, q = 2^(b-1) - 1 for weights (signed), 2^b - 1 for
//   activations, with the straight-through estimator for round. c, d and (weights only) gamma
//   are learned through T by back-propagation; the paper's gradients are exactly those of T.
// Choices (the paper leaves them open):
//   * initialisation c = d = max|x|/2 (the interval [0, max|x|]: nothing pruned, clipping at
//     the observed maximum), gamma = 1, as in the MQBench-style QIL re-implementation; all-zero
//     input gives c = d = 1/2;
//   * no LSQ-style gradient scaling of c and d (that re-implementation adds one; the paper
//     does not);
//   * output scale: the paper's layer consumes D(T(x)) in [-1, 1] / [0, 1] directly and relies
//     on the following BN. With `rescale` (default on) the output is multiplied by the detached
//     clipping threshold c + d, so the layer keeps its units (at initialisation QIL is then
//     exactly uniform quantization of [0, max|x|]); this positive per-layer constant is absorbed
//     by a BN and scales the c, d, gamma gradients by c + d;
//   * signed activations (the first layer's normalised image input): T_W's symmetric form with
//     gamma = 1 and q = 2^(b-1) - 1, so negative inputs are not clipped to 0.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

/// T_W: sign(w) * clip((|w| - (c - d)) / (2d), 0, 1)^gamma; c, d, gamma 0-d tensors.
at::Tensor qil_transform_weight(const at::Tensor& w, const at::Tensor& c, const at::Tensor& d,
                                const at::Tensor& gamma);
/// T_X: clip((x - (c - d)) / (2d), 0, 1).
at::Tensor qil_transform_activation(const at::Tensor& x, const at::Tensor& c, const at::Tensor& d);
/// D: round(x_hat * q) / q with a straight-through round.
at::Tensor qil_discretize(const at::Tensor& x_hat, int64_t q);

class QilQuantizer : public FakeQuantizer {
 public:
  enum class Role { Weight, Activation };
  QilQuantizer(QuantScheme scheme, Role role, bool rescale = true);

  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override;
  /// c, d, and gamma for weights.
  std::vector<at::Tensor> quant_parameters() override;
  /// The interval [c - d, c + d] = [0, edge]: no pruning; activations clip at the grid's upper
  /// edge, weights at its step times QIL's level count q (gamma keeps 1).
  bool init_range(const QParams& qp) override;
  std::string describe() const override;

  const at::Tensor& center() const { return center_; }
  const at::Tensor& distance() const { return distance_; }
  const at::Tensor& gamma() const { return gamma_; }  ///< weights only (undefined for activations)
  bool is_signed() const { return signed_; }
  int64_t levels_q() const;  ///< q of the discretiser
  Role role() const { return role_; }
  bool rescale() const { return rescale_; }

 private:
  Role role_;
  bool rescale_;
  bool signed_ = true;
  int64_t observed_ = 0;
  double obs_min_ = 0.0, obs_absmax_ = 0.0;
  at::Tensor center_, distance_, gamma_;
};

}  // namespace qbench::qat
