// APoT (Li et al. 2020, arXiv:1909.13144): see qbench/quant/qat_apot.h for the equations and the
// choices where the paper and the authors' code (yhhhli/APoT_Quantization) differ.
#include "qbench/qat/apot.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "../kernels/fused.h"
#include "../kernels/apot.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {

// Smallest positive clipping threshold used in the graph: alpha is a magnitude, and a step that
// drives it to 0 or below must not divide by zero. Far below any real range (FLT_MIN).
constexpr double kAlphaFloor = 1.17549435e-38;

// The authors' build_power_value(B, additive=True): up to three "additive" PoT terms a + b + c,
// each drawn from its own list (0 included), normalised so the largest sum is 1. B is the number
// of magnitude bits (weights spend one bit on the sign). Reproduced case by case, as written
// in their quant_layer.py, because B = 3 and 5 do not split evenly into equal terms.
std::vector<double> build_power_value(int B) {
  std::vector<double> a{0.0}, b{0.0}, c{0.0};
  auto p2 = [](int e) { return std::ldexp(1.0, e); };  // 2^e
  switch (B) {
    case 2:  // single PoT term: {0, 2^-1, 2^-2, 2^-3}
      for (int i = 0; i < 3; ++i) a.push_back(p2(-i - 1));
      break;
    case 3:  // a in {0, 2^-1, 2^-2, 2^-4}, b in {0, 2^-3}
      for (int i = 0; i < 3; ++i) {
        if (i < 2) {
          a.push_back(p2(-i - 1));
        } else {
          b.push_back(p2(-i - 1));
          a.push_back(p2(-i - 2));
        }
      }
      break;
    case 4:  // two interleaved terms: a in {0, 2^-1, 2^-3, 2^-5}, b in {0, 2^-2, 2^-4, 2^-6}
      for (int i = 0; i < 3; ++i) {
        a.push_back(p2(-2 * i - 1));
        b.push_back(p2(-2 * i - 2));
      }
      break;
    case 5:
      for (int i = 0; i < 3; ++i) {
        if (i < 2) {
          a.push_back(p2(-2 * i - 1));
          b.push_back(p2(-2 * i - 2));
        } else {
          c.push_back(p2(-2 * i - 1));
          a.push_back(p2(-2 * i - 2));
          b.push_back(p2(-2 * i - 3));
        }
      }
      break;
    case 6:  // three interleaved terms
      for (int i = 0; i < 3; ++i) {
        a.push_back(p2(-3 * i - 1));
        b.push_back(p2(-3 * i - 2));
        c.push_back(p2(-3 * i - 3));
      }
      break;
    default:
      throw Error("apot: no additive level set for " + std::to_string(B) + " magnitude bits");
  }
  // Sums of powers of two with exponents >= -9 are exact in double, so std::set dedups exactly.
  std::set<double> sums;
  for (double x : a)
    for (double y : b)
      for (double z : c) sums.insert(x + y + z);
  const double top = *sums.rbegin();
  std::vector<double> out;
  for (double v : sums) out.push_back(v / top);
  return out;
}

std::vector<double> uniform_levels(int64_t m) {
  std::vector<double> out;
  for (int64_t k = 0; k <= m; ++k) out.push_back(static_cast<double>(k) / static_cast<double>(m));
  return out;
}

at::Tensor midpoints_of(const at::Tensor& levels) {
  if (levels.numel() < 2) return levels.new_empty({0});
  return (levels.slice(0, 1) + levels.slice(0, 0, -1)) * 0.5;
}

// Nearest level for |v| (v in [-1, 1]) with the sign of v. A tie (|v| exactly half-way between
// two levels) goes to the lower level; the authors' argmin picks whichever comes first in
// their unsorted set, so ties are arbitrary there.
at::Tensor project(const at::Tensor& v, const at::Tensor& levels, const at::Tensor& mids) {
  auto idx = at::bucketize(v.abs(), mids);
  return at::take(levels, idx) * at::sign(v);
}

at::Tensor rcf(const at::Tensor& w_hat, const at::Tensor& alpha, const at::Tensor& levels, const at::Tensor& mids) {
  auto v = at::clamp(w_hat / alpha, -1.0, 1.0);
  auto p = project(v.detach(), levels, mids);
  // Straight-through for Proj only: with w_q = alpha * q, autograd gives d/d alpha =
  // p - w_hat/alpha inside and p = sign(w_hat) outside (RCF), d/d w_hat = 1 inside, 0 outside.
  auto q = (p - v).detach() + v;
  return alpha * q;
}

