// LSQ (Esser et al. 2019, arXiv:1902.08153) and LSQ+ (Bhalgat et al. 2020, arXiv:2004.09576)
// against plain scalar reference loops, the papers' closed-form gradients, central finite
// differences and LibTorch's built-in LSQ kernel (at::_fake_quantize_learnable_per_tensor_affine).
#include <ATen/ATen.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/qat/method.h"
#include "qbench/qat/lsq.h"

#include "qat_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;

using namespace qbench::test;  // scheme_util.h: references, floats, the readying protocol

namespace {

constexpr float kFloatEps = std::numeric_limits<float>::epsilon();


// The reference quantizer, Esser et al. Eqs. 1-2, as a loop over floats.
float ref_lsq(float x, float s, int64_t qmin, int64_t qmax) {
  float u = x / s;
  u = std::min(std::max(u, static_cast<float>(qmin)), static_cast<float>(qmax));
  return std::nearbyint(u) * s;
}

// LSQ+ (Bhalgat et al. Sec. 3): round(clip((x - beta) / s, n, p)) * s + beta.
float ref_lsq_plus(float x, float s, float beta, int64_t qmin, int64_t qmax) {
  float u = (x - beta) / s;
  u = std::min(std::max(u, static_cast<float>(qmin)), static_cast<float>(qmax));
  return std::nearbyint(u) * s + beta;
}

// The paper's closed-form gradients (Esser et al. Eq. 3 for s; STE for x) of sum(r * x^), with
// the step's gradient *unscaled* (g = 1). `abs_terms` bounds the float rounding of the sum: the
// autograd sum adds sum(r round(u)) and sum(r u) separately, so its error grows with both.
struct LsqClosedForm {
  std::vector<double> dx;
  double ds = 0, dbeta = 0, abs_terms = 0;
};

LsqClosedForm lsq_closed_form(const std::vector<float>& x, const std::vector<float>& r, double s, double beta,
                              int64_t qmin, int64_t qmax) {
  LsqClosedForm c;
  c.dx.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = (static_cast<double>(x[i]) - beta) / s;
    // Eq. 3's cases overlap at u = -Qn and u = Qp; like LibTorch's kernel (and PyTorch's clamp)
    // the implementation counts the boundary as inside. That matters for ReLU outputs, where
    // u = 0 = -Qn is common: dx = 1 there (ReLU's own derivative zeroes it) and ds = 0 either way.
    if (u < static_cast<double>(qmin)) {
      c.ds += r[i] * static_cast<double>(qmin);
      c.dbeta += r[i];
    } else if (u > static_cast<double>(qmax)) {
      c.ds += r[i] * static_cast<double>(qmax);
      c.dbeta += r[i];
    } else {
      c.dx[i] = r[i];
      c.ds += r[i] * (std::nearbyint(u) - u);
    }
    c.abs_terms += std::fabs(r[i]) * (std::fabs(std::nearbyint(clampd(u, qmin, qmax))) + std::fabs(u) + 1.0);
  }
  return c;
}

int64_t qp_signed(int bits) { return (int64_t(1) << (bits - 1)) - 1; }
int64_t qp_unsigned(int bits) { return (int64_t(1) << bits) - 1; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// LSQ

TEST_CASE("lsq: weight init is 2 mean|w| / sqrt(Qp) and the forward is the scalar reference, bits 2..8",
          "[lsq][numeric]") {
  at::manual_seed(11);
  auto w = at::randn({8, 4, 3, 3}) * 0.2;
  const auto wv = floats(w);
  double mean_abs = 0;
  for (float v : wv) mean_abs += std::fabs(v);
  mean_abs /= static_cast<double>(wv.size());
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    LsqQuantizer q(qbench::test::test_scheme(bits, Signedness::Signed), QatRole::Weight);
    observe_and_init(q, {w});
    const int64_t qp = qp_signed(bits);
    CHECK(q.range().qmin == -qp - 1);
    CHECK(q.range().qmax == qp);
    CHECK(q.step().item<double>() == Approx(2.0 * mean_abs / std::sqrt(static_cast<double>(qp))).epsilon(1e-6));
    at::Tensor y;
    {
      at::NoGradGuard no_grad;
      y = q.forward(w);
    }
    const float s = q.step().item<float>();
    const auto yv = floats(y);
    int64_t mismatches = 0, skipped = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      if (near_tie(clampd(static_cast<double>(wv[i]) / s, -qp - 1, qp))) {
        ++skipped;
        continue;
      }
      // 2 ulp: grad_scale's (s - s g) + s g can return s off by one ulp (see the LibTorch test).
      const float ref = ref_lsq(wv[i], s, -qp - 1, qp);
      if (std::fabs(yv[i] - ref) > 2 * kFloatEps * std::max(std::fabs(ref), s)) ++mismatches;
    }
    CHECK(mismatches == 0);
    CHECK(skipped < static_cast<int64_t>(wv.size()) / 100);
    CHECK(std::get<0>(at::_unique(y)).numel() <= (int64_t(1) << bits));
  }
}

