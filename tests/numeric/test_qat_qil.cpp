// QIL (Jung et al. 2019, arXiv:1808.05779): transformer + discretiser against a scalar loop
// written from the paper (alpha = 0.5/d, beta = -0.5 c/d + 0.5), gradients against the closed
// form and against finite differences of the transformer with the rounding held fixed.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "qbench/qat/qil.h"

#include "qat_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;

namespace {

// The paper's transformers in double. `sym`: T_W (on |x|, sign restored); otherwise T_X.
struct QilRef {
  double c, d, gamma;
  bool sym;
  double alpha() const { return 0.5 / d; }
  double beta() const { return -0.5 * c / d + 0.5; }
  double T(double x) const {
    const double mag = sym ? std::fabs(x) : x, sg = sym ? (x < 0 ? -1.0 : (x > 0 ? 1.0 : 0.0)) : 1.0;
    if (mag < c - d) return 0.0;   // pruned
    if (mag > c + d) return sg;    // clipped
    return sg * std::pow(alpha() * mag + beta(), gamma);
  }
  // Closed-form gradients of T inside the interval (zero outside).
  struct Grad {
    double x, c, d, gamma;
  };
  Grad grad(double x) const {
    const double mag = sym ? std::fabs(x) : x, sg = sym ? (x < 0 ? -1.0 : 1.0) : 1.0;
    if (mag <= c - d || mag >= c + d) return {0, 0, 0, 0};
    const double v = alpha() * mag + beta();
    const double dv = gamma * std::pow(v, gamma - 1.0);  // d v^gamma / d v
    return {dv * alpha(),                                  // d/dx: sign(x) * sign(x) * alpha
            sg * dv * (-0.5 / d),                          // d beta / dc = -0.5/d
            sg * dv * 0.5 * (c - mag) / (d * d),           // d(alpha|x| + beta)/dd = (c - |x|)/(2 d^2)
            sg * std::pow(v, gamma) * std::log(v)};        // d v^gamma / d gamma
  }
};

double discretize(double t, double q) { return std::nearbyint(t * q) / q; }

std::vector<double> as_vector(const at::Tensor& t) {
  auto c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor scalar(double v, bool grad = true) { return at::full({}, v, at::kFloat).set_requires_grad(grad); }

std::shared_ptr<QilQuantizer> ready(const at::Tensor& x, QilQuantizer::Role role, int bits,
                                    Signedness sg = Signedness::Auto, bool rescale = true) {
  return qbench::test::ready(std::make_shared<QilQuantizer>(qbench::test::test_scheme(bits, sg), role, rescale), x);
}

void set_params(QilQuantizer& q, double c, double d, double gamma = 1.0) {
  at::NoGradGuard ng;
  q.center().fill_(c);
  q.distance().fill_(d);
  if (q.gamma().defined()) q.gamma().fill_(gamma);
}

}  // namespace

TEST_CASE("qil: initialisation c = d = max|x|/2, gamma = 1, signedness from the data", "[qil][numeric]") {
  auto w = at::tensor({-0.9f, 0.2f, 0.5f});
  auto qw = ready(w, QilQuantizer::Role::Weight, 4);
  CHECK(qw->center().item<float>() == Approx(0.45f));
  CHECK(qw->distance().item<float>() == Approx(0.45f));
  CHECK(qw->gamma().item<float>() == 1.0f);
  CHECK(qw->is_signed());
  CHECK(qw->levels_q() == 7);  // 2^(b-1) - 1
  REQUIRE(qw->quant_parameters().size() == 3);
  auto qa = ready(at::tensor({0.0f, 1.0f, 3.0f}), QilQuantizer::Role::Activation, 4);
  CHECK_FALSE(qa->is_signed());
  CHECK(qa->levels_q() == 15);  // 2^b - 1
  CHECK(qa->center().item<float>() == Approx(1.5f));
  REQUIRE(qa->quant_parameters().size() == 2);  // no gamma for activations
  // At initialisation with rescale, QIL is uniform quantization of [0, max|x|].
  auto x = at::linspace(0.001, 2.991, 300);  // step 0.01, offset so that no point is a rounding tie
  auto y = as_vector(qa->forward(x));
  auto xv = as_vector(x);
  for (size_t k = 0; k < xv.size(); ++k) CHECK(y[k] == Approx(3.0 * discretize(xv[k] / 3.0, 15)).margin(1e-5));
}

TEST_CASE("qil: forward matches the paper's transformer and discretiser (scalar loop)", "[qil][numeric]") {
  at::manual_seed(21);
  struct Case {
    QilQuantizer::Role role;
    bool signed_input, rescale;
    double c, d, gamma;
  };
  const Case cases[] = {{QilQuantizer::Role::Weight, true, true, 0.6, 0.4, 1.0},
                        {QilQuantizer::Role::Weight, true, true, 0.7, 0.3, 0.6},  // pruning below 0.4
                        {QilQuantizer::Role::Weight, true, false, 0.5, 0.35, 1.4},
                        {QilQuantizer::Role::Activation, false, true, 0.9, 0.7, 1.0},
                        {QilQuantizer::Role::Activation, false, false, 1.1, 0.8, 1.0},
                        {QilQuantizer::Role::Activation, true, true, 0.8, 0.6, 1.0}};
  for (const auto& cs : cases) {
    for (int bits : {2, 3, 4, 8}) {
      auto x = cs.signed_input ? at::randn({500}) * 0.8 : at::relu(at::randn({500}) * 0.8);
      auto q = ready(x, cs.role, bits, Signedness::Auto, cs.rescale);
      set_params(*q, cs.c, cs.d, cs.gamma);
      auto y = as_vector(q->forward(x));
      const bool sym = cs.role == QilQuantizer::Role::Weight || cs.signed_input;
      const float cf = static_cast<float>(cs.c), df = static_cast<float>(cs.d), gf = static_cast<float>(cs.gamma);
      QilRef ref{cf, df, gf, sym};
      const double qd = sym ? std::ldexp(1.0, bits - 1) - 1.0 : std::ldexp(1.0, bits) - 1.0;
      const double scale = cs.rescale ? double(cf) + double(df) : 1.0;
      auto xv = as_vector(x);
      int64_t bad = 0, checked = 0;
      for (size_t k = 0; k < xv.size(); ++k) {
        const double t = ref.T(xv[k]);
        const double r = std::fabs(t) * qd;
        if (std::fabs(r - std::floor(r) - 0.5) < 1e-4) continue;  // a rounding tie
        ++checked;
        const double expect = discretize(t, qd) * scale;
        if (std::fabs(y[k] - expect) > 1e-5 * std::max(1.0, std::fabs(expect))) ++bad;
      }
      INFO("role " << (cs.role == QilQuantizer::Role::Weight ? "w" : "a") << " c " << cs.c << " d " << cs.d
                   << " gamma " << cs.gamma << " bits " << bits << " rescale " << cs.rescale);
      CHECK(checked > 450);
      CHECK(bad == 0);
      if (!cs.rescale) CHECK(std::get<0>(at::_unique(at::tensor(y))).numel() <= int64_t(qd) * (sym ? 2 : 1) + 1);
    }
  }
}

TEST_CASE("qil: gradients of x, c, d, gamma match the closed form and finite differences of T", "[qil][numeric]") {
  struct Case {
    bool weight;
    double c, d, gamma;
  };
  for (const Case& cs : {Case{true, 0.7, 0.3, 0.6}, Case{true, 0.5, 0.45, 1.0}, Case{true, 0.6, 0.4, 1.7},
                         Case{false, 0.9, 0.7, 1.0}}) {
    const float cf = static_cast<float>(cs.c), df = static_cast<float>(cs.d), gf = static_cast<float>(cs.gamma);
    QilRef ref{cf, df, gf, cs.weight};
    const double K = double(cf) + double(df);  // the detached rescale factor c + d
    at::manual_seed(23);
    auto cand = as_vector(cs.weight ? at::randn({200}) * 0.8 : at::rand({200}) * 2.0);
    int tested = 0;
    for (double xc : cand) {
      const float xf = static_cast<float>(xc);
      const double mag = cs.weight ? std::fabs(double(xf)) : double(xf);
      const double h = 1e-6;
      if (std::fabs(mag - (cf - df)) < 1e-3 || std::fabs(mag - (cf + df)) < 1e-3) continue;  // near a boundary
      ++tested;
      auto x = scalar(xf), c = scalar(cf), d = scalar(df), g = scalar(gf);
      auto y = cs.weight ? qil_transform_weight(x, c, d, g) : qil_transform_activation(x, c, d);
      const int64_t qd = cs.weight ? 7 : 15;
      y = qil_discretize(y, qd) * K;
      std::vector<at::Tensor> inputs{x, c, d};
      if (cs.weight) inputs.push_back(g);
      auto gr = torch::autograd::grad({y}, inputs, {}, false, false, /*allow_unused=*/true);
      const auto cfm = ref.grad(xf);
      INFO("weight " << cs.weight << " gamma " << cs.gamma << " x " << xf);
      CHECK(gr[0].item<double>() == Approx(K * cfm.x).epsilon(1e-4).margin(1e-6));
      CHECK(gr[1].item<double>() == Approx(K * cfm.c).epsilon(1e-4).margin(1e-6));
      CHECK(gr[2].item<double>() == Approx(K * cfm.d).epsilon(1e-4).margin(1e-6));
      if (cs.weight) CHECK(gr[3].item<double>() == Approx(K * cfm.gamma).epsilon(1e-4).margin(1e-6));
      // Surrogate: K * T (the rounding held fixed, so the STE gradient is T's), central FD.
      auto fd = [&](QilRef p, QilRef m, double xp, double xm) { return K * (p.T(xp) - m.T(xm)) / (2 * h); };
      const double X = xf;
      CHECK(fd(ref, ref, X + h, X - h) == Approx(K * cfm.x).epsilon(1e-5).margin(1e-7));
      CHECK(fd({cf + h, df, gf, cs.weight}, {cf - h, df, gf, cs.weight}, X, X) ==
            Approx(K * cfm.c).epsilon(1e-5).margin(1e-7));
      CHECK(fd({cf, df + h, gf, cs.weight}, {cf, df - h, gf, cs.weight}, X, X) ==
            Approx(K * cfm.d).epsilon(1e-5).margin(1e-7));
      if (cs.weight)
        CHECK(fd({cf, df, gf + h, true}, {cf, df, gf - h, true}, X, X) ==
              Approx(K * cfm.gamma).epsilon(1e-5).margin(1e-7));
    }
    CHECK(tested > 150);
  }
}

TEST_CASE("qil: the module's gradients: pruned and clipped points give zeros, not NaN", "[qil][numeric]") {
  // gamma < 1 makes d(v^gamma)/dv infinite at v = 0: the pruned points must still get 0.
  auto w = at::tensor({-1.5f, -0.6f, -0.2f, 0.0f, 0.1f, 0.3f, 0.55f, 0.85f, 2.0f}).set_requires_grad(true);
  auto q = ready(w.detach(), QilQuantizer::Role::Weight, 4);
  set_params(*q, 0.6, 0.3, 0.6);  // pruned |w| < 0.3, clipped |w| > 0.9
  auto y = q->forward(w);
  y.sum().backward();
  const QilRef ref{0.6f, 0.3f, 0.6f, true};
  const double K = double(0.6f) + double(0.3f);
  auto gw = as_vector(w.grad()), wv = as_vector(w.detach()), yv = as_vector(y.detach());
  double gc = 0, gd = 0, gg = 0;
  for (size_t k = 0; k < wv.size(); ++k) {
    const auto g = ref.grad(wv[k]);
    CHECK(gw[k] == Approx(K * g.x).epsilon(1e-4).margin(1e-6));
    gc += K * g.c;
    gd += K * g.d;
    gg += K * g.gamma;
    if (std::fabs(wv[k]) < 0.3) CHECK(yv[k] == 0.0);                                   // pruned
    if (std::fabs(wv[k]) > 0.9) CHECK(std::fabs(yv[k]) == Approx(K).epsilon(1e-6));  // clipped
  }
  // The interval parameters' gradients carry LSQ's scale g = 1 / sqrt(N * Qp) (docs/algorithms.md:
  // "gradient scale as lsq"): N = 9 weights, Qp = 2^(4-1) - 1 = 7 levels.
  const double gscale = 1.0 / std::sqrt(9.0 * 7.0);
  CHECK(q->center().grad().item<double>() == Approx(gscale * gc).epsilon(1e-4).margin(1e-6));
  CHECK(q->distance().grad().item<double>() == Approx(gscale * gd).epsilon(1e-4).margin(1e-6));
  CHECK(q->gamma().grad().item<double>() == Approx(gscale * gg).epsilon(1e-4).margin(1e-6));
  CHECK(at::isfinite(w.grad()).all().item<bool>());
}

TEST_CASE("qil: edge cases", "[qil][numeric]") {
  const QilQuantizer::Role roles[] = {QilQuantizer::Role::Weight, QilQuantizer::Role::Activation};
  auto finite_params = [](QilQuantizer& q) {
    for (auto& p : q.quant_parameters())
      if (!std::isfinite(p.item<double>())) return false;
    return true;
  };
  SECTION("all-zero tensor: finite parameters, exact zeros") {
    for (auto role : roles) {
      auto z = at::zeros({10});
      auto q = ready(z, role, 4);
      CHECK(finite_params(*q));
      CHECK(q->distance().item<float>() > 0.0f);
      CHECK(q->forward(z).abs().max().item<float>() == 0.0f);
    }
  }
  SECTION("constant tensor is reproduced") {
    for (auto role : roles) {
      auto c = at::full({5}, 2.5f);
      auto q = ready(c, role, 4);
      CHECK(finite_params(*q));
      CHECK(q->forward(c).sub(c).abs().max().item<float>() < 1e-6f);
    }
  }
  SECTION("single element") {
    for (auto role : roles) {
      auto c = at::tensor({-0.75f});
      auto q = ready(c, role, 4);
      CHECK(q->is_signed());
      CHECK(q->forward(c).item<float>() == Approx(-0.75f).epsilon(1e-6));
    }
  }
  SECTION("huge and tiny magnitudes stay finite, gradients included") {
    for (auto role : roles) {
      for (float mag : {1e30f, 1e-30f}) {
        INFO("magnitude " << mag);
        auto c = at::tensor({-mag, mag / 3, mag, mag / 7});
        auto q = ready(c, role, 4);
        CHECK(finite_params(*q));
        auto y = qbench::test::forward_backward_finite(*q, c);
        CHECK(y.abs().max().item<float>() == Approx(mag).epsilon(1e-5));
        for (auto& p : q->quant_parameters()) CHECK(std::isfinite(p.grad().item<double>()));
      }
    }
  }
  SECTION("NaN or Inf input is an error at observe time") {
    QilQuantizer q(qbench::test::test_scheme(4), QilQuantizer::Role::Weight);
    q.set_observing(true);
    CHECK_THROWS_AS(q.forward(at::tensor({std::nanf(""), 1.0f})), qbench::Error);
    CHECK_THROWS_AS(q.forward(at::tensor({-std::numeric_limits<float>::infinity()})), qbench::Error);
    CHECK_THROWS_AS(q.compute_qparams(), qbench::Error);
  }
  SECTION("quantizing before compute_qparams is an error") {
    QilQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QilQuantizer::Role::Activation);
    CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);
  }
}

