// PACT (Choi et al. 2018, arXiv:1805.06085) and DoReFa-Net (Zhou et al. 2016, arXiv:1606.06160).
//
// The forwards use straight-through rounding (value of the rounded tensor, gradient of the
// unrounded one) and at::where for PACT's clip, which routes the gradient to alpha exactly where
// the paper's Eq. 3 says; tests/numeric/test_qat_pact_dorefa.cpp checks both against closed forms
// and finite differences.
#include "qbench/qat/pact_dorefa.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "../kernels/fused.h"
#include "../kernels/pact_dorefa.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {

// Bit widths the quantizers accept: the library's integer ranges (2..16).
int checked_bits(int bits, const char* who) {
  if (bits < 2 || bits > 16) throw Error(std::string(who) + ": bits must be 2..16, got " + std::to_string(bits));
  return bits;
}

double levels_unsigned(int bits) { return std::ldexp(1.0, bits) - 1.0; }    // 2^b - 1
double levels_signed(int bits) { return std::ldexp(1.0, bits - 1) - 1.0; }  // 2^(b-1) - 1

// Smallest clipping level alpha: float epsilon (alpha = 0 would divide by zero).
constexpr double kMinAlpha = 1.1920928955078125e-07;

// The value of `q`, the gradient of `y`.
at::Tensor straight_through(const at::Tensor& y, const at::Tensor& q) { return y + (q - y).detach(); }

bool signed_input(const QuantScheme& s, double observed_min) {
  return s.signedness == Signedness::Signed || (s.signedness == Signedness::Auto && observed_min < 0.0);
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}

// Fused PACT (float32, CPU, one alpha): one pass forward, one pass backward instead of the
// clamp_min / where / round / straight-through nodes of the composed form below. The forward
// gives the same values bit for bit (the scalars n / alpha and alpha / n come from the same
// tensor ops as there, the per-element ops are the same); the backward gives the same input
// gradient and the same alpha gradient up to the order of the sum.
struct PactPerTensorFn : public torch::autograd::Function<PactPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& alpha,
                            double n, bool is_signed) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc, alpha});
    ctx->saved_data["signed"] = is_signed;
    auto ad = alpha.detach().reshape({});
    const float a = ad.item<float>(), inv = (n / ad).item<float>(), step = (ad / n).item<float>();
    return fused::map(xc, [&](const float* in, float* out, int64_t n) {
      kernels::pact_forward_kernel(in, out, n, a, inv, step, is_signed);
    });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& alpha = saved[1];
    const bool is_signed = ctx->saved_data["signed"].toBool();
    const float a = alpha.item<float>();
    auto [gx, ga] = fused::grad<double>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
      return kernels::pact_backward_kernel(x, dy, dx, n, a, is_signed);
    });
    return {gx, at::full(alpha.sizes(), ga, alpha.options()), at::Tensor(), at::Tensor()};
  }
};