TEST_CASE("lsq: activation signedness follows the observed minimum (Auto) and init averages the batches",
          "[lsq][numeric]") {
  at::manual_seed(12);
  auto a1 = at::relu(at::randn({4, 3, 6, 6}));
  auto a2 = at::relu(at::randn({4, 3, 6, 6})) * 3.0;
  const double m1 = a1.abs().mean().item<double>(), m2 = a2.abs().mean().item<double>();
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    LsqQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {a1, a2});
    CHECK(q.range().qmin == 0);
    CHECK(q.range().qmax == qp_unsigned(bits));
    const double expected = 2.0 * (m1 + m2) / 2.0 / std::sqrt(static_cast<double>(qp_unsigned(bits)));
    CHECK(q.step().item<double>() == Approx(expected).epsilon(1e-5));

    LsqQuantizer qs(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
    observe_and_init(qs, {a1 - 0.5});
    CHECK(qs.range().qmin == -qp_signed(bits) - 1);
    CHECK(qs.range().qmax == qp_signed(bits));
  }
  // Explicit signedness wins over what was observed.
  LsqQuantizer qu(qbench::test::test_scheme(4, Signedness::Unsigned), QatRole::Activation);
  observe_and_init(qu, {a1 - 0.5});
  CHECK(qu.range().qmin == 0);
  LsqQuantizer qsg(qbench::test::test_scheme(4, Signedness::Signed), QatRole::Activation);
  observe_and_init(qsg, {a1});
  CHECK(qsg.range().qmin == -8);
}

TEST_CASE("lsq: autograd gives the paper's gradients (Eq. 3) with the step gradient scaled by 1/sqrt(N Qp)",
          "[lsq][numeric]") {
  at::manual_seed(13);
  for (auto role : {QatRole::Weight, QatRole::Activation}) {
    for (int bits = 2; bits <= 8; ++bits) {
      INFO("bits " << bits << (role == QatRole::Weight ? " weight" : " activation"));
      auto x = at::randn({4, 3, 5, 5});
      if (role == QatRole::Activation) x = at::relu(x) * 2.0;
      LsqQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), role);
      observe_and_init(q, {x});
      const int64_t qmin = q.range().qmin, qmax = q.range().qmax;
      // A step that puts part of the data beyond the clip, so both branches of Eq. 3 are used.
      const double s = x.abs().max().item<double>() / (static_cast<double>(qmax) * 1.5);
      {
        at::NoGradGuard no_grad;
        q.step().fill_(s);
      }
      auto xr = x.clone().set_requires_grad(true);
      auto r = at::randn(x.sizes());
      (q.forward(xr) * r).sum().backward();
      const float sf = static_cast<float>(s);
      const auto cf = lsq_closed_form(floats(x), floats(r), sf, 0.0, qmin, qmax);
      // N: weights numel; activations numel per sample (the paper's N_F), here 3*5*5.
      const double n = role == QatRole::Weight ? 100.0 * 3.0 : 75.0;
      const double g = 1.0 / std::sqrt(n * static_cast<double>(qmax));
      CHECK(lsq_grad_scale(x, role, -1, qmax) == Approx(g).epsilon(1e-12));
      const double ds = q.step().grad().item<double>();
      // The step's gradient is g times the paper's unscaled sum (and g is far from 1 here).
      REQUIRE(g < 0.2);
      CHECK(std::fabs(ds - g * cf.ds) <= 1e-5 * g * cf.abs_terms);
      CHECK(std::fabs(ds - cf.ds) > 1e-3 * std::fabs(cf.ds));
      const auto dx = floats(xr.grad());
      int64_t bad = 0, inside = 0;
      for (size_t i = 0; i < dx.size(); ++i) {
        inside += cf.dx[i] != 0.0;
        if (std::fabs(dx[i] - cf.dx[i]) > 1e-6 * std::max(1.0, std::fabs(cf.dx[i]))) ++bad;
      }
      CHECK(bad == 0);
      CHECK(inside > 0);
      CHECK(inside < static_cast<int64_t>(dx.size()));
    }
  }
}

TEST_CASE("lsq: the fused CPU kernel over many parallel chunks and a ragged tail is the reference, at any thread count",
          "[lsq][numeric]") {
  // 210,003 floats: several 32,768-element chunks, and a length that is no multiple of the
  // kernel's 16 accumulation lanes, so the vector body and the scalar tail both run.
  at::manual_seed(21);
  auto x = at::relu(at::randn({3, 70001})) * 2.0 - 0.3;
  const int64_t qmin = 0, qmax = 15;
  const float sf = 0.15f;  // clips above 2.25 and below 0: both branches of Eq. 3
  auto r = at::randn(x.sizes());
  const int threads_before = at::get_num_threads();
  std::vector<double> step_grads;
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    at::set_num_threads(threads);
    auto xr = x.clone().set_requires_grad(true);
    auto s = at::full({1}, sf).set_requires_grad(true);
    auto y = lsq_fake_quantize(xr, s, qmin, qmax, 1.0, -1);
    (y * r).sum().backward();
    const auto xv = floats(x), yv = floats(y), dx = floats(xr.grad()), rv = floats(r);
    int64_t bad_y = 0, bad_dx = 0, skipped = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      const float v = xv[i] / sf;
      if (near_tie(clampd(v, qmin, qmax))) {
        ++skipped;
        continue;
      }
      if (yv[i] != ref_lsq(xv[i], sf, qmin, qmax)) ++bad_y;
      const float expect_dx = (v >= qmin && v <= qmax) ? rv[i] : 0.f;
      if (dx[i] != expect_dx) ++bad_dx;
    }
    CHECK(bad_y == 0);
    CHECK(bad_dx == 0);
    CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
    const auto cf = lsq_closed_form(xv, rv, sf, 0.0, qmin, qmax);
    const double ds = s.grad().item<double>();
    CHECK(std::fabs(ds - cf.ds) <= 1e-6 * cf.abs_terms);
    step_grads.push_back(ds);
  }
  at::set_num_threads(threads_before);
  // Chunks are summed in a fixed order, so the thread count does not change the step gradient.
  CHECK(step_grads[0] == step_grads[1]);
}

