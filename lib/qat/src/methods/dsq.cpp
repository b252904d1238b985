// DSQ (Gong et al. 2019, arXiv:1908.05033): see qbench/quant/qat_dsq.h for the equations.
#include "qbench/qat/dsq.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

namespace {
// alpha lives in the open interval (0, 0.5): alpha -> 0 is the hard staircase (k -> inf),
// alpha = 0.5 the softest curve the paper allows.
constexpr double kAlphaMin = 1e-4, kAlphaMax = 0.5;
// A floor on u - l so a collapsed range cannot divide by zero; far below any real range.
constexpr double kMinRange = 1e-30;
}  // namespace

at::Tensor dsq_quantize(const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper,
                        const at::Tensor& alpha, int bits) {
  const double n = static_cast<double>((int64_t(1) << bits) - 1);  // number of cells, 2^b - 1
  auto delta = at::clamp_min(upper - lower, kMinRange) / n;
  // Clip first (x' = l below l, u above u: no gradient to x there, gradient 1 to the bound), so
  // the cell coordinate t stays in [0, n] and the division never sees an unbounded numerator.
  auto xc = at::minimum(at::maximum(x, lower), upper);
  auto t = (xc - lower) / delta;  // position in cells
  // Cell index i: piecewise constant (no gradient); the last cell is closed so x = u lies in it.
  auto i = at::clamp(at::floor(t.detach()), 0.0, n - 1.0);
  auto kd = at::log(2.0 / alpha - 1.0);  // k * Delta
  auto s = 1.0 / (1.0 - alpha);          // 1 / tanh(k*Delta/2)
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
  return dsq_quantize(x, lower_.to(x.scalar_type()), upper_.to(x.scalar_type()), alpha_.to(x.scalar_type()),
                      scheme_.bits);
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
