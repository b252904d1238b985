// PACT (Choi et al. 2018, arXiv:1805.06085) and DoReFa-Net (Zhou et al. 2016, arXiv:1606.06160)
// against plain scalar reference loops, the papers' closed-form (straight-through) gradients and
// central finite differences.
#include <ATen/ATen.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "qbench/qat/pact_dorefa.h"

#include "qat_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;
using namespace qbench::test;  // scheme_util.h: references, floats, the readying protocol

namespace {



// PACT, Eqs. 1-2, as a float loop: y = clip(x, 0, alpha) (signed: clip(x, -alpha, alpha)),
// y_q = round(y n / alpha) alpha / n.
float ref_pact(float x, float alpha, int bits, bool is_signed) {
  const float n = is_signed ? static_cast<float>((1 << (bits - 1)) - 1) : static_cast<float>((1 << bits) - 1);
  const float y = std::min(std::max(x, is_signed ? -alpha : 0.0f), alpha);
  return std::nearbyint(y * (n / alpha)) * (alpha / n);
}

// DoReFa weights, Eq. 9, in double.
std::vector<double> ref_dorefa_weight(const std::vector<float>& w, int bits, std::vector<double>* z_out = nullptr) {
  const double n = std::ldexp(1.0, bits) - 1.0;
  double m = 0;
  for (float v : w) m = std::max(m, std::fabs(std::tanh(static_cast<double>(v))));
  std::vector<double> out(w.size());
  if (z_out) z_out->resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double z = std::tanh(static_cast<double>(w[i])) / (2 * m) + 0.5;
    if (z_out) (*z_out)[i] = z * n;
    out[i] = 2 * std::nearbyint(z * n) / n - 1;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PACT

TEST_CASE("pact: alpha starts at 10, L2 penalty 5e-4, forward is the scalar reference (Eqs. 1-2), bits 2..8",
          "[pact][numeric]") {
  at::manual_seed(31);
  auto x = at::randn({4, 3, 6, 6}) * 4.0;  // negatives (clipped to 0) and values above alpha
  const auto xv = floats(x);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    PactQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto));
    observe_and_init(q, {at::relu(x)});
    CHECK_FALSE(q.is_signed());
    CHECK(q.alpha().item<double>() == 10.0);
    CHECK(q.quant_weight_decay() == 5e-4);
    for (float alpha : {10.0f, 2.5f}) {
      INFO("alpha " << alpha);
      {
        at::NoGradGuard no_grad;
        q.alpha().fill_(alpha);
      }
      at::Tensor y;
      {
        at::NoGradGuard no_grad;
        y = q.forward(x);
      }
      const auto yv = floats(y);
      const double n = std::ldexp(1.0, bits) - 1;
      int64_t bad = 0, skipped = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        if (near_tie(clampd(xv[i], 0, alpha) * n / alpha)) {
          ++skipped;
          continue;
        }
        if (std::fabs(yv[i] - ref_pact(xv[i], alpha, bits, false)) > 1e-6f * alpha) ++bad;
      }
      CHECK(bad == 0);
      CHECK(skipped < 10);
      CHECK(std::get<0>(at::_unique(y)).numel() <= (int64_t(1) << bits));
      CHECK(y.max().item<float>() == alpha);  // alpha itself is a level
      CHECK(y.min().item<float>() == 0.0f);
    }
  }
}

