// LSQ (Esser et al. 2019, arXiv:1902.08153) and LSQ+ (Bhalgat et al. 2020, arXiv:2004.09576).
//
// Both forwards are written with round_ste and grad_scale (qat.h), so autograd derives the
// papers' gradients exactly; tests/numeric/test_qat_lsq.cpp checks them against the closed forms,
// finite differences and LibTorch's built-in LSQ kernel.
#include "qbench/qat/lsq.h"

#include <torch/csrc/autograd/custom_function.h>


#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "../kernels/fused.h"
#include "../kernels/lsq.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {

// Shape that broadcasts a per-channel vector along `ch_axis` of a `dim`-d tensor.
std::vector<int64_t> channel_shape(int64_t dim, int64_t ch_axis, int64_t channels) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[static_cast<size_t>(ch_axis)] = channels;
  return shape;
}

// [channels, rest] view of x with the channel axis first.
at::Tensor per_channel_rows(const at::Tensor& x, int64_t ch_axis) {
  return x.transpose(0, ch_axis).reshape({x.size(ch_axis), -1});
}

int64_t checked_ch_axis(const at::Tensor& x, int64_t ch_axis, const char* who) {
  if (ch_axis < 0 || ch_axis >= x.dim())
    throw Error(std::string(who) + ": channel axis " + std::to_string(ch_axis) + " out of range for a " +
                std::to_string(x.dim()) + "-d tensor");
  return ch_axis;
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}

std::string range_str(const QRange& r) { return "[" + std::to_string(r.qmin) + "," + std::to_string(r.qmax) + "]"; }

// Keeps a learnable step positive before it is used: |s| floored at kLsqMinStep. The papers do
// not say what happens when SGD drives s through zero; MQBench's LearnableFakeQuantize does the
// same (scale.data.abs_().clamp_(min=eps)) before every quantizing forward.
// On the CPU it only touches the values when needed, so the usual forward leaves the parameter
// (and anything autograd saved from it) alone. On a GPU the test would cost a device-to-host
// sync per quantizer per step, so there it always runs in place: abs and the floor leave a step
// that is already >= kLsqMinStep bit-identical, so the values are the same either way.
void keep_step_positive(at::Tensor& s) {
  at::NoGradGuard no_grad;
  if (!s.device().is_cpu() || (s < kLsqMinStep).any().item<bool>()) s.data().abs_().clamp_min_(kLsqMinStep);
}

// Fake quantization with an affine grid x^ = clamp(round((x - beta) / s), qmin, qmax) * s + beta,
// no autograd; the LSQ+ initialisation scores its candidates with it.
double mse_of(const at::Tensor& x, double s, double beta, int64_t qmin, int64_t qmax) {
  auto q = at::clamp(at::round((x - beta) / s), static_cast<double>(qmin), static_cast<double>(qmax));
  return (q * s + beta - x).pow(2).mean().item<double>();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shared forwards

double lsq_grad_scale(const at::Tensor& x, QatRole role, int64_t ch_axis, int64_t qp) {
  int64_t n = x.numel();
  if (role == QatRole::Weight && ch_axis >= 0) n /= std::max<int64_t>(1, x.size(ch_axis));
  if (role == QatRole::Activation && x.dim() >= 2) n /= std::max<int64_t>(1, x.size(0));
  // Qp = 0 cannot happen for bits >= 2; guard the division anyway.
  return 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, n)) * static_cast<double>(std::max<int64_t>(1, qp)));
}

