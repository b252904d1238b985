// DSQ (Gong et al. 2019, arXiv:1908.05033) against a scalar reference written from the paper:
// the hard forward value, the soft curve's closed-form gradients, and central finite
// differences of the soft curve Q_S.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "qbench/qat/dsq.h"

#include "qat_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;

namespace {

// The paper's quantizer on [l, u] with 2^b - 1 cells, in double.
struct DsqRef {
  double l, u, alpha;
  int bits;
  double n() const { return std::ldexp(1.0, bits) - 1.0; }
  double delta() const { return (u - l) / n(); }
  double t(double x) const { return (x - l) / delta(); }
  double cell(double x) const { return std::min(std::floor(t(x)), n() - 1.0); }
  double kd() const { return std::log(2.0 / alpha - 1.0); }  // k * Delta
  double s() const { return 1.0 / std::tanh(0.5 * kd()); }    // s = 1/tanh(k Delta / 2)
  // Hard quantizer: sgn(phi) in place of phi, i.e. the nearer edge of the cell.
  double hard(double x) const {
    if (x <= l) return l;
    if (x >= u) return u;
    const double i = cell(x), m = l + (i + 0.5) * delta();
    const double sgn = x > m ? 1.0 : (x < m ? -1.0 : 0.0);
    return l + delta() * (i + (sgn + 1.0) / 2.0);
  }
  // Soft quantizer Q_S, phi(x) = s tanh(k (x - m_i)), k = kd / Delta; cell index i held at
  // `i_fixed` (the FD surrogate must not jump cells).
  double soft(double x, double i_fixed) const {
    if (x < l) return l;
    if (x > u) return u;
    const double k = kd() / delta(), m = l + (i_fixed + 0.5) * delta();
    const double phi = s() * std::tanh(k * (x - m));
    return l + delta() * (i_fixed + (phi + 1.0) / 2.0);
  }
  // Closed-form gradients of Q_S (derived from the soft curve; see the test for the formulas).
  struct Grad {
    double x, l, u, alpha;
  };
  Grad grad(double x) const {
    if (x < l) return {0, 1, 0, 0};
    if (x > u) return {0, 0, 1, 0};
    const double tt = t(x), i = cell(x), f = tt - i, N = n();
    const double g = std::tanh(kd() * (f - 0.5));
    // alpha form of s: s = 1/(1 - alpha), identical to 1/tanh(k Delta/2) by definition of alpha.
    const double sa = 1.0 / (1.0 - alpha);
    const double soft_idx = i + 0.5 + 0.5 * sa * g;
    const double dsoft_dt = 0.5 * sa * kd() * (1.0 - g * g);
    Grad r;
    r.x = dsoft_dt;                                             // Delta * dsoft/dt * dt/dx
    r.l = 1.0 - soft_idx / N + dsoft_dt * (tt / N - 1.0);       // dDelta/dl = -1/N, dt/dl = (t/N - 1)/Delta
    r.u = soft_idx / N - dsoft_dt * tt / N;                     // dDelta/du = 1/N, dt/du = -t/(N Delta)
    const double ds_da = 1.0 / ((1.0 - alpha) * (1.0 - alpha));
    const double dkd_da = -2.0 / (alpha * (2.0 - alpha));       // d/da log(2/a - 1)
    r.alpha = delta() * 0.5 * (ds_da * g + sa * (1.0 - g * g) * (f - 0.5) * dkd_da);
    return r;
  }
};

// Points of [l - margin, u + margin] (as floats) at least `gap` cells away from cell edges,
// cell centres and the clip bounds.
std::vector<float> probe_points(const DsqRef& r, int count, double gap, unsigned seed) {
  std::vector<float> out;
  at::manual_seed(seed);
  auto cand = at::rand({count * 4}, at::kDouble) * (r.u - r.l + 0.6) + (r.l - 0.3);
  for (int64_t k = 0; k < cand.numel() && static_cast<int>(out.size()) < count; ++k) {
    const float xf = static_cast<float>(cand[k].item<double>());
    const double t = r.t(xf), frac2 = 2.0 * t - std::floor(2.0 * t);  // edges and centres: multiples of 1/2
    if (std::min(frac2, 1.0 - frac2) < 2.0 * gap) continue;
    out.push_back(xf);
  }
  return out;
}

at::Tensor scalar(double v, bool grad = true) { return at::full({}, v, at::kFloat).set_requires_grad(grad); }

}  // namespace