TEST_CASE("pact: gradients are Eq. 3 - d/dalpha = 1 where x >= alpha, STE for x on 0 <= x < alpha", "[pact][numeric]") {
  at::manual_seed(32);
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool is_signed : {false, true}) {
      INFO("bits " << bits << " signed " << is_signed);
      auto x = at::randn({4, 3, 5, 5}) * 2.0;
      PactQuantizer q(qbench::test::test_scheme(bits, is_signed ? Signedness::Signed : Signedness::Unsigned));
      observe_and_init(q, {x});
      REQUIRE(q.is_signed() == is_signed);
      const float alpha = 1.7f;
      {
        at::NoGradGuard no_grad;
        q.alpha().fill_(alpha);
      }
      auto xr = x.clone().set_requires_grad(true);
      auto r = at::randn(x.sizes());
      (q.forward(xr) * r).sum().backward();
      const auto xv = floats(x), rv = floats(r), dx = floats(xr.grad());
      double dalpha = 0;
      int64_t bad = 0, above = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        double expect_dx;
        if (xv[i] >= alpha) {
          dalpha += rv[i];
          expect_dx = 0;
          ++above;
        } else if (is_signed ? xv[i] <= -alpha : xv[i] < 0) {
          if (is_signed) dalpha -= rv[i];
          expect_dx = 0;
        } else {
          expect_dx = rv[i];
        }
        if (dx[i] != static_cast<float>(expect_dx)) ++bad;
      }
      CHECK(bad == 0);
      CHECK(above > 0);
      CHECK(q.alpha().grad().item<double>() == Approx(dalpha).epsilon(1e-5).margin(1e-5));
    }
  }
}

TEST_CASE("pact: the fused CPU kernel over many parallel chunks and a ragged tail is the reference, at any thread count",
          "[pact][numeric]") {
  // 210,003 floats: several parallel chunks and a tail that is no multiple of the 16 lanes.
  at::manual_seed(36);
  auto x = at::randn({3, 70001}) * 2.0;
  auto r = at::randn(x.sizes());
  const float alpha = 1.3f;
  const int threads_before = at::get_num_threads();
  for (bool is_signed : {false, true}) {
    std::vector<double> alpha_grads;
    for (int threads : {1, 2}) {
      INFO("signed " << is_signed << " threads " << threads);
      at::set_num_threads(threads);
      auto xr = x.clone().set_requires_grad(true);
      auto a = at::full({1}, alpha).set_requires_grad(true);
      auto y = pact_fake_quantize(xr, a, 4, is_signed);
      (y * r).sum().backward();
      const auto xv = floats(x), yv = floats(y), dx = floats(xr.grad()), rv = floats(r);
      double dalpha = 0, abs_sum = 0;
      int64_t bad_y = 0, bad_dx = 0, skipped = 0;
      const double n = is_signed ? 7.0 : 15.0;
      for (size_t i = 0; i < xv.size(); ++i) {
        float expect_dx = rv[i];
        if (xv[i] >= alpha) {
          dalpha += rv[i];
          expect_dx = 0;
        } else if (is_signed ? xv[i] <= -alpha : xv[i] < 0) {
          if (is_signed) dalpha -= rv[i];
          expect_dx = 0;
        }
        abs_sum += std::fabs(rv[i]);
        if (dx[i] != expect_dx) ++bad_dx;
        if (near_tie(clampd(xv[i], is_signed ? -alpha : 0.0, alpha) * n / alpha)) {
          ++skipped;
          continue;
        }
        if (std::fabs(yv[i] - ref_pact(xv[i], alpha, 4, is_signed)) > 1e-6f * alpha) ++bad_y;
      }
      CHECK(bad_y == 0);
      CHECK(bad_dx == 0);
      CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
      const double ga = a.grad().item<double>();
      CHECK(std::fabs(ga - dalpha) <= 1e-6 * abs_sum);
      alpha_grads.push_back(ga);
    }
    CHECK(alpha_grads[0] == alpha_grads[1]);
  }
  at::set_num_threads(threads_before);
}