namespace {
// Fused per-tensor LSQ (float32, CPU): one pass forward, one pass backward, instead of the ~6
// elementwise autograd nodes of the composed form below. Same math: v = x / s, forward
// round(clip(v, qmin, qmax)) * s; backward dx = dy inside [qmin, qmax] (boundary inside) else 0,
// ds = g * sum(dy * (round(v) - v inside, qmin or qmax at the clip)).
struct LsqPerTensorFn : public torch::autograd::Function<LsqPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s,
                            int64_t qmin, int64_t qmax, double g) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc, s});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    const float sv = s.item<float>(), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    return fused::map(xc, [&](const float* in, float* out, int64_t n) { kernels::lsq_forward_kernel(in, out, n, sv, lo, hi); });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& s = saved[1];
    const float lo = static_cast<float>(ctx->saved_data["qmin"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    const float sv = s.item<float>();
    auto [gx, gs] = fused::grad<double>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
      return kernels::lsq_backward_kernel(x, dy, dx, n, sv, lo, hi);
    });
    return {gx, at::full(s.sizes(), gs * g, s.options()), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Fused per-tensor LSQ+ activation quantizer (float32, CPU), the same two passes with the offset:
// u = (x - beta) / s, forward round(clip(u, qmin, qmax)) * s + beta; backward dx = dy inside,
// ds = g * sum(dy * (round(u) - u inside, the bound outside)), dbeta = g * sum(dy outside).
struct LsqPlusPerTensorFn : public torch::autograd::Function<LsqPlusPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s,
                            const at::Tensor& beta, int64_t qmin, int64_t qmax, double g) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc, s, beta});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    const float sv = s.item<float>(), bv = beta.item<float>();
    const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    return fused::map(xc, [&](const float* in, float* out, int64_t n) {
      kernels::lsq_plus_forward_kernel(in, out, n, sv, bv, lo, hi);
    });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& s = saved[1];
    const auto& beta = saved[2];
    const float lo = static_cast<float>(ctx->saved_data["qmin"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    const float sv = s.item<float>(), bv = beta.item<float>();
    auto [gx, sums] =
        fused::grad<kernels::LsqPlusGradSums>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
          return kernels::lsq_plus_backward_kernel(x, dy, dx, n, sv, bv, lo, hi);
        });
    return {gx, at::full(s.sizes(), sums.ds * g, s.options()), at::full(beta.sizes(), sums.dbeta * g, beta.options()),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor lsq_fake_quantize(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g,
                             int64_t ch_axis) {
  if (ch_axis < 0 && s.numel() == 1 && x.scalar_type() == at::kFloat && s.scalar_type() == at::kFloat &&
      x.device().is_cpu())
    return LsqPerTensorFn::apply(x, s, qmin, qmax, g);
  // Eq. 1-2: v^ = round(clip(v / s, -Qn, Qp)) * s. With s scaled by grad_scale and round by
  // round_ste, autograd gives Eq. 3: dv^/ds = round(v/s) - v/s inside the range, -Qn / Qp at the
  // clip (times g), and dv^/dv = 1 inside, 0 outside (straight-through estimator). Where Eq. 3's
  // cases meet (v/s = -Qn or Qp exactly) clamp's backward counts the point as inside, as
  // LibTorch's own LSQ kernel does; for ReLU outputs (v = 0 = -Qn) ReLU's derivative zeroes it.
  at::Tensor sg = grad_scale(s, g);
  if (ch_axis >= 0)
    sg = sg.reshape(channel_shape(x.dim(), ch_axis, s.numel()));
  else
    sg = sg.reshape({});
  auto v = at::clamp(x / sg, static_cast<double>(qmin), static_cast<double>(qmax));
  return round_ste(v) * sg;
}

at::Tensor lsq_plus_fake_quantize(const at::Tensor& x, const at::Tensor& s, const at::Tensor& beta, int64_t qmin,
                                  int64_t qmax, double g) {
  if (s.numel() == 1 && beta.numel() == 1 && x.scalar_type() == at::kFloat && s.scalar_type() == at::kFloat &&
      beta.scalar_type() == at::kFloat && x.device().is_cpu())
    return LsqPlusPerTensorFn::apply(x, s, beta, qmin, qmax, g);
  // x^ = round(clip((x - beta) / s, n, p)) * s + beta. Autograd gives the paper's gradients:
  // dx^/ds = round(u) - u inside, n or p at the clip; dx^/dbeta = 0 inside, 1 at the clip
  // (u = (x - beta) / s); both scaled by g as LSQ scales s.
  auto sg = grad_scale(s, g).reshape({});
  auto bg = grad_scale(beta, g).reshape({});
  auto u = at::clamp((x - bg) / sg, static_cast<double>(qmin), static_cast<double>(qmax));
  return round_ste(u) * sg + bg;
}

// ---------------------------------------------------------------------------------------------
// LSQ

LsqQuantizer::LsqQuantizer(QuantScheme scheme, QatRole role) : FakeQuantizer(scheme), role_(role) {
  // Validates the bit width (2..16) and gives the weight range; activations decide at init.
  range_ = integer_range(scheme_.bits, true, scheme_.narrow_range);
  if (role_ == QatRole::Activation && scheme_.granularity == Granularity::PerChannel)
    throw Error("lsq: activation quantizers are per tensor (one step size per layer input, as in the paper)");
  per_channel_ = role_ == QatRole::Weight && scheme_.granularity == Granularity::PerChannel;
  scale_ = register_parameter("scale", at::ones({1}));
}

void LsqQuantizer::observe(const at::Tensor& x_in) {
  auto x = x_in.detach();
  if (x.numel() == 0) return;
  check_finite(x, "lsq: observed tensor");
  at::Tensor m;
  if (per_channel_) {
    checked_ch_axis(x, scheme_.ch_axis, "lsq");
    m = per_channel_rows(x, scheme_.ch_axis).to(at::kDouble).abs().mean(1);
  } else {
    m = x.to(at::kDouble).abs().mean().reshape({1});
  }
  const double mn = x.min().item<double>();
  if (batches_ == 0) {
    sum_mean_abs_ = m;
    observed_min_ = mn;
  } else {
    if (m.sizes() != sum_mean_abs_.sizes()) throw Error("lsq: observed tensors changed shape between batches");
    sum_mean_abs_ = sum_mean_abs_ + m;
    observed_min_ = std::min(observed_min_, mn);
  }
  ++batches_;
}

at::Tensor LsqQuantizer::forward(const at::Tensor& x) {
  if (observing_) observe(x);
  if (!quantizing_) return x;
  if (!ready_) throw Error("lsq: forward with quantization on before compute_qparams()");
  keep_step_positive(scale_);
  const double g = lsq_grad_scale(x, role_, ch_axis(), range_.qmax);
  return lsq_fake_quantize(x, scale_, range_.qmin, range_.qmax, g, ch_axis());
}

void LsqQuantizer::compute_qparams() {
  if (batches_ == 0) throw Error("lsq: compute_qparams() before any tensor was observed");
  if (role_ == QatRole::Activation) range_ = resolve_range(scheme_, observed_min_ >= 0.0);
  // Esser et al. 2019, Sec. 2: s = 2 <|v|> / sqrt(Qp), on the initial weights or the first
  // activations; we average <|v|> over every observed batch. Floored at float epsilon so an
  // all-zero tensor gets a usable (not NaN) step.
  auto mean_abs = sum_mean_abs_ / static_cast<double>(batches_);
  auto s = at::clamp_min(2.0 * mean_abs / std::sqrt(static_cast<double>(range_.qmax)), kLsqMinStep);
  if (!at::isfinite(s).all().item<bool>()) throw Error("lsq: initial step size is not finite");
  at::NoGradGuard no_grad;
  scale_.set_data(s.to(at::kFloat).contiguous());
  ready_ = true;
}

// The step that spreads this quantizer's own integer range over [lo, hi]; per channel when the
// step is, from a per-channel or a per-tensor grid.
namespace {
at::Tensor step_for_range(const QParams& qp, const QRange& range, const at::Tensor& like) {
  const auto [lo, hi] = grid_range(qp);
  auto s = at::clamp_min((hi - lo) / static_cast<double>(range.qmax - range.qmin), kLsqMinStep).to(at::kFloat);
  if (s.numel() == like.numel()) return s.reshape(like.sizes()).contiguous();
  if (s.numel() == 1) return s.reshape({1}).expand(like.sizes()).contiguous();
  throw Error("lsq: init_range: a grid of " + std::to_string(s.numel()) + " channels for a step of " +
              std::to_string(like.numel()));
}
}  // namespace

bool LsqQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("lsq: init_range() before compute_qparams()");
  scale_.set_data(step_for_range(qp, range_, scale_).to(scale_.device()));
  return true;
}