// Fused DoReFa activation quantizer (float32, CPU): r * q(clip(x / r, lo, 1)) in one pass and its
// STE in another, instead of the div / clamp / mul / round / div / mul nodes of the composed
// form. Same math; the input gradient is exactly dy inside (the composed form's ((dy r) / n) n / r
// can be an ulp off), the values can differ from it by an ulp where x / r rounds differently.
struct DorefaActPerTensorFn : public torch::autograd::Function<DorefaActPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double range, double levels,
                            double lo) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc});
    ctx->saved_data["range"] = range;
    ctx->saved_data["lo"] = lo;
    const float r = static_cast<float>(range), n = static_cast<float>(levels), l = static_cast<float>(lo);
    return fused::map(xc, [&](const float* in, float* out, int64_t k) { kernels::dorefa_act_forward_kernel(in, out, k, r, n, l); });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto xc = ctx->get_saved_variables()[0];
    const float r = static_cast<float>(ctx->saved_data["range"].toDouble());
    const float l = static_cast<float>(ctx->saved_data["lo"].toDouble());
    auto gx = fused::grad<double>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
                kernels::dorefa_act_backward_kernel(x, dy, dx, n, r, l);
                return 0.0;
              }).first;
    return {gx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Free functions

at::Tensor dorefa_quantize_k(const at::Tensor& r, int bits) {
  // Zhou et al. 2016, Eq. 5: quantize_k(r) = round((2^k - 1) r) / (2^k - 1); Eq. 6: STE.
  const double n = levels_unsigned(checked_bits(bits, "dorefa"));
  return round_ste(r * n) / n;
}

at::Tensor dorefa_weight(const at::Tensor& w, int bits) {
  // Eq. 9. max|tanh w| is floored at the smallest normal float so that an all-zero weight gives
  // tanh(w) / (2 m) = 0 instead of 0 / 0; any non-zero float weight has |tanh w| above it.
  auto t = at::tanh(w);
  auto m = at::clamp_min(t.abs().max(), static_cast<double>(std::numeric_limits<float>::min()));
  return 2.0 * dorefa_quantize_k(t / (2.0 * m) + 0.5, bits) - 1.0;
}

at::Tensor pact_fake_quantize(const at::Tensor& x, const at::Tensor& alpha, int bits, bool is_signed) {
  checked_bits(bits, "pact");
  const double n = is_signed ? levels_signed(bits) : levels_unsigned(bits);
  if (alpha.numel() == 1 && x.scalar_type() == at::kFloat && alpha.scalar_type() == at::kFloat && x.device().is_cpu())
    return PactPerTensorFn::apply(x, alpha, n, is_signed);
  auto a = alpha.reshape({});
  // Eq. 1, y = clip(x, 0, alpha), written so that autograd gives Eq. 3: the gradient reaches
  // alpha from the elements with x >= alpha (where() selects alpha there), and x from [0, alpha)
  // (clamp_min's backward passes x = 0).
  at::Tensor y = is_signed ? at::where(x <= -a, -a, x) : at::clamp_min(x, 0.0);
  y = at::where(x >= a, a, y);
  // Eq. 2, y_q = round(y n / alpha) alpha / n, passed straight through: Eq. 3 treats
  // dy_q/dy = 1 and does not differentiate the step alpha / n with respect to alpha.
  auto ad = a.detach();
  auto yd = y.detach();
  auto q = at::round(yd * (n / ad)) * (ad / n);
  return straight_through(y, q);
}

// ---------------------------------------------------------------------------------------------
// DoReFa weights

DorefaWeightQuantizer::DorefaWeightQuantizer(QuantScheme scheme) : FakeQuantizer(scheme) {
  checked_bits(scheme_.bits, "dorefa weight");
}

at::Tensor DorefaWeightQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    check_finite(x.detach(), "dorefa: observed weight");
    observed_ = true;
  }
  if (!quantizing_) return x;
  if (!ready_) throw Error("dorefa: forward with quantization on before compute_qparams()");
  return dorefa_weight(x, scheme_.bits);
}

void DorefaWeightQuantizer::compute_qparams() {
  // Nothing to initialise; the observation requirement keeps the protocol uniform (and has
  // checked the weights for NaN).
  if (!observed_) throw Error("dorefa: compute_qparams() before any tensor was observed");
  ready_ = true;
}

std::string DorefaWeightQuantizer::describe() const {
  return "dorefa weight " + std::to_string(scheme_.bits) + "-bit: 2 q(tanh w / (2 max|tanh w|) + 1/2) - 1" +
         (ready_ ? "" : " (not initialised)");
}

// ---------------------------------------------------------------------------------------------
// DoReFa activations

DorefaActivationQuantizer::DorefaActivationQuantizer(QuantScheme scheme, bool calibrated_range)
    : FakeQuantizer(scheme), calibrated_range_(calibrated_range) {
  checked_bits(scheme_.bits, "dorefa activation");
}