TEST_CASE("pact: gradients equal central finite differences of the clip with the rounding offset held fixed",
          "[pact][numeric]") {
  // Eq. 3 passes the rounding straight through: y_q ~ clip(x, 0, alpha) + c with c = y_q - y
  // frozen. That is smooth away from x = 0 and x = alpha, so central differences must give
  // d/dalpha = 1{x >= alpha} and d/dx = 1{0 <= x < alpha} there.
  const double a0 = 2.5, h = 1e-5;
  for (bool is_signed : {false, true}) {
    for (double x0 : {-3.1, -1.0, 0.3, 1.1, 2.2, 2.6, 4.0}) {
      INFO("x = " << x0 << " signed " << is_signed);
      const double lo = is_signed ? -a0 : 0.0;
      auto f = [&](double x, double a) {
        const double l = is_signed ? -a : 0.0;
        return clampd(x, l, a);  // + c, which cancels in the differences
      };
      REQUIRE(std::fabs(x0 - a0) > 10 * h);
      REQUIRE(std::fabs(x0 - lo) > 10 * h);
      const double fd_a = (f(x0, a0 + h) - f(x0, a0 - h)) / (2 * h);
      const double fd_x = (f(x0 + h, a0) - f(x0 - h, a0)) / (2 * h);
      const double closed_a = x0 >= a0 ? 1.0 : (is_signed && x0 <= -a0 ? -1.0 : 0.0);
      const double closed_x = (x0 > lo && x0 < a0) ? 1.0 : 0.0;
      CHECK(fd_a == Approx(closed_a).margin(1e-6));
      CHECK(fd_x == Approx(closed_x).margin(1e-6));
      for (int bits : {2, 4, 8}) {
        auto x = at::full({1}, x0).set_requires_grad(true);
        auto a = at::full({1}, a0).set_requires_grad(true);
        pact_fake_quantize(x, a, bits, is_signed).sum().backward();
        CHECK(a.grad().item<double>() == Approx(fd_a).margin(1e-6));
        CHECK(x.grad().item<double>() == Approx(fd_x).margin(1e-6));
      }
    }
  }
}

TEST_CASE("pact: at x = alpha exactly Eq. 3 gives d/dalpha = 1 and d/dx = 0 (x in the closed interval from alpha up)",
          "[pact][numeric]") {
  for (bool is_signed : {false, true}) {
    INFO("signed " << is_signed);
    auto x = at::tensor({2.5f, -2.5f, 0.0f}).set_requires_grad(true);
    auto a = at::full({1}, 2.5f).set_requires_grad(true);
    auto r = at::tensor({1.0f, 10.0f, 100.0f});
    (pact_fake_quantize(x, a, 4, is_signed) * r).sum().backward();
    // x = alpha: clipped (gradient to alpha); x = -alpha: clipped when signed (gradient -1 to
    // alpha), below zero (nothing) when unsigned; x = 0: inside [0, alpha), STE.
    CHECK(a.grad().item<float>() == (is_signed ? 1.0f - 10.0f : 1.0f));
    CHECK(x.grad()[0].item<float>() == 0.0f);
    CHECK(x.grad()[1].item<float>() == 0.0f);
    CHECK(x.grad()[2].item<float>() == 100.0f);
  }
}

TEST_CASE("pact: signed inputs (Auto with a negative minimum) use clampd(x, -alpha, alpha) on the narrow grid",
          "[pact][numeric]") {
  at::manual_seed(33);
  auto x = at::randn({2, 3, 8, 8}) * 2.0;
  const auto xv = floats(x);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    PactQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto));
    observe_and_init(q, {x});
    CHECK(q.is_signed());
    {
      at::NoGradGuard no_grad;
      q.alpha().fill_(1.5f);
    }
    at::NoGradGuard no_grad;
    auto y = q.forward(x);
    const auto yv = floats(y);
    const double n = std::ldexp(1.0, bits - 1) - 1;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (near_tie(clampd(xv[i], -1.5, 1.5) * n / 1.5)) continue;
      CHECK(std::fabs(yv[i] - ref_pact(xv[i], 1.5f, bits, true)) <= 1e-6f * 1.5f);
    }
    CHECK(y.max().item<float>() == 1.5f);
    CHECK(y.min().item<float>() == -1.5f);
    auto qp = q.affine_qparams();
    REQUIRE(qp.has_value());
    CHECK(qp->range.qmin == -static_cast<int64_t>(n));
    CHECK(qp->range.qmax == static_cast<int64_t>(n));
    CHECK(qp->scale.item<double>() == Approx(1.5 / n).epsilon(1e-6));
    CHECK(qp->zero_point.item<int>() == 0);
  }
}