// Fused uniform APoT activation quantizer (float32, CPU): a * round(clip(x / a, lo, 1) m) / m in
// one pass, dx and the RCF alpha gradient in another, instead of six autograd nodes.
struct ApotActPerTensorFn : public torch::autograd::Function<ApotActPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& a, double m,
                            double lo) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc, a});
    ctx->saved_data["m"] = m;
    ctx->saved_data["lo"] = lo;
    const float av = a.item<float>(), mf = static_cast<float>(m), lf = static_cast<float>(lo);
    return fused::map(xc, [&](const float* in, float* out, int64_t n) { kernels::apot_act_forward_kernel(in, out, n, av, mf, lf); });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& a = saved[1];
    const float mf = static_cast<float>(ctx->saved_data["m"].toDouble());
    const float lf = static_cast<float>(ctx->saved_data["lo"].toDouble());
    const float av = a.item<float>();
    auto [gx, ga] = fused::grad<double>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
      return kernels::apot_act_backward_kernel(x, dy, dx, n, av, mf, lf);
    });
    return {gx, at::full(a.sizes(), ga, a.options()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<double> apot_weight_levels(int bits) {
  if (bits < 2 || bits > 8) throw Error("apot: weight bits must be 2..8, got " + std::to_string(bits));
  if (bits == 2) return uniform_levels(1);     // the authors' 2-bit weights: uniform ternary
  if (bits == 8) return uniform_levels(127);   // beyond build_power_value: uniform, as their 8-bit layers
  return build_power_value(bits - 1);          // one bit for the sign
}

at::Tensor apot_rcf(const at::Tensor& w_hat, const at::Tensor& alpha, const at::Tensor& levels) {
  return rcf(w_hat, alpha, levels, midpoints_of(levels));
}

// ---------------------------------------------------------------------------------------------
// Weights

ApotWeightQuantizer::ApotWeightQuantizer(QuantScheme scheme, double alpha_init, bool restore_scale)
    : FakeQuantizer(scheme), alpha_init_(alpha_init), restore_scale_(restore_scale) {
  if (!(alpha_init > 0.0)) throw Error("apot: alpha_init must be positive");
  const auto lv = apot_weight_levels(scheme.bits);
  auto levels = at::tensor(at::ArrayRef<double>(lv), at::kDouble).to(at::kFloat);
  levels_ = register_buffer("levels", levels);
  midpoints_ = register_buffer("midpoints", midpoints_of(levels));
  alpha_ = register_parameter("alpha", at::full({}, alpha_init));
}

at::Tensor ApotWeightQuantizer::forward(const at::Tensor& w) {
  const bool observe = observing_ && w.numel() > 0;
  if (!observe && !quantizing_) return w;
  if (observe) check_finite(w, "apot weight observer");
  // Weight normalisation with detached statistics (authors' CIFAR code), in double so huge
  // weights cannot overflow the variance. A constant or one-element tensor has no spread to
  // normalise by: std is taken as 1 then (the paper's epsilon would make the result scale
  // dependent instead). One std serves the observer and the forward.
  const auto wd = w.detach().to(at::kDouble);
  auto sd = w.numel() > 1 ? wd.std() : at::zeros({}, wd.options());
  sd = at::where(at::isfinite(sd) & (sd > 0), sd, at::ones_like(sd));
  if (observe) {
    ++observed_;
    observed_std_ = sd.item<double>();
  }
  if (!quantizing_) return w;
  auto mu = wd.mean();
  mu = mu.to(w.scalar_type());
  sd = sd.to(w.scalar_type());
  auto w_hat = (w - mu) / sd;
  auto wq = rcf(w_hat, at::clamp_min(alpha_, kAlphaFloor).to(w.scalar_type()), levels_.to(w.scalar_type()),
                midpoints_.to(w.scalar_type()));
  return restore_scale_ ? wq * sd : wq;
}

void ApotWeightQuantizer::compute_qparams() {
  if (!observed_) throw Error("apot: compute_qparams() before any weight was observed");
  {
    at::NoGradGuard no_grad;
    alpha_.fill_(alpha_init_);
  }
  ready_ = true;
}

bool ApotWeightQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("apot: init_range() before compute_qparams()");
  const double m = static_cast<double>((int64_t(1) << (scheme_.bits - 1)) - 1);
  alpha_.fill_(std::max(grid_step(qp) * m / observed_std_, kAlphaFloor));
  return true;
}

std::string ApotWeightQuantizer::describe() const {
  std::ostringstream os;
  os << "apot weight " << scheme_.bits << "-bit per-tensor, " << (2 * levels_.numel() - 1)
     << " levels, normalised (w - mean)/std" << (restore_scale_ ? " (output rescaled by std)" : "");
  if (ready_)
    os << " alpha=" << alpha_.item<double>();
  else
    os << " (not initialised)";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Activations

ApotActivationQuantizer::ApotActivationQuantizer(QuantScheme scheme) : FakeQuantizer(scheme) {
  if (scheme.bits < 2 || scheme.bits > 16) throw Error("apot: activation bits must be 2..16");
  alpha_ = register_parameter("alpha", at::ones({}));
}

int64_t ApotActivationQuantizer::positive_levels() const {
  return signed_ ? (int64_t(1) << (scheme_.bits - 1)) - 1 : (int64_t(1) << scheme_.bits) - 1;
}

at::Tensor ApotActivationQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    check_finite(x, "apot activation observer");
    const auto d = x.detach();
    const double mn = d.min().item<double>(), am = d.abs().max().item<double>();
    obs_min_ = observed_ ? std::min(obs_min_, mn) : mn;
    obs_absmax_ = observed_ ? std::max(obs_absmax_, am) : am;
    ++observed_;
  }
  if (!quantizing_) return x;
  const double m = static_cast<double>(positive_levels());
  auto a = at::clamp_min(alpha_, kAlphaFloor).to(x.scalar_type());
  if (x.scalar_type() == at::kFloat && x.device().is_cpu() && a.numel() == 1)
    return ApotActPerTensorFn::apply(x, a, m, signed_ ? -1.0 : 0.0);
  auto v = signed_ ? at::clamp(x / a, -1.0, 1.0) : at::clamp(x / a, 0.0, 1.0);
  // RCF with uniform levels: autograd through alpha * round_ste(v m) / m gives exactly the
  // authors' rule, d/d alpha = q - x/alpha inside and +-1 at the clip.
  return a * round_ste(v * m) / m;
}

