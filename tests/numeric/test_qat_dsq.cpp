// DSQ (Gong et al. 2019, arXiv:1908.05033) against a scalar reference written from the paper:
// the hard forward value, the soft curve's closed-form gradients, and central finite
// differences of the soft curve Q_S.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
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

// ---------------------------------------------------------------------------------------------
// The fused float32 CPU path (DsqQuantizer::forward -> src/kernels/dsq.cpp) against the composed
// form dsq_quantize, its reference: the same value, and the gradients autograd derives from the
// composed form, LibTorch's tie rules included (maximum/minimum halve the gradient between x and
// the bound where x == l or x == u; clamp_min passes where u - l >= its floor).

namespace {

// A readied quantizer with l, u, alpha set.
std::shared_ptr<DsqQuantizer> dsq_module(int bits, float l, float u, float a) {
  auto q = qbench::test::ready(std::make_shared<DsqQuantizer>(qbench::test::test_scheme(bits), DsqQuantizer::Role::Weight),
                               at::tensor({l, u}));
  at::NoGradGuard ng;
  q->lower().fill_(l);
  q->upper().fill_(u);
  q->alpha().fill_(a);
  return q;
}

struct DsqResult {
  at::Tensor y, gx;
  double l = 0, u = 0, alpha = 0;
  std::string node;  // the output's autograd node
};

// y = q(x) and the gradients of sum(y * r).
DsqResult fused_run(DsqQuantizer& q, const at::Tensor& x, const at::Tensor& r) {
  for (auto& p : q.quant_parameters()) p.mutable_grad() = at::Tensor();
  auto xg = x.clone().set_requires_grad(true);
  auto y = q.forward(xg);
  const std::string node = y.grad_fn() ? y.grad_fn()->name() : "";
  (y * r).sum().backward();
  return {y.detach(), xg.grad(), q.lower().grad().item<double>(), q.upper().grad().item<double>(),
          q.alpha().grad().item<double>(), node};
}

DsqResult composed_run(int bits, float l, float u, float a, const at::Tensor& x, const at::Tensor& r) {
  auto lt = scalar(l), ut = scalar(u), at_ = scalar(a);
  auto xg = x.clone().set_requires_grad(true);
  auto y = dsq_quantize(xg, lt, ut, at_, bits);
  const std::string node = y.grad_fn() ? y.grad_fn()->name() : "";
  (y * r).sum().backward();
  return {y.detach(), xg.grad(), lt.grad().item<double>(), ut.grad().item<double>(), at_.grad().item<double>(), node};
}

struct DsqCase {
  const char* name;
  float l, u;
  bool relu;  // inputs relu(N(0, s)): many exact zeros, on l = 0
};

// The ranges: signed and ReLU-like, with a dyadic cell width (so that l + k*Delta and
// l + (k + 1/2)*Delta are exact cell boundaries and centres) and without.
std::vector<DsqCase> dsq_cases(int bits) {
  const float d = std::ldexp(4.0f, -bits), n = static_cast<float>((1 << bits) - 1);
  return {{"signed", -0.7f, 1.3f, false},
          {"signed dyadic", -2.0f, -2.0f + n * d, false},
          {"relu", 0.0f, 2.3f, true},
          {"relu dyadic", 0.0f, n * d, true}};
}

// Random inputs for the range plus the exact points: l, u, every cell boundary and centre, and
// points beyond both ends.
at::Tensor dsq_inputs(const DsqCase& c, int bits, unsigned seed) {
  at::manual_seed(seed);
  const float span = c.u - c.l;
  auto body = c.relu ? at::relu(at::randn({3000}) * (0.6 * span)) : at::rand({3000}) * (span + 1.0) + (c.l - 0.5);
  const int n = (1 << bits) - 1;
  const float delta = span / static_cast<float>(n);
  std::vector<float> exact = {c.l, c.l, c.u, c.u, c.l - 0.25f, c.u + 0.25f, c.u * 4.0f + 1.0f};
  for (int k = 0; k <= n; ++k) {
    exact.push_back(c.l + static_cast<float>(k) * delta);
    if (k < n) exact.push_back(c.l + (static_cast<float>(k) + 0.5f) * delta);
  }
  return at::cat({body, at::tensor(exact)}).index({at::randperm(body.numel() + static_cast<int64_t>(exact.size()))});
}

}  // namespace

TEST_CASE("dsq fused: the forward value equals the composed form's", "[dsq][numeric]") {
  for (int bits : {2, 3, 4, 8}) {
    for (const auto& c : dsq_cases(bits)) {
      for (float a : {0.05f, 0.2f, 0.5f}) {
        INFO("bits " << bits << " " << c.name << " alpha " << a);
        auto q = dsq_module(bits, c.l, c.u, a);
        auto x = dsq_inputs(c, bits, 100 + bits);
        auto yf = q->forward(x);
        auto yc = dsq_quantize(x, scalar(c.l, false), scalar(c.u, false), scalar(a, false), bits);
        // The composed value is (q_hard - q_soft) + q_soft: q_hard up to a rounding at the range's
        // scale, at most one ulp of max(|l|, |u|). Cell centres (soft = i + 1/2 exactly) round half to
        // even in both.
        const double tol = std::numeric_limits<float>::epsilon() * std::max(std::fabs(c.l), std::fabs(c.u));
        CHECK((yf - yc).abs().max().item<double>() <= tol);
        CHECK(std::get<0>(at::_unique(yf)).numel() <= (int64_t(1) << bits));
        CHECK(yf.min().item<float>() >= c.l - tol);
        CHECK(yf.max().item<float>() <= c.u + tol);
      }
    }
  }
}