at::Tensor DorefaActivationQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    auto xd = x.detach();
    check_finite(xd, "dorefa: observed activation");
    const double mn = xd.min().item<double>();
    const double am = xd.abs().max().item<double>();
    observed_min_ = observed_ ? std::min(observed_min_, mn) : mn;
    observed_absmax_ = observed_ ? std::max(observed_absmax_, am) : am;
    observed_ = true;
  }
  if (!quantizing_) return x;
  if (!ready_) throw Error("dorefa: forward with quantization on before compute_qparams()");
  if (x.scalar_type() == at::kFloat && x.device().is_cpu())
    return DorefaActPerTensorFn::apply(x, range_,
                                       signed_ ? levels_signed(scheme_.bits) : levels_unsigned(scheme_.bits),
                                       signed_ ? -1.0 : 0.0);
  const at::Tensor a = range_ == 1.0 ? x : x / range_;
  at::Tensor q;
  if (!signed_) {
    q = dorefa_quantize_k(at::clamp(a, 0.0, 1.0), scheme_.bits);  // Eq. 11
  } else {
    const double n = levels_signed(scheme_.bits);
    q = round_ste(at::clamp(a, -1.0, 1.0) * n) / n;
  }
  return range_ == 1.0 ? q : q * range_;
}

void DorefaActivationQuantizer::compute_qparams() {
  if (!observed_) throw Error("dorefa: compute_qparams() before any tensor was observed");
  signed_ = signed_input(scheme_, observed_min_);
  // Floored so an all-zero observation still gives a finite, usable range.
  range_ = calibrated_range_ ? std::max(observed_absmax_, 1e-8) : 1.0;
  ready_ = true;
}

bool DorefaActivationQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("dorefa: init_range() before compute_qparams()");
  if (!calibrated_range_) return false;
  range_ = std::max(grid_abs_max(qp), 1e-8);
  return true;
}

std::optional<QParams> DorefaActivationQuantizer::affine_qparams() const {
  if (!ready_) return std::nullopt;
  QParams qp;
  const double n = signed_ ? levels_signed(scheme_.bits) : levels_unsigned(scheme_.bits);
  qp.scale = at::full({}, range_ / n, at::kFloat);
  qp.zero_point = at::zeros({}, at::kInt);
  qp.range = {signed_ ? -static_cast<int64_t>(n) : 0, static_cast<int64_t>(n)};
  return qp;
}

std::string DorefaActivationQuantizer::describe() const {
  if (!ready_) return "dorefa activation " + std::to_string(scheme_.bits) + "-bit (not initialised)";
  return "dorefa activation " + std::to_string(scheme_.bits) + "-bit " +
         (signed_ ? "q(clip(a, -1, 1)) signed extension" : "q(clip(a, 0, 1))") +
         (calibrated_range_ ? " on the range r = " + std::to_string(range_) : "");
}

// ---------------------------------------------------------------------------------------------
// PACT

// lambda_alpha: Choi et al. 2018 train alpha with an L2 penalty (the regulariser in the PACT
// objective, Sec. 3). The default 5e-4 is the value the project's specification attributes to the
// paper's experiments; the paper text was not available offline to confirm it, so it is an
// option (PactOptions::alpha_weight_decay) rather than buried here.
PactQuantizer::PactQuantizer(QuantScheme scheme, PactOptions options) : FakeQuantizer(scheme), options_(options) {
  checked_bits(scheme_.bits, "pact");
  if (!(options_.alpha_init > 0) || !std::isfinite(options_.alpha_init))
    throw Error("pact: alpha_init must be positive and finite");
  if (options_.alpha_weight_decay < 0) throw Error("pact: alpha_weight_decay must be >= 0");
  if (scheme_.granularity == Granularity::PerChannel)
    throw Error("pact: one clipping level per layer input (per tensor), as in the paper");
  alpha_ = register_parameter("alpha", at::full({1}, options_.alpha_init));
}

