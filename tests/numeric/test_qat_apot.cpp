// APoT (Li, Dong & Wang 2020, arXiv:1909.13144): level sets against the paper's formula and the
// authors' code, forward against a scalar loop, RCF gradients against the closed form and
// against finite differences with the projection (or rounding) held fixed.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/qat/method.h"
#include "qbench/qat/apot.h"

#include "qat_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;

namespace {

// The paper's APoT set Q^a(alpha, kn) = gamma * { sum_{i<n} p_i }, p_i in {0, 2^-i, 2^-(i+n),
// ..., 2^-(i+(2^k-2)n)}, normalised to a maximum of 1.
std::vector<double> paper_apot_set(int k, int n) {
  std::set<double> sums{0.0};
  for (int i = 0; i < n; ++i) {
    std::vector<double> terms{0.0};
    for (int j = 0; j <= (1 << k) - 2; ++j) terms.push_back(std::ldexp(1.0, -(i + j * n)));
    std::set<double> next;
    for (double s : sums)
      for (double t : terms) next.insert(s + t);
    sums = next;
  }
  std::vector<double> out(sums.begin(), sums.end());
  for (auto& v : out) v /= out.back();
  return out;
}

// Magnitude levels written out by hand from the authors' build_power_value(B = b - 1):
//   b = 2: uniform ternary; b = 3: {0, 2^-3, 2^-2, 2^-1} / 2^-1; b = 4: a + b with
//   a in {0, 1/2, 1/4, 1/16}, b in {0, 1/8}, divided by 5/8.
std::vector<double> literal_levels(int bits) {
  switch (bits) {
    case 2: return {0.0, 1.0};
    case 3: return {0.0, 0.25, 0.5, 1.0};
    case 4: return {0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0};
    default: return paper_apot_set(2, (bits - 1) / 2);  // b = 5: k=2,n=2; b = 7: k=2,n=3
  }
}

// Nearest magnitude level by a linear scan; sets `tie_gap` to the distance from the decision
// boundary (so the caller can skip near-ties, where float and double may disagree).
double nearest(double a, const std::vector<double>& lv, double* tie_gap) {
  double best = lv[0], bd = std::fabs(a - lv[0]), second = std::numeric_limits<double>::infinity();
  for (size_t i = 1; i < lv.size(); ++i) {
    const double d = std::fabs(a - lv[i]);
    if (d < bd) {
      second = bd;
      bd = d;
      best = lv[i];
    } else if (d < second) {
      second = d;
    }
  }
  if (tie_gap) *tie_gap = second - bd;
  return best;
}

std::vector<double> as_vector(const at::Tensor& t) {
  auto c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor scalar(double v, bool grad = true) { return at::full({}, v, at::kFloat).set_requires_grad(grad); }

std::shared_ptr<ApotWeightQuantizer> ready_weight(const at::Tensor& w, int bits, bool restore = true) {
  return qbench::test::ready(std::make_shared<ApotWeightQuantizer>(qbench::test::test_scheme(bits), 3.0, restore), w);
}

std::shared_ptr<ApotActivationQuantizer> ready_act(const at::Tensor& x, int bits) {
  return qbench::test::ready(std::make_shared<ApotActivationQuantizer>(qbench::test::test_scheme(bits, Signedness::Auto)),
                             x);
}

}  // namespace

TEST_CASE("apot: weight level sets equal the formula's set for every bit width", "[apot][numeric]") {
  // The paper's formula where b - 1 = k n splits evenly.
  CHECK(paper_apot_set(2, 1) == std::vector<double>{0.0, 0.25, 0.5, 1.0});  // b = 3: single PoT
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    const auto lv = apot_weight_levels(bits);
    if (bits == 8) {
      REQUIRE(lv.size() == 128u);
      for (size_t k = 0; k < lv.size(); ++k) CHECK(lv[k] == Approx(k / 127.0));
      continue;
    }
    // 2^(b-1) magnitudes: with the sign, 2^b - 1 distinct values, 0 once.
    CHECK(lv.size() == (size_t(1) << (bits - 1)));
    CHECK(lv.front() == 0.0);
    CHECK(lv.back() == 1.0);
    CHECK(std::adjacent_find(lv.begin(), lv.end(), [](double p, double q) { return q <= p; }) == lv.end());
    if (bits == 6) continue;  // uneven split, checked below
    const auto expect = literal_levels(bits);
    REQUIRE(lv.size() == expect.size());
    for (size_t k = 0; k < lv.size(); ++k) CHECK(lv[k] == Approx(expect[k]).margin(1e-12));
  }
  // b = 6 (B = 5, the authors' uneven three-term split): 32 distinct magnitudes, each a sum of
  // at most three powers of two (after undoing the normalisation by the largest sum).
  const auto l6 = apot_weight_levels(6);
  REQUIRE(l6.size() == 32u);
  const double top = 0.5 + 0.25 + 1.0 / 32;  // largest a + b + c
  for (double v : l6) {
    const double raw = v * top;
    int ones = 0;
    double r = raw;
    for (int e = 1; e <= 9; ++e)
      if (r >= std::ldexp(1.0, -e) - 1e-12) {
        r -= std::ldexp(1.0, -e);
        ++ones;
      }
    CHECK(std::fabs(r) < 1e-12);
    CHECK(ones <= 3);
  }
  CHECK_THROWS_AS(apot_weight_levels(1), qbench::Error);
  CHECK_THROWS_AS(apot_weight_levels(9), qbench::Error);
}