TEST_CASE("dsq: the forward value is the paper's hard quantizer (scalar loop)", "[dsq][numeric]") {
  for (int bits : {2, 3, 4, 8}) {
    const float lf = -0.7f, uf = 1.3f, af = 0.2f;
    DsqRef ref{lf, uf, af, bits};
    auto pts = probe_points(ref, 400, 1e-4, 7 + bits);
    auto x = at::tensor(pts);
    auto y = dsq_quantize(x, scalar(lf, false), scalar(uf, false), scalar(af, false), bits);
    int64_t bad = 0;
    for (size_t k = 0; k < pts.size(); ++k) {
      const double expect = ref.hard(pts[k]);
      if (std::fabs(y[k].item<double>() - expect) > 1e-5 * std::max(1.0, std::fabs(expect))) ++bad;
    }
    INFO("bits " << bits);
    CHECK(bad == 0);
    // 2^b levels at most, and none outside [l, u].
    CHECK(std::get<0>(at::_unique(y)).numel() <= (int64_t(1) << bits));
    CHECK(y.min().item<float>() >= lf - 1e-6f);
    CHECK(y.max().item<float>() <= uf + 1e-6f);
  }
}

TEST_CASE("dsq: alpha changes the backward curve, never the forward value", "[dsq][numeric]") {
  at::manual_seed(3);
  auto x = at::randn({200});
  auto a1 = dsq_quantize(x, scalar(-1.5, false), scalar(1.5, false), scalar(0.05, false), 3);
  auto a2 = dsq_quantize(x, scalar(-1.5, false), scalar(1.5, false), scalar(0.45, false), 3);
  CHECK(at::equal(a1, a2));
  auto xg1 = x.clone().set_requires_grad(true), xg2 = x.clone().set_requires_grad(true);
  dsq_quantize(xg1, scalar(-1.5, false), scalar(1.5, false), scalar(0.05, false), 3).sum().backward();
  dsq_quantize(xg2, scalar(-1.5, false), scalar(1.5, false), scalar(0.45, false), 3).sum().backward();
  CHECK_FALSE(at::allclose(xg1.grad(), xg2.grad()));
}

TEST_CASE("dsq: gradients of x, l, u, alpha match the soft curve's closed form and finite differences",
          "[dsq][numeric]") {
  for (int bits : {2, 4}) {
    for (float af : {0.1f, 0.2f, 0.45f}) {
      const float lf = -0.6f, uf = 0.9f;
      DsqRef ref{lf, uf, af, bits};
      auto pts = probe_points(ref, 40, 0.02, 11 + bits);
      REQUIRE(pts.size() == 40);
      for (float xf : pts) {
        auto x = scalar(xf), l = scalar(lf), u = scalar(uf), a = scalar(af);
        auto y = dsq_quantize(x, l, u, a, bits);
        auto g = torch::autograd::grad({y}, {x, l, u, a}, {}, false, false, true);
        const auto cf = ref.grad(xf);
        INFO("bits " << bits << " alpha " << af << " x " << xf);
        CHECK(g[0].item<double>() == Approx(cf.x).epsilon(2e-4).margin(1e-5));
        CHECK(g[1].item<double>() == Approx(cf.l).epsilon(2e-4).margin(1e-5));
        CHECK(g[2].item<double>() == Approx(cf.u).epsilon(2e-4).margin(1e-5));
        CHECK(g[3].item<double>() == Approx(cf.alpha).epsilon(2e-4).margin(1e-5));
        // Central differences of Q_S itself (cell index held; the probes are >= 0.02 cells away
        // from edges and clip bounds, far more than h moves them).
        if (xf <= lf || xf >= uf) continue;
        const double h = 1e-6, i = ref.cell(xf);
        auto fd = [&](DsqRef p, DsqRef m, double xp, double xm) { return (p.soft(xp, i) - m.soft(xm, i)) / (2 * h); };
        DsqRef r = ref;
        CHECK(fd(r, r, xf + h, xf - h) == Approx(cf.x).epsilon(1e-6));
        CHECK(fd({lf + h, uf, af, bits}, {lf - h, uf, af, bits}, xf, xf) == Approx(cf.l).epsilon(1e-6).margin(1e-8));
        CHECK(fd({lf, uf + h, af, bits}, {lf, uf - h, af, bits}, xf, xf) == Approx(cf.u).epsilon(1e-6).margin(1e-8));
        CHECK(fd({lf, uf, af + h, bits}, {lf, uf, af - h, bits}, xf, xf) == Approx(cf.alpha).epsilon(1e-6).margin(1e-8));
      }
    }
  }
}

