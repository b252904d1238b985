// AdaRound's rounding (Nagel et al. 2020, arXiv:2004.10568, Sec. 3.3-3.4) and the learnable,
// droppable activation quantizer of BRECQ / QDrop reconstruction. The formulas are the ones in
// docs/algorithms.md ("Post-training reconstruction"); the engine is in
// recon_engine.cpp.
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <cmath>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/ptq/recon.h"
#include "qbench/ptq/recon_fused.h"
#include "qbench/qat/lsq.h"

namespace qbench::ptq {

at::Tensor rectified_sigmoid(const at::Tensor& v) {
  return at::clamp(at::sigmoid(v) * (kAdaRoundZeta - kAdaRoundGamma) + kAdaRoundGamma, 0.0, 1.0);
}

at::Tensor adaround_init_v(const at::Tensor& w, const at::Tensor& scale) {
  auto ws = w.detach() / scale;
  auto frac = ws - at::floor(ws);  // in [0, 1)
  // sigmoid(V) = (frac - gamma) / (zeta - gamma), so V = -log((zeta - gamma) / (frac - gamma) - 1).
  return -at::log((kAdaRoundZeta - kAdaRoundGamma) / (frac - kAdaRoundGamma) - 1.0);
}

at::Tensor rounding_regularizer(const at::Tensor& v, double beta) {
  return (1.0 - (2.0 * rectified_sigmoid(v) - 1.0).abs().pow(beta)).sum();
}

at::Tensor adaround_weight(const at::Tensor& w, const at::Tensor& h, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t qmin, int64_t qmax) {
  auto base = at::floor(w.detach() / scale);
  auto q = at::clamp(base + h + zero_point, static_cast<double>(qmin), static_cast<double>(qmax));
  return (q - zero_point) * scale;
}

double anneal_beta(int64_t it, int64_t iters, const ReconParams& p) {
  const double start = p.warmup * static_cast<double>(iters);
  const double t = static_cast<double>(it);
  if (t < start) return p.beta_start;
  const double span = static_cast<double>(iters - 1) - start;
  const double rel = span > 0 ? (t - start) / span : 1.0;
  return p.beta_end + (p.beta_start - p.beta_end) * std::max(0.0, 1.0 - rel);
}

bool regularizer_on(int64_t it, int64_t iters, const ReconParams& p) {
  return static_cast<double>(it) >= p.warmup * static_cast<double>(iters);
}

// ---------------------------------------------------------------------------------------------

namespace {
std::vector<int64_t> channel_shape(int64_t dim, int64_t axis, int64_t n) {
  std::vector<int64_t> s(static_cast<size_t>(std::max<int64_t>(dim, 1)), 1);
  s[static_cast<size_t>(axis)] = n;
  return s;
}
std::string num(double v) {
  std::ostringstream os;
  os.precision(5);
  os << v;
  return os.str();
}
}  // namespace

AdaRoundQuantizer::AdaRoundQuantizer(const quant::QuantScheme& scheme, const quant::QParams& qp, const at::Tensor& w)
    : FakeQuantizer(scheme), qp_(qp) {
  if (!qp.scale.defined()) throw Error("adaround: the weight quantizer has no scale (not calibrated)");
  if (qp.per_channel() && (qp.ch_axis >= w.dim() || w.size(qp.ch_axis) != qp.scale.numel()))
    throw Error("adaround: per-channel scale does not match the weight's shape");
  torch::NoGradGuard ng;
  s_b_ = bshape(qp_.scale, w.dim());
  z_b_ = bshape(qp_.zero_point, w.dim());
  v_ = register_parameter("v", adaround_init_v(w, s_b_).contiguous());
  ready_ = true;
  quantizing_ = true;
}

at::Tensor AdaRoundQuantizer::bshape(const at::Tensor& t, int64_t dim) const {
  auto f = t.to(at::kFloat);
  return qp_.per_channel() ? f.reshape(channel_shape(dim, qp_.ch_axis, f.numel())) : f.reshape({});
}

at::Tensor AdaRoundQuantizer::h() const { return rectified_sigmoid(v_); }

at::Tensor AdaRoundQuantizer::forward(const at::Tensor& x) {
  if (!quantizing_) return x;
  if (!x.sizes().equals(v_.sizes())) throw Error("adaround: weight shape changed since V was initialised");
  reg_ = at::Tensor();
  // The fused pass (recon_fused.h): soft rounding, float32 on the CPU, per tensor or per channel
  // along axis 0; the same W~ as below, bit for bit.
  if (!hard_ && kernels_ == ReconKernels::Fused && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
      v_.scalar_type() == at::kFloat && (!qp_.per_channel() || qp_.ch_axis == 0)) {
    // s_b_, z_b_: the float scale and zero point, converted once.
    auto [w, r] = adaround_weight_fused(v_, x, s_b_, z_b_, qp_.range.qmin, qp_.range.qmax, reg_beta_);
    if (reg_beta_ > 0) reg_ = r;
    return w;
  }
  at::Tensor h = rectified_sigmoid(v_);
  if (hard_) h = (h >= 0.5).to(at::kFloat).detach();
  return adaround_weight(x, h, s_b_, z_b_, qp_.range.qmin, qp_.range.qmax);
}

std::string AdaRoundQuantizer::describe() const {
  return scheme_.describe() + " (adaround, " + (hard_ ? "hard" : "soft") + " rounding)";
}

// ---------------------------------------------------------------------------------------------

at::Tensor drop_mix(const at::Tensor& quantized, const at::Tensor& x, double p, at::Generator& gen) {
  if (p >= 1.0) return quantized;
  // Computed on the CPU from a key of the seeded CPU generator and moved: the same mask on every device.
  auto m = drop_mask(next_drop_key(gen), x.numel(), p).view(x.sizes());
  if (!x.device().is_cpu()) m = m.to(x.device());
  return at::where(m, quantized, x);
}

ReconActQuantizer::ReconActQuantizer(const quant::QuantScheme& scheme, const quant::QParams& qp, bool learn_scale,
                                     at::Generator gen)
    : FakeQuantizer(scheme), qp_(qp), learn_(learn_scale && !qp.per_channel()), gen_(std::move(gen)) {
  if (!qp.scale.defined()) throw Error("reconstruction: an activation quantizer has no scale (not calibrated)");
  if (learn_) {
    scale_ = register_parameter("scale", qp.scale.to(at::kFloat).reshape({1}).clone());
    zero_point_ = qp.zero_point.item<int64_t>();
  } else {
    scale_ = qp.scale.to(at::kFloat).clone();
  }
  ready_ = true;
  quantizing_ = true;
}

std::vector<at::Tensor> ReconActQuantizer::quant_parameters() {
  if (learn_) return {scale_};
  return {};
}

quant::QParams ReconActQuantizer::qparams() const {
  quant::QParams qp = qp_;
  torch::NoGradGuard ng;
  qp.scale = learn_ ? scale_.detach().clone().reshape(qp_.scale.sizes()).contiguous() : qp_.scale;
  return qp;
}

ActQuantArgs ReconActQuantizer::learn_args(const at::Tensor& x) {
  {
    // Keep the step positive (MQBench's LearnableFakeQuantize does the same before each forward).
    // On the CPU read in place (one float); on a GPU always (no host sync; a no-op on a step
    // already >= kLsqMinStep).
    torch::NoGradGuard ng;
    if (!scale_.device().is_cpu() || scale_.data_ptr<float>()[0] < qat::kLsqMinStep)
      scale_.data().abs_().clamp_min_(qat::kLsqMinStep);
  }
  ActQuantArgs a;
  a.s = scale_;
  // round(clip(x/s, qmin - z, qmax - z)) * s = (clamp(round(x/s) + z, qmin, qmax) - z) * s; each
  // element kept in float where QDrop's draw drops it.
  a.qmin = qp_.range.qmin - zero_point_;
  a.qmax = qp_.range.qmax - zero_point_;
  a.g = qat::lsq_grad_scale(x, qat::QatRole::Activation, -1, std::max<int64_t>(a.qmax, 1));
  a.p = drop_prob_;
  a.key = drop_prob_ < 1.0 ? next_drop_key(gen_) : 0;
  return a;
}

bool ReconActQuantizer::fused_ready(const at::Tensor& x) const {
  return quantizing_ && learn_ && kernels_ == ReconKernels::Fused && x.device().is_cpu() &&
         x.scalar_type() == at::kFloat && scale_.device().is_cpu();
}

ActQuantArgs ReconActQuantizer::fused_args(const at::Tensor& x) {
  if (!fused_ready(x)) throw Error("reconstruction: fused_args on a quantizer that does not run fused");
  return learn_args(x);
}

at::Tensor ReconActQuantizer::forward(const at::Tensor& x) {
  if (!quantizing_) return x;
  if (learn_) {
    const bool fused = fused_ready(x);
    const ActQuantArgs a = learn_args(x);
    if (fused) return act_quant_drop(x, a.s, a.qmin, a.qmax, a.g, a.p, a.key);
    return act_quant_drop_composed(x, a.s, a.qmin, a.qmax, a.g, a.p, a.key);
  }
  at::Tensor q = quant::fake_quantize(x, qp_);
  return drop_prob_ < 1.0 ? drop_mix(q, x, drop_prob_, gen_) : q;
}

std::string ReconActQuantizer::describe() const {
  std::string s = scheme_.describe() + (learn_ ? " (lsq step, reconstruction)" : " (fixed, reconstruction)");
  if (!qp_.per_channel()) s += " scale=" + num(qparams().scale.item<double>());
  if (drop_prob_ < 1.0) s += " drop p=" + num(drop_prob_);
  return s;
}

}  // namespace qbench::ptq