std::optional<QParams> LsqQuantizer::affine_qparams() const {
  if (!ready_) return std::nullopt;
  QParams qp;
  auto s = scale_.detach().abs().clamp_min(kLsqMinStep).to(at::kFloat);
  qp.scale = per_channel_ ? s.contiguous() : s.reshape({});
  qp.zero_point = at::zeros_like(qp.scale, at::kInt);
  qp.range = range_;
  qp.ch_axis = ch_axis();
  return qp;
}

// "lsq weight 4-bit ... range=[-8,7] s=0.0123": shared by LSQ and LSQ+.
static std::string describe_step(const char* name, QatRole role, const QuantScheme& scheme, bool ready, const QRange& range,
                          bool per_channel, const at::Tensor& scale) {
  std::string d = std::string(name) + (role == QatRole::Weight ? " weight " : " activation ") + scheme.describe();
  if (!ready) return d + " (not initialised)";
  d += " range=" + range_str(range);
  if (per_channel)
    d += " s[" + std::to_string(scale.numel()) + "] mean=" + fmt(scale.detach().mean().item<double>());
  else
    d += " s=" + fmt(scale.detach().item<double>());
  return d;
}

std::string LsqQuantizer::describe() const {
  return describe_step("lsq", role_, scheme_, ready_, range_, per_channel_, scale_);
}