TEST_CASE("dsq: outside the range l..u the gradient goes to the nearer bound only", "[dsq][numeric]") {
  for (float xf : {-3.0f, 2.5f}) {
    auto x = scalar(xf), l = scalar(-1.0), u = scalar(1.0), a = scalar(0.2);
    auto y = dsq_quantize(x, l, u, a, 4);
    CHECK(y.item<float>() == Approx(xf < 0 ? -1.0f : 1.0f).epsilon(1e-6));
    auto g = torch::autograd::grad({y}, {x, l, u, a});
    CHECK(g[0].item<double>() == 0.0);
    CHECK(g[1].item<double>() == Approx(xf < 0 ? 1.0 : 0.0).margin(1e-6));
    CHECK(g[2].item<double>() == Approx(xf < 0 ? 0.0 : 1.0).margin(1e-6));
    CHECK(g[3].item<double>() == Approx(0.0).margin(1e-6));
  }
}

TEST_CASE("dsq: the module initialises l, u, alpha from observations (weights and Auto activations)",
          "[dsq][numeric]") {
  SECTION("weights: symmetric [-max|w|, max|w|], alpha 0.2, all three learnable") {
    DsqQuantizer q(qbench::test::test_scheme(4), DsqQuantizer::Role::Weight);
    q.set_observing(true);
    auto w = at::tensor({-0.3f, 0.1f, 0.8f});
    CHECK(at::equal(q.forward(w), w));  // observing only: identity
    q.compute_qparams();
    CHECK(q.lower().item<float>() == Approx(-0.8f));
    CHECK(q.upper().item<float>() == Approx(0.8f));
    CHECK(q.alpha().item<float>() == Approx(0.2f));
    REQUIRE(q.quant_parameters().size() == 3);
    for (auto& p : q.quant_parameters()) CHECK(p.requires_grad());
    q.set_observing(false);
    q.set_quantizing(true);
    auto wg = w.clone().set_requires_grad(true);
    q.forward(wg).sum().backward();
    for (auto& p : q.quant_parameters()) {
      REQUIRE(p.grad().defined());
      CHECK(std::isfinite(p.grad().item<double>()));
    }
    DsqRef ref{-0.8, 0.8, 0.2, 4};
    CHECK(q.forward(w)[0].item<float>() == Approx(ref.hard(-0.3f)).epsilon(1e-5));
  }
  SECTION("activations after ReLU: unsigned, l = 0, u = max") {
    DsqQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), DsqQuantizer::Role::Activation);
    q.set_observing(true);
    q.forward(at::tensor({0.0f, 0.5f, 2.0f}));
    q.forward(at::tensor({0.25f, 3.0f}));
    q.compute_qparams();
    CHECK_FALSE(q.is_signed());
    CHECK(q.lower().item<float>() == 0.0f);
    CHECK(q.upper().item<float>() == 3.0f);
  }
  SECTION("signed activations (normalised images): l = min, u = max") {
    DsqQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), DsqQuantizer::Role::Activation);
    q.set_observing(true);
    q.forward(at::tensor({-2.1f, 0.5f, 2.6f}));
    q.compute_qparams();
    CHECK(q.is_signed());
    CHECK(q.lower().item<float>() == -2.1f);
    CHECK(q.upper().item<float>() == 2.6f);
  }
  SECTION("alpha is projected back into (0, 0.5] before use") {
    DsqQuantizer q(qbench::test::test_scheme(3), DsqQuantizer::Role::Weight);
    q.set_observing(true);
    q.forward(at::tensor({-1.0f, 1.0f}));
    q.compute_qparams();
    q.set_quantizing(true);
    {
      at::NoGradGuard ng;
      q.alpha().fill_(0.9);
    }
    q.forward(at::tensor({0.3f}));
    CHECK(q.alpha().item<float>() == 0.5f);
  }
}