TEST_CASE("pact: parameters, options, affine equivalent and registry entries", "[pact][numeric]") {
  PactQuantizer q(qbench::test::test_scheme(4, Signedness::Auto));
  CHECK_FALSE(q.affine_qparams().has_value());
  observe_and_init(q, {at::rand({2, 10})});
  REQUIRE(q.quant_parameters().size() == 1);
  CHECK(q.quant_parameters()[0].is_same(q.alpha()));
  CHECK(q.named_parameters().contains("alpha"));
  auto qp = q.affine_qparams();
  REQUIRE(qp.has_value());
  CHECK(qp->scale.item<double>() == Approx(10.0 / 15.0).epsilon(1e-6));
  CHECK(qp->range.qmin == 0);
  CHECK(qp->range.qmax == 15);
  CHECK(q.describe().find("alpha=10") != std::string::npos);
  // alpha driven through zero is kept positive before use.
  {
    at::NoGradGuard no_grad;
    q.alpha().fill_(-2.0);
  }
  {
    at::NoGradGuard no_grad;
    q.forward(at::rand({2, 10}));
  }
  CHECK(q.alpha().item<double>() == 2.0);

  PactOptions opt;
  opt.alpha_init = 6.0;
  opt.alpha_weight_decay = 1e-4;
  PactQuantizer q6(qbench::test::test_scheme(4, Signedness::Auto), opt);
  observe_and_init(q6, {at::rand({2, 10})});
  CHECK(q6.alpha().item<double>() == 6.0);
  CHECK(q6.quant_weight_decay() == 1e-4);
  opt.alpha_init = 0.0;
  CHECK_THROWS_AS(PactQuantizer(qbench::test::test_scheme(4, Signedness::Auto), opt), qbench::Error);
  QuantScheme pc = qbench::test::test_scheme(4, Signedness::Auto);
  pc.granularity = Granularity::PerChannel;
  CHECK_THROWS_AS(PactQuantizer(pc), qbench::Error);

  const auto [pw, pa] = registered_qat_method("pact", "1805.06085");
  CHECK(dynamic_cast<DorefaWeightQuantizer*>(pw.get()) != nullptr);  // PACT quantizes weights with DoReFa
  REQUIRE(dynamic_cast<PactQuantizer*>(pa.get()) != nullptr);
  CHECK(pa->quant_weight_decay() == 5e-4);
  CHECK(pw->quant_weight_decay() == 0.0);
  const auto [dw, da] = registered_qat_method("dorefa", "1606.06160");
  CHECK(dynamic_cast<DorefaWeightQuantizer*>(dw.get()) != nullptr);
  CHECK(dynamic_cast<DorefaActivationQuantizer*>(da.get()) != nullptr);
}