TEST_CASE("lsq+: the fused CPU kernel over many parallel chunks and a ragged tail is the reference, at any thread count",
          "[lsq+][numeric]") {
  at::manual_seed(22);
  auto x = at::randn({3, 70001}) * 1.5 + 0.3;  // negative values too: the offset shifts the grid
  const int64_t qmin = 0, qmax = 15;
  const float sf = 0.2f, bf = -0.7f;  // clips below -0.7 and above 2.3
  auto r = at::randn(x.sizes());
  const int threads_before = at::get_num_threads();
  std::vector<std::pair<double, double>> grads;
  for (int threads : {1, 2}) {
    INFO("threads " << threads);
    at::set_num_threads(threads);
    auto xr = x.clone().set_requires_grad(true);
    auto s = at::full({1}, sf).set_requires_grad(true);
    auto beta = at::full({1}, bf).set_requires_grad(true);
    auto y = lsq_plus_fake_quantize(xr, s, beta, qmin, qmax, 1.0);
    (y * r).sum().backward();
    const auto xv = floats(x), yv = floats(y), dx = floats(xr.grad()), rv = floats(r);
    int64_t bad_y = 0, bad_dx = 0, skipped = 0, clipped = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      const float u = (xv[i] - bf) / sf;
      if (near_tie(clampd(u, qmin, qmax))) {
        ++skipped;
        continue;
      }
      const bool inside = u >= qmin && u <= qmax;
      clipped += !inside;
      if (yv[i] != ref_lsq_plus(xv[i], sf, bf, qmin, qmax)) ++bad_y;
      if (dx[i] != (inside ? rv[i] : 0.f)) ++bad_dx;
    }
    CHECK(bad_y == 0);
    CHECK(bad_dx == 0);
    CHECK(skipped < static_cast<int64_t>(xv.size()) / 100);
    CHECK(clipped > static_cast<int64_t>(xv.size()) / 20);
    const auto cf = lsq_closed_form(xv, rv, sf, bf, qmin, qmax);
    const double ds = s.grad().item<double>(), db = beta.grad().item<double>();
    CHECK(std::fabs(ds - cf.ds) <= 1e-6 * cf.abs_terms);
    CHECK(std::fabs(db - cf.dbeta) <= 1e-6 * cf.abs_terms);
    grads.emplace_back(ds, db);
  }
  at::set_num_threads(threads_before);
  CHECK(grads[0] == grads[1]);
}

TEST_CASE("lsq: gradients equal central finite differences with the rounding offset held fixed", "[lsq][numeric]") {
  // With round(u) - u frozen at its value c, the quantizer is s * (clip(v / s, -Qn, Qp) + c): the
  // function whose derivative the STE defines. It is smooth away from the clip boundaries, so
  // central differences there must give Eq. 3: d/ds = c inside, -Qn / Qp at the clip, d/dv = 1 / 0.
  const double s0 = 0.25, h = 1e-5;
  const int64_t qmin = -8, qmax = 7;  // 4-bit signed: clip at u = -8 and 7
  const std::vector<double> points = {-3.0, -2.1, -1.9, -0.93, -0.2, 0.06, 0.61, 1.2, 1.68, 1.9, 2.4, 5.0};
  for (double v0 : points) {
    INFO("v = " << v0);
    const double u0 = clampd(v0 / s0, qmin, qmax);
    REQUIRE_FALSE(near_tie(u0, 0.01));
    REQUIRE(std::fabs(v0 / s0 - qmin) > 0.05);
    REQUIRE(std::fabs(v0 / s0 - qmax) > 0.05);
    const double c = std::nearbyint(u0) - u0;
    auto f = [&](double v, double s) { return s * (clampd(v / s, qmin, qmax) + c); };
    const double fd_s = (f(v0, s0 + h) - f(v0, s0 - h)) / (2 * h);
    const double fd_v = (f(v0 + h, s0) - f(v0 - h, s0)) / (2 * h);
    const double u = v0 / s0;
    const double closed_s = u <= qmin ? static_cast<double>(qmin) : u >= qmax ? static_cast<double>(qmax) : c;
    const double closed_v = (u > qmin && u < qmax) ? 1.0 : 0.0;
    CHECK(fd_s == Approx(closed_s).margin(1e-6));
    CHECK(fd_v == Approx(closed_v).margin(1e-6));
    auto x = at::full({1}, v0).set_requires_grad(true);
    auto s = at::full({1}, s0).set_requires_grad(true);
    lsq_fake_quantize(x, s, qmin, qmax, /*g=*/1.0).sum().backward();
    CHECK(s.grad().item<double>() == Approx(fd_s).margin(1e-5));
    CHECK(x.grad().item<double>() == Approx(fd_v).margin(1e-6));
  }
}

