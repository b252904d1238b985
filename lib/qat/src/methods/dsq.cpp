// DSQ (Gong et al. 2019, arXiv:1908.05033): see qbench/quant/qat_dsq.h for the equations.
#include "qbench/qat/dsq.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <sstream>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "../kernels/dsq.h"
#include "../kernels/fused.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {
// alpha lives in the open interval (0, 0.5): alpha -> 0 is the hard staircase (k -> inf),
// alpha = 0.5 the softest curve the paper allows.
constexpr double kAlphaMin = 1e-4, kAlphaMax = 0.5;
// A floor on u - l so a collapsed range cannot divide by zero; far below any real range.
constexpr double kMinRange = 1e-30;

double cells(int64_t bits) { return static_cast<double>((int64_t(1) << bits) - 1); }  // n = 2^b - 1

// The per-tensor quantities of the curve, shared by the composed form (which differentiates
// them) and the fused one (which reads their float values), so both see the same numbers.
struct DsqCurve {
  at::Tensor delta;  // cell width (u - l) / n, u - l floored at kMinRange
  at::Tensor kd;     // k * Delta
  at::Tensor s;      // 1 / tanh(k*Delta/2)
};
DsqCurve dsq_curve(const at::Tensor& lower, const at::Tensor& upper, const at::Tensor& alpha, double n) {
  return {at::clamp_min(upper - lower, kMinRange) / n, at::log(2.0 / alpha - 1.0), 1.0 / (1.0 - alpha)};
}

// The forward's constants and alpha, kept for the backward under their own names (each float
// converts to the saved double and back exactly).
void save_consts(torch::autograd::AutogradContext* ctx, const kernels::DsqConsts& c, float alpha) {
  auto& d = ctx->saved_data;
  d["l"] = static_cast<double>(c.l);
  d["u"] = static_cast<double>(c.u);
  d["delta"] = static_cast<double>(c.delta);
  d["last"] = static_cast<double>(c.last);
  d["kd"] = static_cast<double>(c.kd);
  d["s"] = static_cast<double>(c.s);
  d["slope"] = static_cast<double>(c.slope);
  d["alpha"] = static_cast<double>(alpha);
}
kernels::DsqConsts load_consts(torch::autograd::AutogradContext* ctx, float* alpha) {
  auto& d = ctx->saved_data;
  auto f = [&d](const char* name) { return static_cast<float>(d.at(name).toDouble()); };
  kernels::DsqConsts c;
  c.l = f("l");
  c.u = f("u");
  c.delta = f("delta");
  c.last = f("last");
  c.kd = f("kd");
  c.s = f("s");
  c.slope = f("slope");
  *alpha = f("alpha");
  return c;
}

// Fused per-tensor DSQ (float32, CPU): the hard forward in one pass and the soft curve's
// gradients in another (src/kernels/dsq.cpp), instead of the ~20 elementwise autograd nodes of
// dsq_quantize below (issue 21: DSQ's training step was 3.74x FP32's). Same math as
// dsq_quantize's autograd, tie rules included: where x == l or x == u exactly, LibTorch's
// maximum/minimum backward gives half the gradient to x and half to the bound (so in a ReLU
// output with l = 0 every zero sends half its gradient to x and half to l), and clamp_min passes
// the range's gradient where u - l >= kMinRange. The cell index has no gradient.
struct DsqFn : public torch::autograd::Function<DsqFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& lower,
                            const at::Tensor& upper, const at::Tensor& alpha, int64_t bits) {
    auto xc = x.contiguous();
    const double n = cells(bits);
    const DsqCurve curve = dsq_curve(lower, upper, alpha, n);
    kernels::DsqConsts c;
    c.l = lower.item<float>();
    c.u = upper.item<float>();
    c.delta = curve.delta.item<float>();
    c.last = static_cast<float>(n - 1.0);
    c.kd = curve.kd.item<float>();
    c.s = curve.s.item<float>();
    c.slope = static_cast<float>(0.5 * static_cast<double>(c.s) * static_cast<double>(c.kd));
    // The backward uses these values (not the parameters, which an optimiser may have moved).
    save_consts(ctx, c, alpha.item<float>());
    ctx->saved_data["pass"] = (upper - lower).ge(kMinRange).item<bool>();  // clamp_min's backward
    ctx->save_for_backward({xc, lower, upper, alpha});  // the parameters for their shapes and options
    return fused::map(xc, [&](const float* in, float* out, int64_t cnt) { kernels::dsq_forward_kernel(in, out, cnt, c); });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& lower = saved[1];
    const auto& upper = saved[2];
    const auto& alpha = saved[3];
    float a_f = 0.f;
    const kernels::DsqConsts c = load_consts(ctx, &a_f);
    auto [gx, sums] =
        fused::grad<kernels::DsqGradSums>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t cnt) {
          return kernels::dsq_backward_kernel(x, dy, dx, cnt, c);
        });
    // delta = clamp_min(u - l, kMinRange) / n; s = 1 / (1 - alpha), kd = log(2 / alpha - 1).
    const double n = static_cast<double>(c.last) + 1.0;  // cells
    const double d_range = ctx->saved_data["pass"].toBool() ? sums.delta / n : 0.0;
    const double a = a_f;
    const double ds_da = 1.0 / ((1.0 - a) * (1.0 - a)), dkd_da = -2.0 / (a * (2.0 - a));
    const double d_alpha = static_cast<double>(c.delta) * 0.5 *
                           (ds_da * sums.tanh + static_cast<double>(c.s) * dkd_da * sums.kd);
    return {gx, at::full(lower.sizes(), sums.dy + sums.l - d_range, lower.options()),
            at::full(upper.sizes(), sums.u + d_range, upper.options()), at::full(alpha.sizes(), d_alpha, alpha.options()),
            at::Tensor()};
  }
};