TEST_CASE("pact: edge cases - zeros, constants, one element, huge and tiny magnitudes, NaN, misuse",
          "[pact][numeric]") {
  auto run = [](const at::Tensor& x) {
    PactQuantizer q(qbench::test::test_scheme(4, Signedness::Auto));
    observe_and_init(q, {x});
    auto y = forward_backward_finite(q, x);
    CHECK(std::isfinite(q.alpha().grad().item<double>()));
    return y;
  };
  SECTION("all-zero tensor gives exact zeros") { CHECK(run(at::zeros({2, 5})).abs().max().item<double>() == 0.0); }
  SECTION("constant tensor and a single element land on the nearest level") {
    auto y = run(at::full({2, 5}, 3.0));
    CHECK(y.eq(static_cast<float>(std::nearbyint(3.0 * 15 / 10) * 10 / 15)).all().item<bool>());
    CHECK(run(at::full({1}, 12.0)).item<double>() == 10.0);  // clipped at alpha
  }
  SECTION("huge magnitudes clip to alpha, tiny ones round to zero") {
    at::manual_seed(34);
    auto y = run(at::rand({3, 7}) * 1e30);
    CHECK(y.max().item<double>() == 10.0);
    CHECK(run(at::rand({3, 7}) * 1e-30).abs().max().item<double>() == 0.0);
    auto ys = run(at::randn({3, 7}) * 1e30);  // signed
    CHECK(ys.abs().max().item<double>() == 10.0);
  }
  SECTION("NaN at observe time, quantizing or computing too early, are errors") {
    PactQuantizer q(qbench::test::test_scheme(4, Signedness::Auto));
    CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(q.compute_qparams(), qbench::Error);
    q.set_observing(true);
    CHECK_THROWS_AS(q.forward(at::tensor({1.0f, NAN})), qbench::Error);
    CHECK_THROWS_AS(PactQuantizer(qbench::test::test_scheme(1, Signedness::Auto)), qbench::Error);
  }
}

// ---------------------------------------------------------------------------------------------
// DoReFa

TEST_CASE("dorefa: weights follow Eq. 9 (levels between -1 and 1), bits 2..8", "[dorefa][numeric]") {
  at::manual_seed(41);
  auto w = at::randn({8, 4, 3, 3}) * 0.1;
  const auto wv = floats(w);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    DorefaWeightQuantizer q(qbench::test::test_scheme(bits, Signedness::Signed));
    observe_and_init(q, {w});
    at::NoGradGuard no_grad;
    auto y = q.forward(w);
    const auto yv = floats(y);
    std::vector<double> zn;
    const auto ref = ref_dorefa_weight(wv, bits, &zn);
    const double n = std::ldexp(1.0, bits) - 1;
    int64_t bad = 0, skipped = 0, off_grid = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      // Every output is one of the 2^b levels (2k - n) / n.
      const double k = (yv[i] * n + n) / 2;
      if (std::fabs(k - std::nearbyint(k)) > 1e-3) ++off_grid;
      if (near_tie(zn[i])) {
        ++skipped;
        continue;
      }
      if (std::fabs(yv[i] - ref[i]) > 1e-6) ++bad;
    }
    CHECK(bad == 0);
    CHECK(off_grid == 0);
    CHECK(skipped < 5);
    CHECK(std::get<0>(at::_unique(y)).numel() <= (int64_t(1) << bits));
    // The weight with the largest |tanh| maps to +-1.
    CHECK(y.abs().max().item<double>() == Approx(1.0).margin(1e-6));
    CHECK(q.quant_parameters().empty());
    CHECK(q.quant_weight_decay() == 0.0);
    CHECK_FALSE(q.affine_qparams().has_value());
  }
}