// ---------------------------------------------------------------------------------------------
// LSQ+

LsqPlusQuantizer::LsqPlusQuantizer(QuantScheme scheme, QatRole role) : FakeQuantizer(scheme), role_(role) {
  if (role_ == QatRole::Weight) {
    range_ = integer_range(scheme_.bits, true, scheme_.narrow_range);
    per_channel_ = scheme_.granularity == Granularity::PerChannel;
  } else {
    if (scheme_.granularity == Granularity::PerChannel)
      throw Error("lsq+: activation quantizers are per tensor (one scale and offset per layer input)");
    // The offset lets an unsigned grid cover negative values (the paper's point: no sign bit).
    range_ = integer_range(scheme_.bits, scheme_.signedness == Signedness::Signed, scheme_.narrow_range);
    beta_ = register_parameter("beta", at::zeros({1}));
  }
  scale_ = register_parameter("scale", at::ones({1}));
}

std::vector<at::Tensor> LsqPlusQuantizer::quant_parameters() {
  if (beta_.defined()) return {scale_, beta_};
  return {scale_};
}

void LsqPlusQuantizer::observe(const at::Tensor& x_in) {
  auto x = x_in.detach();
  if (x.numel() == 0) return;
  check_finite(x, "lsq+: observed tensor");
  if (role_ == QatRole::Weight) {
    at::Tensor mu, sd;
    if (per_channel_) {
      checked_ch_axis(x, scheme_.ch_axis, "lsq+");
      auto rows = per_channel_rows(x, scheme_.ch_axis).to(at::kDouble);
      mu = rows.mean(1);
      sd = (rows - mu.unsqueeze(1)).pow(2).mean(1).sqrt();  // population std
    } else {
      auto xd = x.to(at::kDouble).reshape({-1});
      mu = xd.mean().reshape({1});
      sd = (xd - mu).pow(2).mean().sqrt().reshape({1});
    }
    if (batches_ == 0) {
      sum_mean_ = mu;
      sum_std_ = sd;
    } else {
      if (mu.sizes() != sum_mean_.sizes()) throw Error("lsq+: observed tensors changed shape between batches");
      sum_mean_ = sum_mean_ + mu;
      sum_std_ = sum_std_ + sd;
    }
  } else {
    const double mn = x.min().item<double>(), mx = x.max().item<double>();
    observed_min_ = batches_ == 0 ? mn : std::min(observed_min_, mn);
    observed_max_ = batches_ == 0 ? mx : std::max(observed_max_, mx);
    if (stored_ < kMaxSamples) {
      auto flat = x.reshape({-1});
      const int64_t n = flat.numel();
      if (n > kSamplesPerBatch) {
        // An odd stride so the subsample does not keep landing on the same column of a
        // power-of-two sized feature map.
        int64_t stride = (n + kSamplesPerBatch - 1) / kSamplesPerBatch;
        if (stride % 2 == 0) ++stride;
        flat = flat.slice(0, 0, n, stride);
      }
      flat = flat.narrow(0, 0, std::min(flat.numel(), kMaxSamples - stored_));
      samples_.push_back(flat.to(at::kFloat).clone());
      stored_ += flat.numel();
    }
  }
  ++batches_;
}