TEST_CASE("dsq fused: gradients of x, l, u, alpha equal the composed form's autograd, ties on l and u included",
          "[dsq][numeric]") {
  for (int bits : {2, 3, 4, 8}) {
    for (const auto& c : dsq_cases(bits)) {
      for (float a : {0.05f, 0.2f, 0.5f}) {
        INFO("bits " << bits << " " << c.name << " alpha " << a);
        auto q = dsq_module(bits, c.l, c.u, a);
        auto x = dsq_inputs(c, bits, 200 + bits);
        auto r = at::rand(x.sizes()) + 0.5;  // dy > 0: the sums do not cancel
        const auto f = fused_run(*q, x, r);
        const auto ref = composed_run(bits, c.l, c.u, a, x, r);
        CHECK(f.node.find("DsqFn") != std::string::npos);
        CHECK(ref.node.find("DsqFn") == std::string::npos);
        // Ties exist: x == l and x == u both occur, and there x's gradient is half (nonzero).
        auto on_l = x == c.l, on_u = x == c.u;
        REQUIRE(on_l.any().item<bool>());
        REQUIRE(on_u.any().item<bool>());
        CHECK(at::equal(f.gx == 0, ref.gx == 0));  // the same zero pattern: x strictly outside [l, u]
        CHECK(at::equal(f.gx == 0, (x < c.l).logical_or(x > c.u)));
        CHECK(((f.gx - ref.gx).abs() <= ref.gx.abs() * 1e-5).all().item<bool>());
        CHECK(f.l == Approx(ref.l).epsilon(1e-5));
        CHECK(f.u == Approx(ref.u).epsilon(1e-5));
        // d/dalpha sums terms of both signs (tanh is odd about each cell centre) and cancels by
        // 2-5 orders of magnitude, so its float (composed) sum carries an error relative to the
        // terms' size, not to the result's: allow 1e-5 of the result plus 2e-7 of a bound on the
        // terms' absolute sum, delta/2 * (ds/dalpha + s |dkd/dalpha| / 2) * sum |dy|.
        const double delta = (static_cast<double>(c.u) - c.l) / ((1 << bits) - 1), ad = a;
        const double terms = r.sum().item<double>() * delta * 0.5 *
                             (1.0 / ((1.0 - ad) * (1.0 - ad)) + 0.5 / (1.0 - ad) * 2.0 / (ad * (2.0 - ad)));
        CHECK(std::fabs(f.alpha - ref.alpha) <= 1e-5 * std::fabs(ref.alpha) + 2e-7 * terms);
      }
    }
  }
}

TEST_CASE("dsq fused: the tie rules at x == l and x == u, one element at a time", "[dsq][numeric]") {
  // l = -1, u = 2, 2 bits: Delta = 1, cells [-1, 0), [0, 1), [1, 2].
  const float l = -1.0f, u = 2.0f, a = 0.2f;
  auto q = dsq_module(2, l, u, a);
  for (float xv : {-1.0f, 2.0f, -3.0f, 5.0f, 0.0f, 0.5f, 1.0f}) {
    INFO("x " << xv);
    auto x = at::full({1}, xv), r = at::ones({1});
    const auto f = fused_run(*q, x, r);
    const auto ref = composed_run(2, l, u, a, x, r);
    CHECK(f.y.item<float>() == Approx(ref.y.item<float>()).margin(1e-6));
    CHECK(f.gx.item<float>() == Approx(ref.gx.item<float>()).epsilon(1e-6));
    CHECK(f.l == Approx(ref.l).epsilon(1e-6).margin(1e-7));
    CHECK(f.u == Approx(ref.u).epsilon(1e-6).margin(1e-7));
    CHECK(f.alpha == Approx(ref.alpha).epsilon(1e-6).margin(1e-7));
  }
  // At x == l, d/dx is half of the value just inside (the soft curve's slope at t = 0).
  const float dx_on_l = fused_run(*q, at::full({1}, l), at::ones({1})).gx.item<float>();
  const float dx_inside = fused_run(*q, at::full({1}, std::nextafter(l, u)), at::ones({1})).gx.item<float>();
  CHECK(dx_on_l == Approx(0.5 * dx_inside).epsilon(1e-5));
}

TEST_CASE("dsq fused: other dtypes take the composed form", "[dsq][numeric]") {
  auto q = dsq_module(4, -0.5f, 1.0f, 0.2f);
  at::manual_seed(5);
  auto x = at::randn({64}, at::kDouble).set_requires_grad(true);
  auto y = q->forward(x);
  CHECK(y.scalar_type() == at::kDouble);
  CHECK(y.grad_fn()->name().find("DsqFn") == std::string::npos);
  CHECK(q->forward(x.detach().to(at::kFloat)).grad_fn() != nullptr);
}

TEST_CASE("dsq fused: gradients are bit-identical at 1 and 2 threads", "[dsq][numeric]") {
  // 210,003 floats: several kFusedGrain chunks and a tail that is no multiple of the 8 lanes.
  const int threads_before = at::get_num_threads();
  for (bool relu : {false, true}) {
    at::manual_seed(41);
    auto x = relu ? at::relu(at::randn({3, 70001})) : at::randn({3, 70001});
    auto r = at::randn(x.sizes());
    auto q = dsq_module(4, relu ? 0.0f : -2.0f, 2.5f, 0.2f);
    std::vector<DsqResult> runs;
    for (int threads : {1, 2}) {
      at::set_num_threads(threads);
      runs.push_back(fused_run(*q, x, r));
    }
    INFO("relu " << relu);
    CHECK(at::equal(runs[0].y, runs[1].y));
    CHECK(at::equal(runs[0].gx, runs[1].gx));
    CHECK(runs[0].l == runs[1].l);
    CHECK(runs[0].u == runs[1].u);
    CHECK(runs[0].alpha == runs[1].alpha);
  }
  at::set_num_threads(threads_before);
}