bool fusable(const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper, const at::Tensor& alpha) {
  if (x.scalar_type() != at::kFloat || !x.device().is_cpu()) return false;
  for (const auto* p : {&lower, &upper, &alpha})
    if (p->scalar_type() != at::kFloat || !p->device().is_cpu() || p->numel() != 1) return false;
  return true;
}
}  // namespace

at::Tensor dsq_quantize(const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper,
                        const at::Tensor& alpha, int bits) {
  const double n = cells(bits);  // number of cells, 2^b - 1
  const DsqCurve curve = dsq_curve(lower, upper, alpha, n);
  const auto& delta = curve.delta;
  // Clip first (x' = l below l, u above u: no gradient to x there, gradient 1 to the bound), so
  // the cell coordinate t stays in [0, n] and the division never sees an unbounded numerator.
  auto xc = at::minimum(at::maximum(x, lower), upper);
  auto t = (xc - lower) / delta;  // position in cells
  // Cell index i: piecewise constant (no gradient); the last cell is closed so x = u lies in it.
  auto i = at::clamp(at::floor(t.detach()), 0.0, n - 1.0);
  const auto& kd = curve.kd;  // k * Delta
  const auto& s = curve.s;    // 1 / tanh(k*Delta/2)
  // (phi + 1)/2 with phi = s * tanh(k (x - m_i)) and k (x - m_i) = k*Delta * (t - i - 1/2).
  auto soft = i + 0.5 * (s * at::tanh(kd * (t - i - 0.5)) + 1.0);
  // Forward: sgn(phi) instead of phi, i.e. round the soft index (soft lies in [i, i+1] and
  // crosses i + 1/2 exactly at the cell centre). Backward: the derivative of Q_S itself, for l
  // and u too. (MQBench applies the straight-through trick to the index only, so its gradient
  // for the scale Delta uses the rounded index instead of the soft one.)
  auto q_soft = lower + delta * soft;
  auto q_hard = lower + delta * at::round(soft.detach());
  return (q_hard - q_soft).detach() + q_soft;
}

DsqQuantizer::DsqQuantizer(QuantScheme scheme, Role role, double alpha_init)
    : FakeQuantizer(scheme), role_(role), alpha_init_(alpha_init) {
  if (scheme.bits < 1 || scheme.bits > 16) throw Error("dsq: bits must be 1..16");
  if (!(alpha_init > 0.0 && alpha_init <= kAlphaMax)) throw Error("dsq: alpha_init must lie in (0, 0.5]");
  lower_ = register_parameter("lower", at::zeros({}));
  upper_ = register_parameter("upper", at::ones({}));
  alpha_ = register_parameter("alpha", at::full({}, alpha_init));
}