void ApotActivationQuantizer::compute_qparams() {
  if (!observed_) throw Error("apot: compute_qparams() before any activation was observed");
  if (!std::isfinite(obs_min_) || !std::isfinite(obs_absmax_))
    throw Error("apot: observed activation range is not finite");
  signed_ = scheme_.signedness == Signedness::Signed || (scheme_.signedness == Signedness::Auto && obs_min_ < 0.0);
  const double a0 = obs_absmax_ > 0.0 ? obs_absmax_ : 1.0;  // all-zero input: unit range
  {
    at::NoGradGuard no_grad;
    alpha_.fill_(a0);
  }
  ready_ = true;
}

std::optional<QParams> ApotActivationQuantizer::affine_qparams() const {
  if (!ready_) return std::nullopt;
  const int64_t m = positive_levels();
  QParams qp;
  qp.scale = (at::clamp_min(alpha_.detach(), kAlphaFloor) / static_cast<double>(m)).to(at::kFloat).cpu();
  qp.zero_point = at::zeros({}, at::kInt);
  qp.range = signed_ ? QRange{-m, m} : QRange{0, m};
  return qp;
}

bool ApotActivationQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("apot: init_range() before compute_qparams()");
  alpha_.fill_(std::max(grid_abs_max(qp), kAlphaFloor));
  return true;
}

std::string ApotActivationQuantizer::describe() const {
  std::ostringstream os;
  os << "apot activation " << scheme_.bits << "-bit per-tensor uniform (RCF)";
  if (ready_)
    os << (signed_ ? " signed" : " unsigned") << " alpha=" << alpha_.item<double>();
  else
    os << " (not initialised)";
  return os.str();
}

void register_apot(Registry<QatMethod>& r) {
  QatMethod m;
  m.description =
      "Additive Powers-of-Two: normalised weights projected onto sums of powers of two with a learnable "
      "clipping alpha (RCF gradient); uniform activations with learnable clipping";
  m.paper = "Li, Dong & Wang 2020, Additive Powers-of-Two Quantization, arXiv:1909.13144";
  m.make_weight = [](const QuantScheme& s) { return std::make_shared<ApotWeightQuantizer>(s); };
  m.make_activation = [](const QuantScheme& s) { return std::make_shared<ApotActivationQuantizer>(s); };
  m.nonuniform = "its weight levels are sums of powers of two, not the uniform grid mixed precision measures";
  r.add("apot", std::move(m));
}

}  // namespace qbench::qat