TEST_CASE("lsq: forward and gradients equal LibTorch's built-in LSQ (_fake_quantize_learnable_per_tensor_affine)",
          "[lsq][numeric]") {
  // Differences that are expected, and why:
  //  * LibTorch computes round(x * (1/s)), we compute round(x / s) as Eq. 1 writes; the two can
  //    round differently within an ulp of a tie, and grad_scale's (s - s g) + s g can return s off
  //    by one ulp. So ties are excluded and values compared to 2 ulp; dx to 1e-6 (r s / s).
  //  * LibTorch rounds first and clamps after, so its "inside" mask is round(x/s) in [qmin, qmax]:
  //    for x/s in (qmax, qmax + 0.5] it passes dx = 1 and ds = qmax - x/s, where the paper (clip
  //    first, Eq. 1) gives dx = 0 and ds = qmax. Those half-step bands are excluded here and the
  //    difference is pinned down below. (MQBench's per-tensor LSQ uses this kernel, so it inherits
  //    the band; we follow the paper.)
  //  * The step gradient is a sum, compared to a tolerance scaled by the sum of |terms|.
  at::manual_seed(14);
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool is_signed : {true, false}) {
      INFO("bits " << bits << " signed " << is_signed);
      const QRange rg = integer_range(bits, is_signed, false);
      const float s_val = 0.037f;
      const double span = static_cast<double>(rg.qmax - rg.qmin + 6);
      auto u_all = at::rand({6000}, at::kDouble) * span + static_cast<double>(rg.qmin - 3);
      auto uv = floats(u_all);
      std::vector<float> keep;
      for (float uf : uv) {
        const double u = uf;
        const bool band =
            (u > rg.qmax - 1e-3 && u <= rg.qmax + 0.5 + 1e-3) || (u >= rg.qmin - 0.5 - 1e-3 && u < rg.qmin + 1e-3);
        if (band || near_tie(u, 1e-3)) continue;
        keep.push_back(static_cast<float>(u * s_val));
      }
      REQUIRE(keep.size() > 4000);
      auto x = at::tensor(keep);
      auto r = at::randn(x.sizes());
      const double g = 1.0 / std::sqrt(static_cast<double>(x.numel()) * static_cast<double>(rg.qmax));

      auto xa = x.clone().set_requires_grad(true);
      auto sa = at::full({1}, s_val).set_requires_grad(true);
      auto ya = lsq_fake_quantize(xa, sa, rg.qmin, rg.qmax, g);
      (ya * r).sum().backward();

      auto xb = x.clone().set_requires_grad(true);
      auto sb = at::full({1}, s_val).set_requires_grad(true);
      auto zb = at::zeros({1}).set_requires_grad(true);
      auto yb = at::_fake_quantize_learnable_per_tensor_affine(xb, sb, zb, rg.qmin, rg.qmax, g);
      (yb * r).sum().backward();

      const double vmax = s_val * std::max<double>(std::abs(rg.qmin), std::abs(rg.qmax));
      CHECK((ya - yb).abs().max().item<double>() <= 2 * kFloatEps * vmax);
      CHECK((xa.grad() - xb.grad()).abs().max().item<double>() <= 1e-6);
      const auto cf = lsq_closed_form(floats(x), floats(r), s_val, 0.0, rg.qmin, rg.qmax);
      CHECK(std::fabs(sa.grad().item<double>() - sb.grad().item<double>()) <= 1e-5 * g * cf.abs_terms);
      CHECK(std::fabs(sa.grad().item<double>() - g * cf.ds) <= 1e-5 * g * cf.abs_terms);
    }
  }
  SECTION("the half-step band beyond the clip: LibTorch rounds before clamping, the paper clips first") {
    const float s_val = 0.5f;
    const int64_t qmin = -8, qmax = 7;
    for (float u : {7.3f, -8.3f}) {
      auto xa = at::full({1}, u * s_val).set_requires_grad(true);
      auto sa = at::full({1}, s_val).set_requires_grad(true);
      lsq_fake_quantize(xa, sa, qmin, qmax, 1.0).sum().backward();
      auto xb = at::full({1}, u * s_val).set_requires_grad(true);
      auto sb = at::full({1}, s_val).set_requires_grad(true);
      auto zb = at::zeros({1});
      at::_fake_quantize_learnable_per_tensor_affine(xb, sb, zb, qmin, qmax, 1.0).sum().backward();
      const double bound = u > 0 ? static_cast<double>(qmax) : static_cast<double>(qmin);
      CHECK(xa.grad().item<double>() == 0.0);                             // paper: clipped
      CHECK(sa.grad().item<double>() == Approx(bound));                   // paper: Qp (or -Qn)
      CHECK(xb.grad().item<double>() == 1.0);                             // LibTorch: inside
      CHECK(sb.grad().item<double>() == Approx(bound - u).margin(1e-6));  // round(u) - u
    }
  }
}

TEST_CASE("lsq: per-channel weights get one step per output channel and N = elements per channel", "[lsq][numeric]") {
  at::manual_seed(15);
  auto w = at::randn({6, 3, 3, 3});
  {
    at::NoGradGuard no_grad;
    w[0].mul_(10.0);
  }
  for (int bits : {2, 4, 8}) {
    INFO("bits " << bits);
    LsqQuantizer q(qbench::test::test_scheme(bits, Signedness::Signed, true), QatRole::Weight);
    observe_and_init(q, {w});
    REQUIRE(q.step().numel() == 6);
    CHECK(q.named_parameters()["scale"].numel() == 6);  // the registered parameter was resized
    const int64_t qp = qp_signed(bits);
    auto wr = w.clone().set_requires_grad(true);
    auto r = at::randn(w.sizes());
    auto y = q.forward(wr);
    (y * r).sum().backward();
    const double g = 1.0 / std::sqrt(27.0 * static_cast<double>(qp));
    for (int64_t c = 0; c < 6; ++c) {
      const auto wc = floats(w[c]);
      double mean_abs = 0;
      for (float v : wc) mean_abs += std::fabs(v);
      mean_abs /= 27.0;
      CHECK(q.step()[c].item<double>() == Approx(2.0 * mean_abs / std::sqrt(static_cast<double>(qp))).epsilon(1e-6));
      const float s = q.step()[c].item<float>();
      const auto yc = floats(y[c]);
      for (size_t i = 0; i < wc.size(); ++i) {
        if (near_tie(clampd(wc[i] / static_cast<double>(s), -qp - 1, qp))) continue;
        CHECK(std::fabs(yc[i] - ref_lsq(wc[i], s, -qp - 1, qp)) <= 2 * kFloatEps * std::max(std::fabs(yc[i]), s));
      }
      const auto cf = lsq_closed_form(wc, floats(r[c]), s, 0.0, -qp - 1, qp);
      CHECK(std::fabs(q.step().grad()[c].item<double>() - g * cf.ds) <= 1e-5 * g * cf.abs_terms);
    }
  }
}