at::Tensor LsqPlusQuantizer::forward(const at::Tensor& x) {
  if (observing_) observe(x);
  if (!quantizing_) return x;
  if (!ready_) throw Error("lsq+: forward with quantization on before compute_qparams()");
  keep_step_positive(scale_);
  const double g = lsq_grad_scale(x, role_, ch_axis(), range_.qmax);
  if (role_ == QatRole::Weight) return lsq_fake_quantize(x, scale_, range_.qmin, range_.qmax, g, ch_axis());
  return lsq_plus_fake_quantize(x, scale_, beta_, range_.qmin, range_.qmax, g);
}

void LsqPlusQuantizer::init_weight() {
  // Bhalgat et al. 2020, Sec. 3 (initialisation): s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1).
  // sigma is the population standard deviation (the paper does not say; the unbiased one is NaN
  // for a single weight). MQBench's LSQPlusObserver divides by 2^b (quant_max - quant_min + 1)
  // instead of the paper's 2^(b-1); we follow the paper.
  auto mu = sum_mean_ / static_cast<double>(batches_);
  auto sd = sum_std_ / static_cast<double>(batches_);
  auto edge = at::maximum((mu - 3.0 * sd).abs(), (mu + 3.0 * sd).abs());
  auto s = at::clamp_min(edge / std::ldexp(1.0, scheme_.bits - 1), kLsqMinStep);
  if (!at::isfinite(s).all().item<bool>()) throw Error("lsq+: initial step size is not finite");
  at::NoGradGuard no_grad;
  scale_.set_data(s.to(at::kFloat).contiguous());
}

void LsqPlusQuantizer::init_activation() {
  // Bhalgat et al. 2020, Sec. 3 (initialisation): s_init, beta_init = argmin_{s, beta} ||x^ - x||^2
  // over the observed activations (the paper found min/max initialisation unstable at low bits
  // because of outliers). We minimise it in two deterministic stages on the stored subsample:
  //  1. MQBench's MSE-observer family: the observed [min, max] shrunk by 1% steps (95 candidates,
  //     new_min = min (1 - 0.01 i), new_max = max (1 - 0.01 i)), each giving
  //     s = (max' - min') / (qmax - qmin), beta = min' - qmin s; keep the lowest MSE;
  //  2. Lloyd-style refinement: with the integer levels q = clamp(round((x - beta) / s)) fixed,
  //     the (s, beta) minimising ||q s + beta - x||^2 is a least-squares line fit; alternate
  //     fit / re-assign while the MSE decreases (each step cannot increase it).
  // The search runs on data divided by max(|min|, |max|), so huge or tiny magnitudes neither
  // overflow the squared error nor underflow, and scales back at the end.
  auto x = at::cat(samples_).to(at::kDouble);
  const double lo = observed_min_, hi = observed_max_;
  const double mag = std::max(std::fabs(lo), std::fabs(hi));
  const int64_t qmin = range_.qmin, qmax = range_.qmax;
  const double levels = static_cast<double>(qmax - qmin);
  double best_s = 0, best_b = 0;
  if (mag > 0) {
    x = x / mag;
    const double nlo = lo / mag, nhi = hi / mag;
    double best_mse = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 95; ++i) {
      const double f = 1.0 - 0.01 * i;
      const double s = std::max((nhi - nlo) * f / levels, 0.0);
      if (!(s > 0)) break;  // constant input: min-max is already exact (handled below)
      const double b = nlo * f - static_cast<double>(qmin) * s;
      const double m = mse_of(x, s, b, qmin, qmax);
      if (m < best_mse) best_mse = m, best_s = s, best_b = b;
    }
    for (int it = 0; it < 20 && best_s > 0; ++it) {
      auto q = at::clamp(at::round((x - best_b) / best_s), static_cast<double>(qmin), static_cast<double>(qmax));
      const double qm = q.mean().item<double>(), xm = x.mean().item<double>();
      const double var_q = (q - qm).pow(2).mean().item<double>();
      if (!(var_q > 0)) break;
      const double s = ((q - qm) * (x - xm)).mean().item<double>() / var_q;
      if (!(s > 0) || !std::isfinite(s)) break;
      const double b = xm - s * qm;
      const double m = mse_of(x, s, b, qmin, qmax);
      if (!(m < best_mse)) break;
      best_mse = m, best_s = s, best_b = b;
    }
    best_s *= mag;
    best_b *= mag;
  }
  if (!(best_s > 0)) {
    // All observed values equal (or all zero): any positive step reproduces them exactly with
    // beta placed so that level qmin sits on the value.
    best_s = kLsqMinStep;
    best_b = lo - static_cast<double>(qmin) * best_s;
  }
  best_s = std::max(best_s, kLsqMinStep);
  if (!std::isfinite(best_s) || !std::isfinite(best_b)) throw Error("lsq+: initial scale/offset is not finite");
  at::NoGradGuard no_grad;
  scale_.set_data(at::full({1}, best_s, at::TensorOptions().dtype(at::kFloat).device(samples_.front().device())));
  beta_.set_data(at::full({1}, best_b, at::TensorOptions().dtype(at::kFloat).device(samples_.front().device())));
}