TEST_CASE("dorefa: weight gradients are the STE through round, exact through tanh and the max", "[dorefa][numeric]") {
  // With the rounding offsets c_i frozen, L(w) = sum_i r_i (2 (tanh(w_i) / (2 m) + 1/2 + c_i) - 1),
  // m = max_j |tanh(w_j)|. Closed form: dL/dw_j = r_j (1 - t_j^2) / m
  //   - [j = argmax] sign(t_j) (1 - t_j^2) sum_i r_i t_i / m^2.
  at::manual_seed(42);
  for (int bits : {2, 3, 4, 8}) {
    INFO("bits " << bits);
    auto w = at::randn({3, 5}, at::kDouble).to(at::kFloat) * 0.8;
    auto r = at::randn({3, 5});
    auto wr = w.clone().set_requires_grad(true);
    (dorefa_weight(wr, bits) * r).sum().backward();
    const auto wv = floats(w), rv = floats(r), g = floats(wr.grad());
    std::vector<double> zn;
    ref_dorefa_weight(wv, bits, &zn);
    const double n = std::ldexp(1.0, bits) - 1;
    std::vector<double> c(wv.size());
    for (size_t i = 0; i < wv.size(); ++i) c[i] = (std::nearbyint(zn[i]) - zn[i]) / n;
    auto loss = [&](const std::vector<double>& ww) {
      double m = 0;
      for (double v : ww) m = std::max(m, std::fabs(std::tanh(v)));
      double l = 0;
      for (size_t i = 0; i < ww.size(); ++i) l += rv[i] * (2 * (std::tanh(ww[i]) / (2 * m) + 0.5 + c[i]) - 1);
      return l;
    };
    size_t am = 0;
    double m = 0, rt = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      const double t = std::tanh(static_cast<double>(wv[i]));
      if (std::fabs(t) > m) m = std::fabs(t), am = i;
      rt += rv[i] * t;
    }
    const double h = 1e-6;
    for (size_t j = 0; j < wv.size(); ++j) {
      std::vector<double> wp(wv.begin(), wv.end()), wm(wv.begin(), wv.end());
      wp[j] += h;
      wm[j] -= h;
      const double fd = (loss(wp) - loss(wm)) / (2 * h);
      const double t = std::tanh(static_cast<double>(wv[j]));
      double closed = rv[j] * (1 - t * t) / m;
      if (j == am) closed -= (t > 0 ? 1.0 : -1.0) * (1 - t * t) * rt / (m * m);
      CHECK(fd == Approx(closed).margin(1e-5));
      CHECK(g[j] == Approx(closed).margin(1e-4));
    }
  }
}

TEST_CASE("dorefa: activations are quantize_k(clampd(a, 0, 1)) (Eq. 11) with the STE inside 0..1",
          "[dorefa][numeric]") {
  at::manual_seed(43);
  auto a = at::randn({4, 3, 6, 6}) * 0.8 + 0.4;  // below 0, inside, above 1
  const auto av = floats(a);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    DorefaActivationQuantizer q(qbench::test::test_scheme(bits, Signedness::Unsigned));
    observe_and_init(q, {a});
    CHECK_FALSE(q.is_signed());
    auto ar = a.clone().set_requires_grad(true);
    auto r = at::randn(a.sizes());
    auto y = q.forward(ar);
    (y * r).sum().backward();
    const auto yv = floats(y), rv = floats(r), dx = floats(ar.grad());
    const double n = std::ldexp(1.0, bits) - 1;
    int64_t bad = 0, bad_grad = 0, skipped = 0;
    for (size_t i = 0; i < av.size(); ++i) {
      const double c = clampd(av[i], 0, 1);
      if (!near_tie(c * n)) {
        if (std::fabs(yv[i] - std::nearbyint(c * n) / n) > 1e-6) ++bad;
      } else {
        ++skipped;
      }
      // STE inside, zero outside; finite differences of the clip agree away from 0 and 1.
      const double expect = (av[i] >= 0 && av[i] <= 1) ? rv[i] : 0.0;
      // (r / n) n in float: equal to r up to an ulp.
      if (std::fabs(dx[i] - expect) > 1e-6 * (1 + std::fabs(rv[i]))) ++bad_grad;
      if (std::fabs(av[i]) > 1e-4 && std::fabs(av[i] - 1) > 1e-4) {
        const double h = 1e-5;
        const double fd = (clampd(av[i] + h, 0, 1) - clampd(av[i] - h, 0, 1)) / (2 * h);
        if (std::fabs(fd * rv[i] - expect) > 1e-6 * (1 + std::fabs(rv[i]))) ++bad_grad;
      }
    }
    CHECK(bad == 0);
    CHECK(bad_grad == 0);
    CHECK(skipped < 10);
    auto qp = q.affine_qparams();
    REQUIRE(qp.has_value());
    CHECK(qp->scale.item<double>() == Approx(1.0 / n).epsilon(1e-6));
    CHECK(qp->range.qmin == 0);
    CHECK(qp->range.qmax == static_cast<int64_t>(n));
  }
  // Auto: non-negative inputs give the paper's unsigned quantizer, negative ones our symmetric
  // extension round(clip(a, -1, 1) n) / n with n = 2^(b-1) - 1.
  DorefaActivationQuantizer qa(qbench::test::test_scheme(4, Signedness::Auto));
  observe_and_init(qa, {at::relu(a)});
  CHECK_FALSE(qa.is_signed());
  DorefaActivationQuantizer qs(qbench::test::test_scheme(4, Signedness::Auto));
  observe_and_init(qs, {a});
  REQUIRE(qs.is_signed());
  at::NoGradGuard no_grad;
  auto ys = qs.forward(a);
  const auto ysv = floats(ys);
  for (size_t i = 0; i < av.size(); ++i) {
    if (near_tie(clampd(av[i], -1, 1) * 7)) continue;
    CHECK(ysv[i] == Approx(std::nearbyint(clampd(av[i], -1, 1) * 7) / 7).margin(1e-6));
  }
  CHECK(qs.affine_qparams()->range.qmin == -7);
}