TEST_CASE("lsq: parameters, affine equivalent, description and registry entries", "[lsq][numeric]") {
  at::manual_seed(16);
  auto a = at::relu(at::randn({2, 4, 4, 4}));
  LsqQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
  CHECK_FALSE(q.affine_qparams().has_value());
  observe_and_init(q, {a});
  REQUIRE(q.quant_parameters().size() == 1);
  CHECK(q.quant_parameters()[0].is_same(q.step()));
  CHECK(q.named_parameters().contains("scale"));
  CHECK(q.quant_weight_decay() == 0.0);
  auto qp = q.affine_qparams();
  REQUIRE(qp.has_value());
  CHECK(qp->scale.item<float>() == q.step().item<float>());
  CHECK(qp->zero_point.item<int>() == 0);
  CHECK(qp->range.qmin == 0);
  CHECK(qp->range.qmax == 15);
  CHECK_FALSE(qp->per_channel());
  CHECK(q.describe().find("lsq activation") != std::string::npos);
  // A step driven through zero is kept positive (|s|, floored at float epsilon) before use.
  {
    at::NoGradGuard no_grad;
    q.step().fill_(-0.25);
  }
  at::NoGradGuard no_grad;
  auto y = q.forward(a);
  CHECK(q.step().item<float>() == 0.25f);
  CHECK(at::allclose(y, lsq_fake_quantize(a, at::full({1}, 0.25), 0, 15, 1.0)));

  const auto [w, act] = registered_qat_method("lsq", "1902.08153");
  REQUIRE(dynamic_cast<LsqQuantizer*>(w.get()) != nullptr);
  CHECK(dynamic_cast<LsqQuantizer*>(w.get())->role() == QatRole::Weight);
  CHECK(dynamic_cast<LsqQuantizer*>(act.get())->role() == QatRole::Activation);
  const auto [wp, ap] = registered_qat_method("lsq+", "2004.09576");
  REQUIRE(dynamic_cast<LsqPlusQuantizer*>(wp.get()) != nullptr);
  CHECK(dynamic_cast<LsqPlusQuantizer*>(ap.get())->role() == QatRole::Activation);
}

TEST_CASE("lsq: edge cases - zeros, constants, one element, huge and tiny magnitudes, NaN, misuse", "[lsq][numeric]") {
  auto run = [](const at::Tensor& x, QatRole role) {
    LsqQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), role);
    observe_and_init(q, {x});
    auto y = forward_backward_finite(q, x);
    CHECK(at::isfinite(q.step()).all().item<bool>());
    CHECK(q.step().item<double>() > 0.0);
    CHECK(at::isfinite(q.step().grad()).all().item<bool>());
    return std::make_pair(q.step().item<double>(), y);
  };
  const QatRole roles[] = {QatRole::Weight, QatRole::Activation};
  SECTION("all-zero tensor: step floored at float epsilon, output exact zeros") {
    for (auto role : roles) {
      auto [s, y] = run(at::zeros({2, 3, 4, 4}), role);
      CHECK(s == Approx(kLsqMinStep));
      CHECK(y.abs().max().item<double>() == 0.0);
    }
  }
  SECTION("constant tensor: s = 2 c / sqrt(Qp) and c lands on the nearest level") {
    for (auto role : roles) {
      auto [s, y] = run(at::full({2, 3, 4, 4}, 0.7), role);
      const double qp = role == QatRole::Weight ? 7.0 : 15.0;
      CHECK(s == Approx(2 * 0.7 / std::sqrt(qp)).epsilon(1e-6));
      CHECK(y[0][0][0][0].item<double>() == Approx(std::nearbyint(0.7 / s) * s).epsilon(1e-6));
    }
  }
  SECTION("single element") {
    for (auto role : roles) {
      auto [s, y] = run(at::full({1}, 1.3), role);
      CHECK(y.sizes() == at::IntArrayRef({1}));
      CHECK(s > 0);
    }
  }
  SECTION("huge magnitudes (1e30) stay finite") {
    at::manual_seed(17);
    for (auto role : roles) {
      auto [s, y] = run(at::randn({2, 8}) * 1e30, role);
      CHECK(s > 1e28);
    }
  }
  SECTION("tiny magnitudes (1e-30) stay finite (step floored)") {
    at::manual_seed(18);
    for (auto role : roles) {
      auto [s, y] = run(at::randn({2, 8}) * 1e-30, role);
      CHECK(s == Approx(kLsqMinStep));
    }
  }
  SECTION("NaN or infinity at observe time is an error") {
    LsqQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
    q.set_observing(true);
    CHECK_THROWS_AS(q.forward(at::tensor({1.0f, NAN, 2.0f})), qbench::Error);
    CHECK_THROWS_AS(q.forward(at::tensor({1.0f, INFINITY})), qbench::Error);
  }
  SECTION("quantizing before compute_qparams, or computing before observing, is an error") {
    LsqQuantizer q(qbench::test::test_scheme(4, Signedness::Signed), QatRole::Weight);
    CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(q.compute_qparams(), qbench::Error);
  }
  SECTION("bad configurations are rejected at construction") {
    CHECK_THROWS_AS(LsqQuantizer(qbench::test::test_scheme(1, Signedness::Signed), QatRole::Weight), qbench::Error);
    CHECK_THROWS_AS(LsqQuantizer(qbench::test::test_scheme(17, Signedness::Signed), QatRole::Weight), qbench::Error);
    CHECK_THROWS_AS(LsqQuantizer(qbench::test::test_scheme(4, Signedness::Auto, true), QatRole::Activation), qbench::Error);
  }
}