at::Tensor DsqQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    check_finite(x, "dsq observer");
    const auto d = x.detach();
    const double mn = d.min().item<double>(), mx = d.max().item<double>();
    obs_min_ = observed_ ? std::min(obs_min_, mn) : mn;
    obs_max_ = observed_ ? std::max(obs_max_, mx) : mx;
    ++observed_;
  }
  if (!quantizing_) return x;
  // The paper keeps alpha inside (0, 0.5); an optimiser step may leave it, so project it back
  // (a projected-gradient step, done here because the quantizer does not own the optimiser).
  // Through .data(), like PyTorch's `p.data.clamp_()`: no host sync, no autograd version bump.
  alpha_.data().clamp_(kAlphaMin, kAlphaMax);
  const auto dt = x.scalar_type();
  const auto l = lower_.to(dt), u = upper_.to(dt), a = alpha_.to(dt);
  // float32 on the CPU: the fused kernels; anything else: the composed form (their reference).
  if (fusable(x, l, u, a)) return DsqFn::apply(x, l, u, a, static_cast<int64_t>(scheme_.bits));
  return dsq_quantize(x, l, u, a, scheme_.bits);
}

void DsqQuantizer::compute_qparams() {
  if (!observed_) throw Error("dsq: compute_qparams() before any input was observed");
  if (!std::isfinite(obs_min_) || !std::isfinite(obs_max_)) throw Error("dsq: observed range is not finite");
  double lo = 0.0, hi = 0.0;
  if (role_ == Role::Weight) {
    // Weights: signed, symmetric initial range [-max|w|, max|w|] (both bounds then learn freely).
    signed_ = true;
    hi = std::max(std::fabs(obs_min_), std::fabs(obs_max_));
    lo = -hi;
  } else {
    signed_ = scheme_.signedness == Signedness::Signed ||
              (scheme_.signedness == Signedness::Auto && obs_min_ < 0.0);
    // The observed range widened to include 0 (as PyTorch's observers do), so a ReLU output
    // starts at l = 0 and a single negative value still gives a non-empty range.
    lo = signed_ ? std::min(obs_min_, 0.0) : 0.0;
    hi = std::max(obs_max_, 0.0);
  }
  if (!(hi - lo > 0.0)) {
    // All-zero input: no range to learn from. Start from [0, 1], where 0 is a level (a
    // symmetric range cut into an odd number of cells has no level at 0).
    lo = 0.0;
    hi = 1.0;
  }
  {
    at::NoGradGuard no_grad;
    lower_.fill_(lo);
    upper_.fill_(hi);
    alpha_.fill_(alpha_init_);
  }
  ready_ = true;
}

bool DsqQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("dsq: init_range() before compute_qparams()");
  const auto [lo_t, hi_t] = grid_range(qp);
  double lo = lo_t.min().item<double>(), hi = hi_t.max().item<double>();
  if (role_ == Role::Weight) {  // the grid's step over DSQ's own n cells, centred on 0
    hi = grid_step(qp) * cells(scheme_.bits) / 2.0;
    lo = -hi;
  }
  if (!(hi - lo > 0.0)) return false;  // an empty grid (all-zero input): keep compute_qparams' start
  lower_.fill_(lo);
  upper_.fill_(hi);
  return true;
}

std::string DsqQuantizer::describe() const {
  std::ostringstream os;
  os << "dsq " << (role_ == Role::Weight ? "weight " : "activation ") << scheme_.bits << "-bit per-tensor";
  if (ready_)
    os << (signed_ ? " signed" : " unsigned") << " l=" << lower_.item<double>() << " u=" << upper_.item<double>()
       << " alpha=" << alpha_.item<double>();
  else
    os << " (not initialised)";
  return os.str();
}

void register_dsq(Registry<QatMethod>& r) {
  QatMethod m;
  m.description =
      "Differentiable Soft Quantization: learnable clipping range [l, u] and tanh sharpness alpha; "
      "hard uniform levels forward, gradients through the soft tanh curve";
  m.paper = "Gong et al. 2019, Differentiable Soft Quantization, arXiv:1908.05033";
  m.make_weight = [](const QuantScheme& s) {
    return std::make_shared<DsqQuantizer>(s, DsqQuantizer::Role::Weight);
  };
  m.make_activation = [](const QuantScheme& s) {
    return std::make_shared<DsqQuantizer>(s, DsqQuantizer::Role::Activation);
  };
  r.add("dsq", std::move(m));
}

}  // namespace qbench::qat
