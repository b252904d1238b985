// QIL (Jung et al. 2019, arXiv:1808.05779): see qbench/quant/qat_qil.h for the equations and
// the choices the paper leaves open.
#include "qbench/qat/qil.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "../kernels/fused.h"
#include "../kernels/qil.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {
// d is a half-width: floor it so a step that drives it to 0 or below cannot divide by zero.
// FLT_MIN, far below any real interval.
constexpr double kDistanceFloor = 1.17549435e-38;

// alpha|x| + beta of the paper, written as (|x| - (c - d)) / (2d).
at::Tensor interval_position(const at::Tensor& mag, const at::Tensor& c, const at::Tensor& d) {
  auto dd = at::clamp_min(d, kDistanceFloor);
  return (mag - (c - dd)) / (2.0 * dd);
}

// Fused unsigned QIL activation quantizer (float32, CPU): T_X, the discretiser and the rescale
// in one pass; the input, c and d gradients in another (instead of about ten autograd nodes).
// Inputs: c (gradient-scaled centre) and dd (the floored, gradient-scaled half-width); the
// detached rescale factor and the level count are constants.
struct QilActPerTensorFn : public torch::autograd::Function<QilActPerTensorFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& c,
                            const at::Tensor& dd, double q, double scale) {
    auto xc = x.contiguous();
    // The interval's lower edge and width as the composed form computes them.
    const float edge = (c - dd).item<float>(), width = (2.0 * dd).item<float>();
    ctx->save_for_backward({xc, c, dd});
    ctx->saved_data["edge"] = static_cast<double>(edge);
    ctx->saved_data["width"] = static_cast<double>(width);
    ctx->saved_data["scale"] = scale;
    const float qf = static_cast<float>(q), sf = static_cast<float>(scale);
    return fused::map(xc, [&](const float* in, float* out, int64_t n) {
      kernels::qil_act_forward_kernel(in, out, n, edge, width, qf, sf);
    });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& c = saved[1];
    const auto& dd = saved[2];
    const float edge = static_cast<float>(ctx->saved_data["edge"].toDouble());
    const float width = static_cast<float>(ctx->saved_data["width"].toDouble());
    const float sf = static_cast<float>(ctx->saved_data["scale"].toDouble());
    auto [gx, sums] = fused::grad<kernels::QilGradSums>(xc, grads[0], [&](const float* x, const float* dy, float* dx, int64_t n) {
      return kernels::qil_act_backward_kernel(x, dy, dx, n, edge, width, sf);
    });
    // t = (x - c + d) / (2d): dt/dc = -1 / (2d), dt/dd = (1 - 2t) / (2d).
    const double w = static_cast<double>(width);
    return {gx, at::full(c.sizes(), -sums.sum_gp / w, c.options()), at::full(dd.sizes(), sums.sum_gp_pos / w, dd.options()),
            at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor qil_transform_weight(const at::Tensor& w, const at::Tensor& c, const at::Tensor& d,
                                const at::Tensor& gamma) {
  auto v = at::clamp(interval_position(w.abs(), c, d), 0.0, 1.0);
  // v^gamma only where v > 0: at the pruned points d(v^gamma)/dv = gamma v^(gamma-1) and
  // d(v^gamma)/d gamma = v^gamma log v are infinite/undefined at v = 0, and 0 * inf would turn
  // the (zero) gradient there into NaN. The value is 0 either way.
  auto inside = (v > 0.0).detach();
  auto base = at::where(inside, v, at::ones_like(v));
  auto powed = at::where(inside, at::pow(base, gamma), at::zeros_like(v));
  return at::sign(w).detach() * powed;
}

at::Tensor qil_transform_activation(const at::Tensor& x, const at::Tensor& c, const at::Tensor& d) {
  return at::clamp(interval_position(x, c, d), 0.0, 1.0);
}

at::Tensor qil_discretize(const at::Tensor& x_hat, int64_t q) {
  const double qd = static_cast<double>(q);
  return round_ste(x_hat * qd) / qd;
}

QilQuantizer::QilQuantizer(QuantScheme scheme, Role role, bool rescale)
    : FakeQuantizer(scheme), role_(role), rescale_(rescale) {
  if (scheme.bits < 2 || scheme.bits > 16) throw Error("qil: bits must be 2..16");
  center_ = register_parameter("center", at::full({}, 0.5));
  distance_ = register_parameter("distance", at::full({}, 0.5));
  if (role_ == Role::Weight) gamma_ = register_parameter("gamma", at::ones({}));
}

int64_t QilQuantizer::levels_q() const {
  return signed_ ? (int64_t(1) << (scheme_.bits - 1)) - 1 : (int64_t(1) << scheme_.bits) - 1;
}

std::vector<at::Tensor> QilQuantizer::quant_parameters() {
  if (role_ == Role::Weight) return {center_, distance_, gamma_};
  return {center_, distance_};
}

at::Tensor QilQuantizer::forward(const at::Tensor& x) {
  if (observing_ && x.numel() > 0) {
    check_finite(x, "qil observer");
    const auto dx = x.detach();
    const double mn = dx.min().item<double>(), am = dx.abs().max().item<double>();
    obs_min_ = observed_ ? std::min(obs_min_, mn) : mn;
    obs_absmax_ = observed_ ? std::max(obs_absmax_, am) : am;
    ++observed_;
  }
  if (!quantizing_) return x;
  const auto dt = x.scalar_type();
  // Gradient scaling as in LSQ (docs/algorithms.md, QAT table: "gradient scale as lsq"; MQBench-style QIL
  // re-implementations do the same): c, d and gamma receive gradients summed over every element
  // of the tensor, which at lr 0.01 moves the interval by whole units per step and ends in a
  // collapsed network. g = 1 / sqrt(N * Qp), N = elements per sample (weights: all of them).
  const double per_sample = role_ == Role::Weight || x.dim() == 0 ? static_cast<double>(x.numel())
                                                                   : static_cast<double>(x.numel() / std::max<int64_t>(1, x.size(0)));
  const double g = 1.0 / std::sqrt(std::max(1.0, per_sample) * std::max(1.0, static_cast<double>(levels_q())));
  auto c = grad_scale(center_, g).to(dt), d = grad_scale(distance_, g).to(dt);
  at::Tensor t;
  if (role_ == Role::Weight)
    t = qil_transform_weight(x, c, d, grad_scale(gamma_, g).to(dt));
  else if (signed_)
    t = qil_transform_weight(x, c, d, at::ones({}, x.options()));  // symmetric T, gamma = 1
  else if (x.scalar_type() == at::kFloat && x.device().is_cpu() && c.numel() == 1 && d.numel() == 1) {
    const double scale =
        rescale_ ? at::clamp_min(c + at::clamp_min(d, kDistanceFloor), kDistanceFloor).item<double>() : 1.0;
    return QilActPerTensorFn::apply(x, c, at::clamp_min(d, kDistanceFloor), static_cast<double>(levels_q()), scale);
  } else {
    t = qil_transform_activation(x, c, d);
  }
  auto out = qil_discretize(t, levels_q());
  if (!rescale_) return out;
  // Back to the input's units: multiply by the clipping threshold c + d (a constant here).
  return out * at::clamp_min(c + at::clamp_min(d, kDistanceFloor), kDistanceFloor).detach();
}

void QilQuantizer::compute_qparams() {
  if (!observed_) throw Error("qil: compute_qparams() before any input was observed");
  if (!std::isfinite(obs_min_) || !std::isfinite(obs_absmax_)) throw Error("qil: observed range is not finite");
  signed_ = role_ == Role::Weight || scheme_.signedness == Signedness::Signed ||
            (scheme_.signedness == Signedness::Auto && obs_min_ < 0.0);
  const double half = obs_absmax_ > 0.0 ? obs_absmax_ / 2.0 : 0.5;  // interval [0, max|x|]
  {
    at::NoGradGuard no_grad;
    center_.fill_(half);
    distance_.fill_(half);
    if (gamma_.defined()) gamma_.fill_(1.0);
  }
  ready_ = true;
}

bool QilQuantizer::init_range(const QParams& qp) {
  if (!ready_) throw Error("qil: init_range() before compute_qparams()");
  // Weights: the grid's step over QIL's own q levels each side (T is symmetric in |w|);
  // activations: the grid's upper edge.
  const double edge = role_ == Role::Weight ? grid_step(qp) * static_cast<double>(levels_q()) : grid_abs_max(qp);
  const double half = std::max(edge, kDistanceFloor) / 2.0;
  center_.fill_(half);
  distance_.fill_(half);
  return true;
}

std::string QilQuantizer::describe() const {
  std::ostringstream os;
  os << "qil " << (role_ == Role::Weight ? "weight " : "activation ") << scheme_.bits << "-bit per-tensor";
  if (ready_) {
    os << (signed_ ? " signed" : " unsigned") << " c=" << center_.item<double>() << " d=" << distance_.item<double>();
    if (gamma_.defined()) os << " gamma=" << gamma_.item<double>();
    os << " (prune below c-d, clip above c+d" << (rescale_ ? ", output x (c+d))" : ")");
  } else {
    os << " (not initialised)";
  }
  return os.str();
}

void register_qil(Registry<QatMethod>& r) {
  QatMethod m;
  m.description =
      "Quantization Interval Learning: learnable interval centre/distance (pruning below, clipping above) "
      "and weight transformer exponent gamma, uniform discretiser with STE";
  m.paper = "Jung et al. 2019, Learning to Quantize Deep Networks by Optimizing Quantization Intervals with "
            "Task Loss, arXiv:1808.05779";
  m.make_weight = [](const QuantScheme& s) { return std::make_shared<QilQuantizer>(s, QilQuantizer::Role::Weight); };
  m.make_activation = [](const QuantScheme& s) {
    return std::make_shared<QilQuantizer>(s, QilQuantizer::Role::Activation);
  };
  r.add("qil", std::move(m));
}

}  // namespace qbench::qat