TEST_CASE("apot: the quantized weights take exactly the 2^b - 1 symmetric APoT values", "[apot][numeric]") {
  for (int bits : {2, 3, 4}) {
    INFO("bits " << bits);
    auto w = at::linspace(-1.0, 1.0, 20001);
    auto q = ready_weight(w, bits, /*restore=*/false);
    {
      at::NoGradGuard ng;
      q->alpha().fill_(1.0);  // normalised weights reach |w_hat| = sqrt(3) > 1: every level is hit
    }
    auto vals = as_vector(std::get<0>(at::_unique(q->forward(w))));
    std::vector<double> expect;
    for (double m : literal_levels(bits)) {
      expect.push_back(m);
      if (m > 0) expect.push_back(-m);
    }
    std::sort(expect.begin(), expect.end());
    REQUIRE(vals.size() == expect.size());
    CHECK(vals.size() == (size_t(1) << bits) - 1);
    for (size_t k = 0; k < vals.size(); ++k) {
      CHECK(vals[k] == Approx(expect[k]).margin(1e-6));
      CHECK(vals[k] == Approx(-vals[vals.size() - 1 - k]).margin(1e-6));  // symmetric
    }
  }
}

TEST_CASE("apot: weight forward matches the scalar reference (normalise, clip, project, rescale)",
          "[apot][numeric]") {
  at::manual_seed(5);
  auto w = at::randn({4, 3, 3, 3}) * 0.07 + 0.01;
  for (int bits : {2, 3, 4}) {
    for (bool restore : {true, false}) {
      auto q = ready_weight(w, bits, restore);
      {
        at::NoGradGuard ng;
        q->alpha().fill_(1.7);
      }
      auto y = as_vector(q->forward(w));
      auto wv = as_vector(w.to(at::kFloat));
      double mu = 0, var = 0;
      for (double v : wv) mu += v;
      mu /= wv.size();
      for (double v : wv) var += (v - mu) * (v - mu);
      const double sd = std::sqrt(var / (wv.size() - 1));  // unbiased, as torch's std()
      const double alpha = 1.7f;
      const auto lv = literal_levels(bits);
      int64_t bad = 0, checked = 0;
      for (size_t k = 0; k < wv.size(); ++k) {
        const double u = (wv[k] - mu) / sd;
        const double v = std::min(1.0, std::max(-1.0, u / alpha));
        double gap = 0;
        const double p = nearest(std::fabs(v), lv, &gap) * (v < 0 ? -1.0 : 1.0);
        if (gap < 1e-4) continue;
        ++checked;
        const double expect = alpha * p * (restore ? sd : 1.0);
        if (std::fabs(y[k] - expect) > 1e-5 * std::max(1.0, std::fabs(expect))) ++bad;
      }
      INFO("bits " << bits << " restore " << restore);
      CHECK(checked > 100);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("apot: RCF gradients match the closed form and finite differences with Proj held fixed",
          "[apot][numeric]") {
  const auto lv = literal_levels(4);
  auto levels = at::tensor(lv, at::kDouble).to(at::kFloat);
  const float alpha_f = 1.3f;
  at::manual_seed(9);
  auto cand = as_vector(at::randn({300}) * 1.2);
  int tested = 0;
  for (double c : cand) {
    const float uf = static_cast<float>(c);
    const double u = uf, a = alpha_f;
    const double v = u / a;
    if (std::fabs(std::fabs(v) - 1.0) < 1e-3) continue;  // within h of the clip boundary
    double gap = 0;
    const double vc = std::min(1.0, std::max(-1.0, v));
    const double p = nearest(std::fabs(vc), lv, &gap) * (vc < 0 ? -1.0 : 1.0);
    if (gap < 1e-3) continue;
    ++tested;
    auto ut = scalar(uf), at_ = scalar(alpha_f);
    auto y = apot_rcf(ut, at_, levels);
    auto g = torch::autograd::grad({y}, {ut, at_});
    // Closed form (RCF): d/du = 1 inside, 0 outside; d/d alpha = sign(u) outside,
    // Proj(u/alpha) - u/alpha inside.
    const bool inside = std::fabs(u) <= a;
    const double cf_u = inside ? 1.0 : 0.0;
    const double cf_a = inside ? p - u / a : (u < 0 ? -1.0 : 1.0);
    INFO("u " << u);
    CHECK(y.item<double>() == Approx(a * p).epsilon(1e-6).margin(1e-7));
    CHECK(g[0].item<double>() == Approx(cf_u).margin(1e-6));
    CHECK(g[1].item<double>() == Approx(cf_a).epsilon(1e-5).margin(1e-6));
    // Surrogate with the projection held fixed: S(u', a') = a' (p0 - v0) + a' clip(u'/a', -1, 1).
    const double r0 = p - vc, h = 1e-6;
    auto S = [&](double uu, double aa) { return aa * r0 + aa * std::min(1.0, std::max(-1.0, uu / aa)); };
    CHECK((S(u + h, a) - S(u - h, a)) / (2 * h) == Approx(cf_u).margin(1e-6));
    CHECK((S(u, a + h) - S(u, a - h)) / (2 * h) == Approx(cf_a).epsilon(1e-6).margin(1e-8));
  }
  CHECK(tested > 200);
}

TEST_CASE("apot: module weight gradients: STE for w inside the clip, sigma-scaled RCF for alpha",
          "[apot][numeric]") {
  at::manual_seed(13);
  auto w = (at::randn({64}) * 0.05).set_requires_grad(true);
  auto q = ready_weight(w.detach(), 4);
  {
    at::NoGradGuard ng;
    q->alpha().fill_(1.5);
  }
  q->forward(w).sum().backward();
  auto wv = as_vector(w.detach());
  double mu = 0, var = 0;
  for (double v : wv) mu += v;
  mu /= wv.size();
  for (double v : wv) var += (v - mu) * (v - mu);
  const double sd = std::sqrt(var / (wv.size() - 1)), a = 1.5;
  const auto lv = literal_levels(4);
  double cf_alpha = 0;
  auto gw = as_vector(w.grad());
  for (size_t k = 0; k < wv.size(); ++k) {
    const double u = (wv[k] - mu) / sd;
    const double vc = std::min(1.0, std::max(-1.0, u / a));
    const double p = nearest(std::fabs(vc), lv, nullptr) * (vc < 0 ? -1.0 : 1.0);
    const bool inside = std::fabs(u) <= a;
    // The normalisation statistics carry no gradient, so d w_q / d w = sd * 1/sd = 1 inside.
    CHECK(gw[k] == Approx(inside ? 1.0 : 0.0).margin(1e-5));
    cf_alpha += sd * (inside ? p - u / a : (u < 0 ? -1.0 : 1.0));
  }
  CHECK(q->alpha().grad().item<double>() == Approx(cf_alpha).epsilon(1e-4).margin(1e-6));
  REQUIRE(q->quant_parameters().size() == 1);
  CHECK_FALSE(q->affine_qparams().has_value());
}

TEST_CASE("apot: uniform activations with learnable clipping: forward, closed-form and FD gradients",
          "[apot][numeric]") {
  for (bool has_negative : {false, true}) {
    at::manual_seed(17);
    auto x = has_negative ? at::randn({300}) * 1.5 : at::relu(at::randn({300}) * 1.5);
    auto q = ready_act(x, 3);
    REQUIRE(q->is_signed() == has_negative);
    // alpha initialised from the data: max |x|.
    CHECK(q->alpha().item<float>() == Approx(x.abs().max().item<float>()));
    {
      at::NoGradGuard ng;
      q->alpha().fill_(1.9);
    }
    const double a = 1.9f;
    const double m = has_negative ? 3.0 : 7.0;  // 2^(b-1) - 1 or 2^b - 1 for b = 3
    const double lo = has_negative ? -1.0 : 0.0;
    auto xg = x.clone().set_requires_grad(true);
    auto y = q->forward(xg);
    y.sum().backward();
    auto xv = as_vector(x), yv = as_vector(y.detach()), gx = as_vector(xg.grad());
    double cf_alpha = 0;
    int tested = 0;
    for (size_t k = 0; k < xv.size(); ++k) {
      const double v = xv[k] / a, vc = std::min(1.0, std::max(lo, v));
      const double r = vc * m, frac = r - std::floor(r);
      const double qv = std::nearbyint(r) / m;
      const bool inside = v >= lo && v <= 1.0;
      const double cf_a = inside ? qv - v : (v > 1.0 ? 1.0 : (has_negative ? -1.0 : 0.0));
      cf_alpha += cf_a;
      if (std::fabs(frac - 0.5) < 1e-4 || std::fabs(v - 1.0) < 1e-4 || std::fabs(v - lo) < 1e-4) continue;
      ++tested;
      CHECK(yv[k] == Approx(a * qv).epsilon(1e-5).margin(1e-6));
      CHECK(gx[k] == Approx(inside ? 1.0 : 0.0).margin(1e-6));
      // Surrogate with the rounding held fixed: S(a') = a' r0/m + a' clip(x/a', lo, 1).
      const double r0 = std::nearbyint(r) - r, h = 1e-6;
      auto S = [&](double aa) { return aa * r0 / m + aa * std::min(1.0, std::max(lo, xv[k] / aa)); };
      CHECK((S(a + h) - S(a - h)) / (2 * h) == Approx(cf_a).epsilon(1e-6).margin(1e-8));
    }
    INFO("signed " << has_negative);
    CHECK(tested > 120);  // the ReLU case has about half its points at 0 (a clip edge)
    CHECK(q->alpha().grad().item<double>() == Approx(cf_alpha).epsilon(1e-4).margin(1e-5));
    // The uniform activation grid is affine: fake_quantize with affine_qparams() agrees.
    auto qp = q->affine_qparams();
    REQUIRE(qp.has_value());
    CHECK(qp->zero_point.item<int>() == 0);
    CHECK(qp->range.qmax == static_cast<int64_t>(m));
    CHECK(qp->range.qmin == (has_negative ? -3 : 0));
    CHECK((fake_quantize(x, *qp) - y.detach()).abs().max().item<float>() < 1e-5f);
  }
}

TEST_CASE("apot: edge cases", "[apot][numeric]") {
  SECTION("all-zero tensor: finite parameters, exact zeros") {
    auto z = at::zeros({12});
    auto qw = ready_weight(z, 4);
    auto qa = ready_act(z, 4);
    CHECK(qw->forward(z).abs().max().item<float>() == 0.0f);
    CHECK(qa->forward(z).abs().max().item<float>() == 0.0f);
    CHECK(std::isfinite(qw->alpha().item<double>()));
    CHECK(qa->alpha().item<double>() > 0.0);
  }
  SECTION("constant tensor: weights collapse to their mean's code 0, activations are reproduced") {
    auto c = at::full({7}, 2.5f);
    auto qw = ready_weight(c, 4);
    auto yw = qw->forward(c);
    CHECK(at::isfinite(yw).all().item<bool>());
    CHECK(yw.abs().max().item<float>() == 0.0f);  // (w - mean) = 0 is the level 0
    auto qa = ready_act(c, 4);
    CHECK(qa->forward(c).sub(c).abs().max().item<float>() < 1e-6f);
  }
  SECTION("single element") {
    auto c = at::tensor({-0.75f});
    auto qw = ready_weight(c, 3);
    CHECK(at::isfinite(qw->forward(c)).all().item<bool>());
    auto qa = ready_act(c, 3);
    CHECK(qa->is_signed());
    CHECK(qa->forward(c).item<float>() == Approx(-0.75f).epsilon(1e-6));
  }
  SECTION("huge and tiny magnitudes stay finite, gradients included") {
    for (float mag : {1e30f, 1e-30f}) {
      INFO("magnitude " << mag);
      auto c = at::tensor({-mag, mag / 3, mag, mag / 7});
      for (int which = 0; which < 2; ++which) {
        std::shared_ptr<FakeQuantizer> q;
        if (which == 0)
          q = ready_weight(c, 4);
        else
          q = ready_act(c, 4);
        auto y = qbench::test::forward_backward_finite(*q, c);
        CHECK(y.abs().max().item<float>() > 0.0f);
        CHECK(y.abs().max().item<float>() <= 3.0f * mag);
        for (auto& p : q->quant_parameters()) {
          CHECK(std::isfinite(p.item<double>()));
          CHECK(std::isfinite(p.grad().item<double>()));
        }
      }
    }
  }
  SECTION("NaN or Inf input is an error at observe time") {
    ApotWeightQuantizer qw(qbench::test::test_scheme(4));
    ApotActivationQuantizer qa(qbench::test::test_scheme(4, Signedness::Auto));
    qw.set_observing(true);
    qa.set_observing(true);
    CHECK_THROWS_AS(qw.forward(at::tensor({1.0f, std::nanf("")})), qbench::Error);
    CHECK_THROWS_AS(qa.forward(at::tensor({std::numeric_limits<float>::infinity()})), qbench::Error);
    CHECK_THROWS_AS(qw.compute_qparams(), qbench::Error);
    CHECK_THROWS_AS(qa.compute_qparams(), qbench::Error);
  }
  SECTION("quantizing before compute_qparams is an error") {
    ApotWeightQuantizer qw(qbench::test::test_scheme(4));
    ApotActivationQuantizer qa(qbench::test::test_scheme(4));
    CHECK_THROWS_AS(qw.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(qa.set_quantizing(true), qbench::Error);
    CHECK_FALSE(qa.affine_qparams().has_value());
  }
}

TEST_CASE("apot: registered as a QAT method", "[apot][numeric]") {
  const auto [w, a] = qbench::test::registered_qat_method("apot", "1909.13144");
  CHECK(dynamic_cast<ApotWeightQuantizer*>(w.get()) != nullptr);
  CHECK(dynamic_cast<ApotActivationQuantizer*>(a.get()) != nullptr);
}

TEST_CASE("apot: the fused CPU activation kernel over many parallel chunks is the reference, at any thread count",
          "[apot][numeric]") {
  // 210,003 floats: several parallel chunks and a tail that is no multiple of the 16 lanes.
  const int threads_before = at::get_num_threads();
  for (bool has_negative : {false, true}) {
    at::manual_seed(18);
    auto x = has_negative ? at::randn({3, 70001}) * 1.5 : at::relu(at::randn({3, 70001}) * 1.5);
    auto r = at::randn(x.sizes());
    auto q = ready_act(x, 4);
    REQUIRE(q->is_signed() == has_negative);
    {
      at::NoGradGuard ng;
      q->alpha().fill_(1.9);
    }
    const float a = 1.9f;
    const double m = has_negative ? 7.0 : 15.0, lo = has_negative ? -1.0 : 0.0;
    std::vector<double> alpha_grads;
    for (int threads : {1, 2}) {
      INFO("signed " << has_negative << " threads " << threads);
      at::set_num_threads(threads);
      q->alpha().mutable_grad() = at::Tensor();
      auto xg = x.clone().set_requires_grad(true);
      auto y = q->forward(xg);
      (y * r).sum().backward();
      const auto xv = as_vector(x), yv = as_vector(y.detach()), gx = as_vector(xg.grad()), rv = as_vector(r);
      double cf_alpha = 0, abs_sum = 0;
      int64_t bad_y = 0, bad_dx = 0, skipped = 0;
      for (size_t k = 0; k < xv.size(); ++k) {
        const float vf = static_cast<float>(xv[k]) / a;
        const double v = vf, vc = std::min(1.0, std::max(lo, v));
        const bool inside = v >= lo && v <= 1.0;
        const double qv = std::nearbyint(vc * m) / m;
        cf_alpha += rv[k] * (inside ? qv - v : vc);
        abs_sum += std::fabs(rv[k]) * 2.0;
        if (gx[k] != (inside ? rv[k] : 0.0)) ++bad_dx;
        const double frac = vc * m - std::floor(vc * m);
        if (std::fabs(frac - 0.5) < 1e-4) {
          ++skipped;
          continue;
        }
        if (std::fabs(yv[k] - a * qv) > 1e-6 * a) ++bad_y;
      }
      CHECK(bad_y == 0);
      CHECK(bad_dx == 0);
      CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
      const double ga = q->alpha().grad().item<double>();
      CHECK(std::fabs(ga - cf_alpha) <= 1e-6 * abs_sum);
      alpha_grads.push_back(ga);
    }
    CHECK(alpha_grads[0] == alpha_grads[1]);
  }
  at::set_num_threads(threads_before);
}