TEST_CASE("qil: registered as a QAT method", "[qil][numeric]") {
  const auto [w, a] = qbench::test::registered_qat_method("qil", "1808.05779");
  REQUIRE(dynamic_cast<QilQuantizer*>(w.get()) != nullptr);
  CHECK(dynamic_cast<QilQuantizer*>(w.get())->role() == QilQuantizer::Role::Weight);
  CHECK(dynamic_cast<QilQuantizer*>(a.get())->role() == QilQuantizer::Role::Activation);
  CHECK_FALSE(w->affine_qparams().has_value());
}

TEST_CASE("qil: the fused CPU activation kernel over many parallel chunks is the closed form, at any thread count",
          "[qil][numeric]") {
  // 210,003 non-negative floats (several parallel chunks, a ragged tail), unsigned 4-bit QIL
  // with rescaling: pruned below c - d = 0.4, clipped above c + d = 1.6.
  at::manual_seed(29);
  auto x = at::relu(at::randn({3, 70001}) * 1.2);
  auto r = at::randn(x.sizes());
  auto q = ready(x, QilQuantizer::Role::Activation, 4);
  REQUIRE_FALSE(q->is_signed());
  set_params(*q, 1.0, 0.6);
  const QilRef ref{1.0f, 0.6f, 1.0f, false};
  const double K = double(1.0f) + double(0.6f);
  const double g = 1.0 / std::sqrt(70001.0 * 15.0);  // LSQ's scale: N per sample, Qp = 15
  const auto xv = as_vector(x), rv = as_vector(r);
  double gc = 0, gd = 0, abs_sum = 0;
  for (size_t k = 0; k < xv.size(); ++k) {
    const auto cf = ref.grad(xv[k]);
    gc += rv[k] * K * cf.c;
    gd += rv[k] * K * cf.d;
    abs_sum += std::fabs(rv[k]) * K * (std::fabs(cf.c) + std::fabs(cf.d));
  }
  const int threads_before = at::get_num_threads();
  std::vector<std::pair<double, double>> grads;
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    at::set_num_threads(threads);
    q->center().mutable_grad() = at::Tensor();
    q->distance().mutable_grad() = at::Tensor();
    auto xg = x.clone().set_requires_grad(true);
    auto y = q->forward(xg);
    (y * r).sum().backward();
    const auto yv = as_vector(y.detach()), gx = as_vector(xg.grad());
    int64_t bad_y = 0, bad_dx = 0, skipped = 0, inside = 0;
    for (size_t k = 0; k < xv.size(); ++k) {
      const double t = ref.T(xv[k]);
      const auto cf = ref.grad(xv[k]);
      inside += cf.x != 0.0;
      if (std::fabs(gx[k] - rv[k] * K * cf.x) > 1e-5 * (1 + std::fabs(rv[k] * K * cf.x))) ++bad_dx;
      if (std::fabs(t * 15 - std::floor(t * 15) - 0.5) < 1e-4) {
        ++skipped;
        continue;
      }
      if (std::fabs(yv[k] - K * discretize(t, 15)) > 1e-6 * K) ++bad_y;
    }
    CHECK(bad_y == 0);
    CHECK(bad_dx == 0);
    CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
    CHECK(inside > static_cast<int64_t>(xv.size()) / 4);
    const double dc = q->center().grad().item<double>(), dd = q->distance().grad().item<double>();
    CHECK(std::fabs(dc - g * gc) <= 1e-5 * g * abs_sum);
    CHECK(std::fabs(dd - g * gd) <= 1e-5 * g * abs_sum);
    grads.emplace_back(dc, dd);
  }
  at::set_num_threads(threads_before);
  CHECK(grads[0] == grads[1]);
}