// ---------------------------------------------------------------------------------------------
// LSQ+

TEST_CASE("lsq+: activation forward is the scalar reference on the unsigned grid with offset, bits 2..8",
          "[lsq+][lsq][numeric]") {
  at::manual_seed(21);
  auto x = at::randn({4, 60}) * 1.5 + 0.3;  // negative values too (e.g. Swish outputs)
  const auto xv = floats(x);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    LsqPlusQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {x});
    // Auto: unsigned even for negative inputs - the offset absorbs them (no sign bit).
    CHECK(q.range().qmin == 0);
    CHECK(q.range().qmax == qp_unsigned(bits));
    const float s = q.step().item<float>(), beta = q.offset().item<float>();
    at::Tensor y;
    {
      at::NoGradGuard no_grad;
      y = q.forward(x);
    }
    const auto yv = floats(y);
    int64_t mismatches = 0, skipped = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (near_tie(clampd((static_cast<double>(xv[i]) - beta) / s, 0, qp_unsigned(bits)))) {
        ++skipped;
        continue;
      }
      const float ref = ref_lsq_plus(xv[i], s, beta, 0, qp_unsigned(bits));
      if (std::fabs(yv[i] - ref) > 4 * kFloatEps * (std::fabs(ref) + s * qp_unsigned(bits) + std::fabs(beta)))
        ++mismatches;
    }
    CHECK(mismatches == 0);
    CHECK(skipped < 5);
  }
  LsqPlusQuantizer qsg(qbench::test::test_scheme(4, Signedness::Signed), QatRole::Activation);
  observe_and_init(qsg, {x});
  CHECK(qsg.range().qmin == -8);
}

TEST_CASE("lsq+: gradients of s and beta are the paper's, both scaled by g", "[lsq+][lsq][numeric]") {
  at::manual_seed(22);
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    auto x = at::randn({4, 50}) * 2.0;
    LsqPlusQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {x});
    const int64_t qmax = q.range().qmax;
    // Put part of the data beyond each end of the grid.
    const double s = 3.0 / static_cast<double>(qmax), beta = -1.5;
    {
      at::NoGradGuard no_grad;
      q.step().fill_(s);
      q.offset().fill_(beta);
    }
    auto xr = x.clone().set_requires_grad(true);
    auto r = at::randn(x.sizes());
    (q.forward(xr) * r).sum().backward();
    const auto cf = lsq_closed_form(floats(x), floats(r), static_cast<float>(s), static_cast<float>(beta), 0, qmax);
    const double g = 1.0 / std::sqrt(50.0 * static_cast<double>(qmax));  // N = features per sample
    CHECK(std::fabs(q.step().grad().item<double>() - g * cf.ds) <= 1e-5 * g * cf.abs_terms);
    CHECK(q.offset().grad().item<double>() == Approx(g * cf.dbeta).epsilon(1e-5).margin(1e-7));
    CHECK(std::fabs(cf.dbeta) > 0.1);  // some elements are clipped
    const auto dx = floats(xr.grad());
    int64_t bad = 0;
    for (size_t i = 0; i < dx.size(); ++i)
      if (std::fabs(dx[i] - cf.dx[i]) > 1e-6 * std::max(1.0, std::fabs(cf.dx[i]))) ++bad;
    CHECK(bad == 0);
  }
}