TEST_CASE("dsq: edge cases", "[dsq][numeric]") {
  auto ready = [](const at::Tensor& x, DsqQuantizer::Role role) {
    return qbench::test::ready(std::make_shared<DsqQuantizer>(qbench::test::test_scheme(4, Signedness::Auto), role), x);
  };
  auto finite_params = [](DsqQuantizer& q) {
    for (auto& p : q.quant_parameters())
      if (!std::isfinite(p.item<double>())) return false;
    return true;
  };
  const DsqQuantizer::Role roles[] = {DsqQuantizer::Role::Weight, DsqQuantizer::Role::Activation};
  SECTION("all-zero tensor: finite parameters, exact zeros") {
    for (auto role : roles) {
      auto z = at::zeros({16});
      auto q = ready(z, role);
      CHECK(finite_params(*q));
      CHECK(q->upper().item<float>() > q->lower().item<float>());
      CHECK(q->forward(z).abs().max().item<float>() == 0.0f);
    }
  }
  SECTION("constant tensor is reproduced") {
    for (auto role : roles) {
      auto c = at::full({9}, 2.5f);
      auto q = ready(c, role);
      CHECK(finite_params(*q));
      CHECK(q->forward(c).sub(c).abs().max().item<float>() < 1e-6f);
    }
  }
  SECTION("single element") {
    for (auto role : roles) {
      auto c = at::tensor({-0.75f});
      auto q = ready(c, role);
      CHECK(finite_params(*q));
      CHECK(q->forward(c).item<float>() == Approx(-0.75f).epsilon(1e-5));
    }
  }
  SECTION("huge and tiny magnitudes stay finite, gradients included") {
    for (auto role : roles) {
      for (float mag : {1e30f, 1e-30f}) {
        INFO("magnitude " << mag);
        auto c = at::tensor({-mag, mag / 3, mag});
        auto q = ready(c, role);
        CHECK(finite_params(*q));
        auto y = qbench::test::forward_backward_finite(*q, c);
        CHECK(y.abs().max().item<float>() <= mag * 1.0001f);
        for (auto& p : q->quant_parameters()) CHECK(std::isfinite(p.grad().item<double>()));
      }
    }
  }
  SECTION("NaN or Inf input is an error at observe time") {
    DsqQuantizer q(qbench::test::test_scheme(4), DsqQuantizer::Role::Weight);
    q.set_observing(true);
    CHECK_THROWS_AS(q.forward(at::tensor({1.0f, std::nanf("")})), qbench::Error);
    CHECK_THROWS_AS(q.forward(at::tensor({std::numeric_limits<float>::infinity()})), qbench::Error);
    CHECK_THROWS_AS(q.compute_qparams(), qbench::Error);  // nothing valid was observed
  }
  SECTION("quantizing before compute_qparams is an error") {
    DsqQuantizer q(qbench::test::test_scheme(4), DsqQuantizer::Role::Activation);
    CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);
    CHECK_FALSE(q.ready());
  }
}

TEST_CASE("dsq: registered as a QAT method", "[dsq][numeric]") {
  const auto [w, a] = qbench::test::registered_qat_method("dsq", "1908.05033");
  CHECK(dynamic_cast<DsqQuantizer*>(w.get()) != nullptr);
  CHECK(dynamic_cast<DsqQuantizer*>(a.get()) != nullptr);
  CHECK_FALSE(w->affine_qparams().has_value());
}