at::Tensor PactQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    auto xd = x.detach();
    check_finite(xd, "pact: observed activation");
    const double mn = xd.min().item<double>();
    observed_min_ = observed_ ? std::min(observed_min_, mn) : mn;
    observed_ = true;
  }
  if (!quantizing_) return x;
  if (!ready_) throw Error("pact: forward with quantization on before compute_qparams()");
  {
    // The paper does not say what happens if SGD and the L2 penalty push alpha through zero;
    // like LSQ's step we keep |alpha| >= float epsilon, touching it only when needed on the CPU
    // and always on a GPU (no host sync; a no-op on values already >= kMinAlpha).
    at::NoGradGuard no_grad;
    if (!alpha_.device().is_cpu() || (alpha_ < kMinAlpha).any().item<bool>()) alpha_.data().abs_().clamp_min_(kMinAlpha);
  }
  return pact_fake_quantize(x, alpha_, scheme_.bits, signed_);
}

void PactQuantizer::compute_qparams() {
  // alpha starts at the paper's constant (10), not at an observed statistic: neither Choi et al.
  // nor MQBench initialise it from data. The observation decides the sign (Auto) and has
  // checked the input for NaN.
  if (!observed_) throw Error("pact: compute_qparams() before any tensor was observed");
  signed_ = signed_input(scheme_, observed_min_);
  at::NoGradGuard no_grad;
  alpha_.fill_(options_.alpha_init);
  ready_ = true;
}

bool PactQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("pact: init_range() before compute_qparams()");
  alpha_.fill_(std::max(grid_abs_max(qp), static_cast<double>(kMinAlpha)));
  return true;
}

std::optional<QParams> PactQuantizer::affine_qparams() const {
  if (!ready_) return std::nullopt;
  const double n = signed_ ? levels_signed(scheme_.bits) : levels_unsigned(scheme_.bits);
  QParams qp;
  qp.scale = (alpha_.detach().abs().clamp_min(kMinAlpha) / n).to(at::kFloat).reshape({});
  qp.zero_point = at::zeros({}, qp.scale.options().dtype(at::kInt));
  qp.range = {signed_ ? -static_cast<int64_t>(n) : 0, static_cast<int64_t>(n)};
  return qp;
}

std::string PactQuantizer::describe() const {
  std::string d = "pact activation " + std::to_string(scheme_.bits) + "-bit";
  if (!ready_) return d + " (not initialised)";
  return d + (signed_ ? " signed clip(x, -alpha, alpha)" : " clip(x, 0, alpha)") +
         " alpha=" + fmt(alpha_.detach().item<double>()) + " l2=" + fmt(options_.alpha_weight_decay);
}

// ---------------------------------------------------------------------------------------------

void register_pact_dorefa(Registry<QatMethod>& r) {
  r.add("pact", {"PACT: learnable activation clipping level alpha (init 10, L2 penalty), STE; weights "
                 "quantized with DoReFa",
                 "Choi et al. 2018, arXiv:1805.06085",
                 [](const QuantScheme& s) { return std::make_shared<DorefaWeightQuantizer>(s); },
                 [](const QuantScheme& s) { return std::make_shared<PactQuantizer>(s); }});
  // Activations on a range calibrated at initialisation (see DorefaActivationQuantizer): the
  // aligned pipeline starts from pretrained weights, which the paper's [0, 1] clip would cut.
  r.add("dorefa", {"DoReFa-Net: tanh-normalised weights quantized to [-1, 1], activations r*quantize_k(clip(a/r, 0, 1)) "
                   "with r calibrated at init (r = 1 is Eq. 11), STE; no learnable parameters",
                   "Zhou et al. 2016, arXiv:1606.06160",
                   [](const QuantScheme& s) { return std::make_shared<DorefaWeightQuantizer>(s); },
                   [](const QuantScheme& s) { return std::make_shared<DorefaActivationQuantizer>(s, true); }});
}

}  // namespace qbench::qat