TEST_CASE("lsq+: gradients equal central finite differences with the rounding offset held fixed",
          "[lsq+][lsq][numeric]") {
  // x^ = s (clip((x - beta) / s, 0, p) + c) + beta with c = round(u0) - u0 frozen: d/ds = c inside
  // and 0 or p at the clip, d/dbeta = 0 inside and 1 at the clip, d/dx = 1 inside and 0 outside.
  const double s0 = 0.25, b0 = -0.6, h = 1e-5;
  const int64_t qmin = 0, qmax = 7;  // 3-bit unsigned: grid covers [-0.6, 1.15]
  for (double v0 : {-1.3, -0.8, -0.52, -0.31, 0.02, 0.37, 0.8, 1.07, 1.4, 3.0}) {
    INFO("x = " << v0);
    const double u = (v0 - b0) / s0, u0 = clampd(u, qmin, qmax);
    REQUIRE_FALSE(near_tie(u0, 0.01));
    REQUIRE(std::fabs(u - qmin) > 0.05);
    REQUIRE(std::fabs(u - qmax) > 0.05);
    const double c = std::nearbyint(u0) - u0;
    auto f = [&](double x, double s, double b) { return s * (clampd((x - b) / s, qmin, qmax) + c) + b; };
    const double fd_s = (f(v0, s0 + h, b0) - f(v0, s0 - h, b0)) / (2 * h);
    const double fd_b = (f(v0, s0, b0 + h) - f(v0, s0, b0 - h)) / (2 * h);
    const double fd_x = (f(v0 + h, s0, b0) - f(v0 - h, s0, b0)) / (2 * h);
    const bool inside = u > qmin && u < qmax;
    CHECK(fd_s == Approx(inside ? c : (u <= qmin ? 0.0 : 7.0)).margin(1e-6));
    CHECK(fd_b == Approx(inside ? 0.0 : 1.0).margin(1e-6));
    CHECK(fd_x == Approx(inside ? 1.0 : 0.0).margin(1e-6));
    auto x = at::full({1}, v0).set_requires_grad(true);
    auto s = at::full({1}, s0).set_requires_grad(true);
    auto b = at::full({1}, b0).set_requires_grad(true);
    lsq_plus_fake_quantize(x, s, b, qmin, qmax, 1.0).sum().backward();
    CHECK(s.grad().item<double>() == Approx(fd_s).margin(1e-5));
    CHECK(b.grad().item<double>() == Approx(fd_b).margin(1e-6));
    CHECK(x.grad().item<double>() == Approx(fd_x).margin(1e-6));
  }
}

TEST_CASE("lsq+: weight init is max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1), symmetric LSQ forward",
          "[lsq+][lsq][numeric]") {
  at::manual_seed(23);
  auto w = at::randn({5, 4, 3, 3}) * 0.1 + 0.02;
  {
    at::NoGradGuard no_grad;
    w[2].mul_(5.0);
  }
  auto init_of = [](const std::vector<float>& v, int bits) {
    double mu = 0, var = 0;
    for (float e : v) mu += e;
    mu /= static_cast<double>(v.size());
    for (float e : v) var += (e - mu) * (e - mu);
    const double sd = std::sqrt(var / static_cast<double>(v.size()));  // population sigma
    return std::max(std::fabs(mu - 3 * sd), std::fabs(mu + 3 * sd)) / std::ldexp(1.0, bits - 1);
  };
  for (int bits = 2; bits <= 8; ++bits) {
    INFO("bits " << bits);
    LsqPlusQuantizer q(qbench::test::test_scheme(bits, Signedness::Signed), QatRole::Weight);
    observe_and_init(q, {w});
    CHECK(q.quant_parameters().size() == 1);  // no offset for weights
    CHECK_FALSE(q.offset().defined());
    CHECK(q.range().qmin == -qp_signed(bits) - 1);
    CHECK(q.step().item<double>() == Approx(init_of(floats(w), bits)).epsilon(1e-5));
    at::NoGradGuard no_grad;
    const double g = lsq_grad_scale(w, QatRole::Weight, -1, q.range().qmax);
    CHECK(at::equal(q.forward(w), lsq_fake_quantize(w, q.step(), q.range().qmin, q.range().qmax, g)));

    LsqPlusQuantizer qc(qbench::test::test_scheme(bits, Signedness::Signed, true), QatRole::Weight);
    observe_and_init(qc, {w});
    REQUIRE(qc.step().numel() == 5);
    for (int64_t c = 0; c < 5; ++c)
      CHECK(qc.step()[c].item<double>() == Approx(init_of(floats(w[c]), bits)).epsilon(1e-5));
  }
}