TEST_CASE("dorefa: edge cases - zeros, constants, one element, huge and tiny magnitudes, NaN, misuse",
          "[dorefa][numeric]") {
  auto run_w = [](const at::Tensor& w, int bits = 4) {
    DorefaWeightQuantizer q(qbench::test::test_scheme(bits, Signedness::Signed));
    observe_and_init(q, {w});
    return forward_backward_finite(q, w, at::randn(w.sizes()));
  };
  SECTION("all-zero weights: tanh/(2 max) is 0, every weight maps to 2 q(1/2) - 1 (no zero level)") {
    auto y = run_w(at::zeros({3, 4}), 2);
    // 2 bits: q(1/2) = round(1.5) / 3 = 2/3 (half to even), so 2 * 2/3 - 1 = 1/3.
    CHECK((y - 1.0 / 3.0).abs().max().item<double>() < 1e-6);
  }
  SECTION("constant weights and a single weight map to +-1") {
    CHECK(run_w(at::full({3, 4}, 0.3)).eq(1.0f).all().item<bool>());
    CHECK(run_w(at::full({3, 4}, -0.3)).eq(-1.0f).all().item<bool>());
    CHECK(run_w(at::full({1}, 0.05)).item<float>() == 1.0f);
  }
  SECTION("huge and tiny magnitudes stay finite") {
    at::manual_seed(44);
    auto yh = run_w(at::randn({3, 4}) * 1e30);
    CHECK(yh.abs().eq(1.0f).all().item<bool>());  // tanh saturates at +-1
    auto yt = run_w(at::randn({3, 4}) * 1e-30);
    CHECK(yt.abs().max().item<float>() == Approx(1.0));
  }
  SECTION("activations: zeros, constants, huge, tiny") {
    for (auto x : {at::zeros({2, 3}), at::full({2, 3}, 0.5), at::full({1}, 7.0), at::rand({2, 3}) * 1e30,
                   at::rand({2, 3}) * 1e-30}) {
      DorefaActivationQuantizer q(qbench::test::test_scheme(4, Signedness::Auto));
      observe_and_init(q, {x});
      auto y = forward_backward_finite(q, x);
      CHECK(y.max().item<float>() <= 1.0f);
      CHECK(y.min().item<float>() >= 0.0f);
    }
  }
  SECTION("NaN at observe time, quantizing or computing too early, bad bit widths are errors") {
    DorefaWeightQuantizer w(qbench::test::test_scheme(4, Signedness::Signed));
    CHECK_THROWS_AS(w.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(w.compute_qparams(), qbench::Error);
    w.set_observing(true);
    CHECK_THROWS_AS(w.forward(at::tensor({0.1f, NAN})), qbench::Error);
    DorefaActivationQuantizer a(qbench::test::test_scheme(4, Signedness::Auto));
    CHECK_THROWS_AS(a.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(a.compute_qparams(), qbench::Error);
    a.set_observing(true);
    CHECK_THROWS_AS(a.forward(at::tensor({0.1f, INFINITY})), qbench::Error);
    CHECK_THROWS_AS(DorefaWeightQuantizer(qbench::test::test_scheme(1, Signedness::Signed)), qbench::Error);
    CHECK_THROWS_AS(DorefaActivationQuantizer(qbench::test::test_scheme(17, Signedness::Auto)), qbench::Error);
  }
}

TEST_CASE("dorefa activations on a calibrated range: r * q(clampd(a / r, 0, 1)) with r = observed max",
          "[dorefa][numeric]") {
  QuantScheme sc;
  sc.bits = 3;
  sc.signedness = Signedness::Auto;
  DorefaActivationQuantizer q(sc, /*calibrated_range=*/true);
  auto calib = at::tensor({0.0f, 1.5f, 3.5f, 2.0f});
  q.set_observing(true);
  q.forward(calib);
  q.set_observing(false);
  q.compute_qparams();
  q.set_quantizing(true);
  CHECK(q.range() == Approx(3.5));
  auto x = at::tensor({-1.0f, 0.2f, 1.0f, 1.74f, 3.0f, 9.0f});
  auto y = q.forward(x);
  const double r = 3.5, n = 7.0;  // 2^3 - 1 levels
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double a = std::min(1.0, std::max(0.0, x[i].item<double>() / r));
    const double expect = r * std::nearbyint(a * n) / n;
    CHECK(y[i].item<float>() == Approx(expect).margin(1e-5));
  }
  auto qp = q.affine_qparams();
  REQUIRE(qp.has_value());
  CHECK(qp->scale.item<float>() == Approx(r / n));
  // The default (paper) mode is unchanged: range 1.
  DorefaActivationQuantizer p(sc);
  p.set_observing(true);
  p.forward(calib);
  p.set_observing(false);
  p.compute_qparams();
  CHECK(p.range() == 1.0);
}

TEST_CASE("dorefa activations: the fused CPU kernel over many parallel chunks is the reference with the STE",
          "[dorefa][numeric]") {
  // 210,003 floats, on the paper's range 1 and on a calibrated range, unsigned and signed.
  at::manual_seed(44);
  auto x = at::randn({3, 70001}) * 2.0 + 0.5;
  auto r = at::randn(x.sizes());
  const auto xv = floats(x), rv = floats(r);
  for (bool calibrated : {false, true}) {
    for (auto sign : {Signedness::Unsigned, Signedness::Signed}) {
      const bool is_signed = sign == Signedness::Signed;
      INFO("calibrated " << calibrated << " signed " << is_signed);
      QuantScheme sc = qbench::test::test_scheme(4, sign);
      DorefaActivationQuantizer q(sc, calibrated);
      observe_and_init(q, {x});
      const double range = q.range();
      REQUIRE(range == Approx(calibrated ? x.abs().max().item<double>() : 1.0));  // r = observed max |x|
      auto xr = x.clone().set_requires_grad(true);
      auto y = q.forward(xr);
      (y * r).sum().backward();
      const auto yv = floats(y), dx = floats(xr.grad());
      const double n = is_signed ? 7.0 : 15.0, lo = is_signed ? -1.0 : 0.0;
      int64_t bad_y = 0, bad_dx = 0, skipped = 0, outside = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        const double a = static_cast<double>(xv[i]) / range;
        const bool inside = a >= lo && a <= 1.0;
        outside += !inside;
        if (dx[i] != (inside ? rv[i] : 0.f)) ++bad_dx;
        const double c = clampd(a, lo, 1.0);
        if (near_tie(c * n)) {
          ++skipped;
          continue;
        }
        if (std::fabs(yv[i] - range * std::nearbyint(c * n) / n) > 1e-6 * range) ++bad_y;
      }
      CHECK(bad_y == 0);
      CHECK(bad_dx == 0);
      CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
      if (!calibrated) CHECK(outside > 0);
    }
  }
}