void LsqPlusQuantizer::compute_qparams() {
  if (batches_ == 0) throw Error("lsq+: compute_qparams() before any tensor was observed");
  if (role_ == QatRole::Weight)
    init_weight();
  else
    init_activation();
  ready_ = true;
}

bool LsqPlusQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("lsq+: init_range() before compute_qparams()");
  auto s = step_for_range(qp, range_, scale_);
  if (role_ == QatRole::Activation) {
    const double lo = grid_range(qp).first.min().item<double>();
    beta_.set_data((lo - s * static_cast<double>(range_.qmin)).to(at::kFloat).to(beta_.device()));
  }
  scale_.set_data(s.to(scale_.device()));
  return true;
}

std::optional<QParams> LsqPlusQuantizer::affine_qparams() const {
  if (!ready_) return std::nullopt;
  QParams qp;
  auto s = scale_.detach().abs().clamp_min(kLsqMinStep).to(at::kFloat);
  qp.scale = per_channel_ ? s.contiguous() : s.reshape({});
  qp.range = range_;
  qp.ch_axis = ch_axis();
  if (beta_.defined()) {
    // x^ = q s + beta = (q - z) s with z = -beta / s: the learned offset is continuous, an
    // integer zero point can only approximate it (to half a step), so it is rounded here.
    // Where that zero point falls outside the integer range there is no affine equivalent on
    // this range, and we say so (nullopt) rather than clamp it and change the grid.
    const double z = std::nearbyint(-beta_.detach().item<double>() / qp.scale.item<double>());
    if (z < static_cast<double>(range_.qmin) || z > static_cast<double>(range_.qmax)) return std::nullopt;
    qp.zero_point = at::full({}, static_cast<int>(z), at::TensorOptions().dtype(at::kInt).device(qp.scale.device()));
  } else {
    qp.zero_point = at::zeros_like(qp.scale, at::kInt);
  }
  return qp;
}

std::string LsqPlusQuantizer::describe() const {
  std::string d = describe_step("lsq+", role_, scheme_, ready_, range_, per_channel_, scale_);
  if (ready_ && beta_.defined()) d += " beta=" + fmt(beta_.detach().item<double>());
  return d;
}

// ---------------------------------------------------------------------------------------------

void register_lsq(Registry<QatMethod>& r) {
  r.add("lsq", {"LSQ: learned step size, gradient scaled by 1/sqrt(N Qp), init 2<|v|>/sqrt(Qp); symmetric "
                "weights, activations unsigned when non-negative",
                "Esser et al. 2019, arXiv:1902.08153",
                [](const QuantScheme& s) { return std::make_shared<LsqQuantizer>(s, QatRole::Weight); },
                [](const QuantScheme& s) { return std::make_shared<LsqQuantizer>(s, QatRole::Activation); }});
  r.add("lsq+", {"LSQ+: LSQ with a learnable offset for asymmetric activations, MSE-initialised scale/offset; "
                 "weights symmetric with the mean +- 3 std init",
                 "Bhalgat et al. 2020, arXiv:2004.09576",
                 [](const QuantScheme& s) { return std::make_shared<LsqPlusQuantizer>(s, QatRole::Weight); },
                 [](const QuantScheme& s) { return std::make_shared<LsqPlusQuantizer>(s, QatRole::Activation); }});
}

}  // namespace qbench::qat