TEST_CASE("lsq+: activation init minimises the quantization MSE (better than min/max with outliers)",
          "[lsq+][lsq][numeric]") {
  auto mse = [](const std::vector<float>& x, double s, double b, int64_t qmin, int64_t qmax) {
    double e = 0;
    for (float v : x) {
      const double q = clampd(std::nearbyint((v - b) / s), qmin, qmax);
      e += (q * s + b - v) * (q * s + b - v);
    }
    return e / static_cast<double>(x.size());
  };
  SECTION("offset data (all values far from zero): the refinement moves beta off the shrink family") {
    at::manual_seed(27);
    auto x = at::randn({4, 2500}) * 0.3 + 2.0;
    const auto xv = floats(x);
    for (int bits : {2, 3}) {
      INFO("bits " << bits);
      LsqPlusQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
      observe_and_init(q, {x});
      const int64_t qmax = qp_unsigned(bits);
      const double lo = *std::min_element(xv.begin(), xv.end()), hi = *std::max_element(xv.begin(), xv.end());
      double best_grid = std::numeric_limits<double>::infinity();
      for (int i = 0; i < 95; ++i) {
        const double f = 1.0 - 0.01 * i, s = (hi - lo) * f / static_cast<double>(qmax);
        best_grid = std::min(best_grid, mse(xv, s, lo * f, 0, qmax));
      }
      CHECK(mse(xv, q.step().item<float>(), q.offset().item<float>(), 0, qmax) < 0.8 * best_grid);
      CHECK(q.offset().item<double>() > lo);  // beta moved inside the data range
    }
  }
  SECTION("data on a uniform grid: the grid is recovered exactly") {
    std::vector<float> data;
    for (int rep = 0; rep < 10; ++rep)
      for (int k = 0; k < 16; ++k) data.push_back(static_cast<float>(-1.2 + 0.3 * k));
    LsqPlusQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {at::tensor(data).reshape({10, 16})});
    CHECK(q.step().item<double>() == Approx(0.3).epsilon(1e-5));
    CHECK(q.offset().item<double>() == Approx(-1.2).margin(1e-5));
    CHECK(mse(data, q.step().item<float>(), q.offset().item<float>(), 0, 15) < 1e-10);
  }
  SECTION("Gaussian data with an outlier: no worse than any shrunk min/max candidate, far better than min/max") {
    at::manual_seed(24);
    for (int bits : {2, 3, 4, 8}) {
      INFO("bits " << bits);
      auto x = at::randn({20000});
      {
        at::NoGradGuard no_grad;
        x[123] = 40.0;
      }
      const auto xv = floats(x);
      LsqPlusQuantizer q(qbench::test::test_scheme(bits, Signedness::Auto), QatRole::Activation);
      observe_and_init(q, {x.reshape({10, 2000})});
      const int64_t qmax = qp_unsigned(bits);
      const double lo = *std::min_element(xv.begin(), xv.end()), hi = *std::max_element(xv.begin(), xv.end());
      const double got = mse(xv, q.step().item<float>(), q.offset().item<float>(), 0, qmax);
      double best_grid = std::numeric_limits<double>::infinity();
      for (int i = 0; i < 95; ++i) {
        const double f = 1.0 - 0.01 * i, s = (hi - lo) * f / static_cast<double>(qmax);
        best_grid = std::min(best_grid, mse(xv, s, lo * f, 0, qmax));
      }
      const double minmax = mse(xv, (hi - lo) / static_cast<double>(qmax), lo, 0, qmax);
      CHECK(got <= best_grid * (1 + 1e-4));
      // At low bit widths clipping the outlier pays off by far; at 8 bits min/max is about right.
      // The least-squares refinement beats the best shrunk candidate by a clear margin at low bits.
      if (bits <= 4) {
        CHECK(got < 0.5 * minmax);
        CHECK(got < 0.9 * best_grid);
      } else {
        CHECK(got <= minmax * (1 + 1e-4));
      }
    }
  }
}

TEST_CASE("lsq+: affine equivalent and edge cases", "[lsq+][lsq][numeric]") {
  SECTION("zero point = round(-beta / s), or none when it falls outside the integer range") {
    at::manual_seed(25);
    LsqPlusQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {at::randn({2, 100})});
    {
      at::NoGradGuard no_grad;
      q.step().fill_(0.2);
      q.offset().fill_(-1.0);
    }
    auto qp = q.affine_qparams();
    REQUIRE(qp.has_value());
    CHECK(qp->zero_point.item<int>() == 5);
    CHECK(qp->scale.item<float>() == 0.2f);
    {
      at::NoGradGuard no_grad;
      q.offset().fill_(+1.0);  // z = -5: outside [0, 15]
    }
    CHECK_FALSE(q.affine_qparams().has_value());
    CHECK(q.describe().find("beta=") != std::string::npos);
  }
  auto run = [](const at::Tensor& x) {
    LsqPlusQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
    observe_and_init(q, {x});
    auto y = forward_backward_finite(q, x);
    CHECK(q.step().item<double>() > 0.0);
    CHECK(std::isfinite(q.step().item<double>()));
    CHECK(std::isfinite(q.offset().item<double>()));
    CHECK(std::isfinite(q.step().grad().item<double>()));
    CHECK(std::isfinite(q.offset().grad().item<double>()));
    return std::make_tuple(q.step().item<double>(), q.offset().item<double>(), y);
  };
  SECTION("all-zero tensor: s floored at float epsilon, beta 0, exact zeros") {
    auto [s, b, y] = run(at::zeros({2, 3, 4}));
    CHECK(s == Approx(kLsqMinStep));
    CHECK(b == 0.0);
    CHECK(y.abs().max().item<double>() == 0.0);
  }
  SECTION("constant tensor and a single element are reproduced exactly") {
    auto [s, b, y] = run(at::full({2, 3, 4}, 3.0));
    CHECK(y.eq(3.0).all().item<bool>());
    auto [s1, b1, y1] = run(at::full({1, 1}, -2.5));
    CHECK(y1.item<double>() == -2.5);
  }
  SECTION("huge and tiny magnitudes stay finite") {
    at::manual_seed(26);
    auto [s, b, y] = run(at::randn({4, 16}) * 1e30);
    CHECK(s > 1e27);
    run(at::randn({4, 16}) * 1e-30);
  }
  SECTION("weights: all-zero gives the epsilon step") {
    LsqPlusQuantizer q(qbench::test::test_scheme(4, Signedness::Signed), QatRole::Weight);
    observe_and_init(q, {at::zeros({3, 3})});
    CHECK(q.step().item<double>() == Approx(kLsqMinStep));
  }
  SECTION("NaN at observe time, quantizing or computing too early, are errors") {
    LsqPlusQuantizer q(qbench::test::test_scheme(4, Signedness::Auto), QatRole::Activation);
    CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);
    CHECK_THROWS_AS(q.compute_qparams(), qbench::Error);
    q.set_observing(true);
    CHECK_THROWS_AS(q.forward(at::tensor({0.5f, NAN})), qbench::Error);
    LsqPlusQuantizer w(qbench::test::test_scheme(4, Signedness::Signed), QatRole::Weight);
    w.set_observing(true);
    CHECK_THROWS_AS(w.forward(at::tensor({0.5f, NAN})), qbench::Error);
  }
}
