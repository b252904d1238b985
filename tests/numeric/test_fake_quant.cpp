// Fake quantization and observers against plain scalar reference loops and finite differences.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "qbench/common/errors.h"
#include "qbench/quant/fake_quant.h"
#include "scheme_util.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/quantizer.h"

using namespace qbench::quant;
using qbench::test::ref_fq;
using qbench::test::scheme;

namespace {


}  // namespace

TEST_CASE("integer ranges follow the bit width, sign and narrow flag", "[quant][numeric]") {
  CHECK(integer_range(8, true, false).qmin == -128);
  CHECK(integer_range(8, true, false).qmax == 127);
  CHECK(integer_range(8, true, true).qmin == -127);
  CHECK(integer_range(4, false, false).qmax == 15);
  CHECK(integer_range(2, true, false).qmin == -2);
  CHECK(integer_range(2, true, false).qmax == 1);
  CHECK_THROWS_AS(integer_range(1, true, false), qbench::Error);
}

TEST_CASE("per-tensor fake quantization matches the scalar reference for every bit width", "[quant][numeric]") {
  at::manual_seed(1);
  auto x = at::randn({4, 3, 5, 5}) * 3.0;
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool sym : {true, false}) {
      auto sc = scheme(bits, sym, Signedness::Signed);
      MinMaxObserver obs(sc);
      obs.update(x);
      auto qp = obs.compute();
      auto y = fake_quantize(x, qp);
      const float s = qp.scale.item<float>();
      const int z = qp.zero_point.item<int>();
      auto xa = x.contiguous();
      auto ya = y.contiguous();
      const float* px = xa.data_ptr<float>();
      const float* py = ya.data_ptr<float>();
      int64_t mismatches = 0;
      for (int64_t i = 0; i < x.numel(); ++i)
        if (std::fabs(py[i] - ref_fq(px[i], s, z, qp.range.qmin, qp.range.qmax)) > 1e-6f * std::max(1.f, std::fabs(py[i])))
          ++mismatches;
      INFO("bits " << bits << " sym " << sym);
      CHECK(mismatches == 0);
      // Distinct output values never exceed the number of integer levels.
      CHECK(std::get<0>(at::_unique(y)).numel() <= (int64_t(1) << bits));
    }
  }
}

TEST_CASE("symmetric and asymmetric scales follow PyTorch's observer formulas", "[quant][numeric]") {
  auto x = at::tensor({-1.0f, 0.5f, 3.0f});
  // Symmetric signed 8-bit: s = max|x| / ((127 - (-128)) / 2) = 3 / 127.5.
  auto qs = qparams_from_minmax(x.min(), x.max(), scheme(8, true, Signedness::Signed), -1);
  CHECK(qs.scale.item<float>() == Approx(3.0 / 127.5).epsilon(1e-6));
  CHECK(qs.zero_point.item<int>() == 0);
  // Asymmetric 4-bit unsigned: s = (3 - (-1)) / 15, z = 0 - round(-1 / s) = round(3.75) = 4.
  auto qa = qparams_from_minmax(x.min(), x.max(), scheme(4, false, Signedness::Unsigned), -1);
  CHECK(qa.scale.item<float>() == Approx(4.0 / 15.0).epsilon(1e-6));
  CHECK(qa.zero_point.item<int>() == 4);
  // Auto signedness: non-negative input -> unsigned [0, 2^b - 1] with s = max / (2^b - 1).
  auto pos = at::tensor({0.0f, 1.0f, 2.55f});
  auto qu = qparams_from_minmax(pos.min(), pos.max(), scheme(8, true, Signedness::Auto), -1);
  CHECK(qu.range.qmin == 0);
  CHECK(qu.range.qmax == 255);
  CHECK(qu.scale.item<float>() == Approx(2.55 / 255.0).epsilon(1e-6));
  // ... and signed input keeps the signed range.
  auto qn = qparams_from_minmax(x.min(), x.max(), scheme(8, true, Signedness::Auto), -1);
  CHECK(qn.range.qmin == -128);
  // Narrow range: s = max|x| / 127.
  auto qw = qparams_from_minmax(x.min(), x.max(), scheme(8, true, Signedness::Signed, false, true), -1);
  CHECK(qw.scale.item<float>() == Approx(3.0 / 127.0).epsilon(1e-6));
}

TEST_CASE("per-channel fake quantization quantizes each channel with its own range", "[quant][numeric]") {
  at::manual_seed(2);
  auto w = at::randn({6, 3, 3, 3});
  w[0].mul_(10.0);  // one channel with a much larger range must not coarsen the others
  auto sc = scheme(4, true, Signedness::Signed, true);
  MinMaxObserver obs(sc);
  obs.update(w);
  auto qp = obs.compute();
  REQUIRE(qp.scale.numel() == 6);
  auto y = fake_quantize(w, qp);
  for (int64_t c = 0; c < 6; ++c) {
    const float amax = w[c].abs().max().item<float>();
    const float s = amax / 7.5f;
    CHECK(qp.scale[c].item<float>() == Approx(s).epsilon(1e-5));
    auto wc = w[c].contiguous();
    auto yc = y[c].contiguous();
    for (int64_t i = 0; i < wc.numel(); ++i)
      CHECK(yc.data_ptr<float>()[i] == Approx(ref_fq(wc.data_ptr<float>()[i], s, 0, -8, 7)).margin(1e-5));
  }
  // The per-tensor error would be dominated by channel 0; per-channel keeps channel 1 fine.
  const double err_pc = (y[1] - w[1]).abs().max().item<double>();
  CHECK(err_pc <= qp.scale[1].item<float>() / 2 + 1e-6);
}

TEST_CASE("the backward pass is the straight-through estimator (finite differences)", "[quant][numeric]") {
  // Inside the clipping range d x'/dx = 1 (STE); outside it is 0. Finite differences of the
  // *un-rounded* clamp agree with that away from the clip boundaries.
  auto x = at::tensor({-5.0f, -0.33f, 0.0f, 0.41f, 0.9f, 5.0f}).set_requires_grad(true);
  QParams qp;
  qp.scale = at::tensor(0.1f);
  qp.zero_point = at::tensor(0, at::kInt);
  qp.range = integer_range(4, true, false);  // [-8, 7] -> float range [-0.8, 0.7]
  auto y = fake_quantize(x, qp);
  y.sum().backward();
  auto g = x.grad();
  const float expected[6] = {0, 1, 1, 1, 0, 0};
  const double h = 1e-3;
  for (int i = 0; i < 6; ++i) {
    const double xi = x[i].item<double>();
    auto clampf = [](double v) { return std::min(0.7, std::max(-0.8, v)); };
    const double fd = (clampf(xi + h) - clampf(xi - h)) / (2 * h);
    CHECK(g[i].item<float>() == Approx(expected[i]));
    CHECK(fd == Approx(expected[i]).margin(1e-6));
  }
}

TEST_CASE("edge cases: zeros, constants, one element, huge and tiny magnitudes, NaN", "[quant][numeric]") {
  auto sc = scheme(8, true, Signedness::Signed);
  SECTION("all-zero tensor gives the epsilon scale and exact zeros") {
    MinMaxObserver o(sc);
    auto z = at::zeros({10});
    o.update(z);
    auto qp = o.compute();
    CHECK(qp.scale.item<float>() == Approx(std::numeric_limits<float>::epsilon()));
    CHECK(fake_quantize(z, qp).abs().max().item<float>() == 0.0f);
  }
  SECTION("constant tensor is reproduced within half a step") {
    MinMaxObserver o(sc);
    auto c = at::full({7}, 2.5f);
    o.update(c);
    auto qp = o.compute();
    CHECK((fake_quantize(c, qp) - c).abs().max().item<float>() <= qp.scale.item<float>() / 2 + 1e-7f);
  }
  SECTION("single element") {
    MinMaxObserver o(sc);
    auto c = at::tensor({-0.75f});
    o.update(c);
    auto qp = o.compute();
    CHECK(fake_quantize(c, qp).item<float>() == Approx(-0.75f).epsilon(1e-2));
  }
  SECTION("huge and tiny magnitudes stay finite") {
    for (float mag : {1e30f, 1e-30f}) {
      MinMaxObserver o(sc);
      auto c = at::tensor({-mag, mag / 3, mag});
      o.update(c);
      auto qp = o.compute();
      auto y = fake_quantize(c, qp);
      CHECK(at::isfinite(y).all().item<bool>());
      CHECK(std::isfinite(qp.scale.item<float>()));
    }
  }
  SECTION("NaN or Inf input is an error, not a NaN scale") {
    MinMaxObserver o(sc);
    auto bad = at::tensor({1.0f, std::nanf(""), 2.0f});
    CHECK_THROWS_AS(o.update(bad), qbench::Error);
    auto inf = at::tensor({1.0f, std::numeric_limits<float>::infinity()});
    CHECK_THROWS_AS(o.update(inf), qbench::Error);
  }
  SECTION("computing before observing is an error") {
    MinMaxObserver o(sc);
    CHECK_THROWS_AS(o.compute(), qbench::Error);
  }
}

TEST_CASE("the quantizer module observes, freezes and then quantizes", "[quant][numeric]") {
  auto sc = scheme(4, true, Signedness::Signed);
  QuantizerImpl q(sc, std::make_unique<MinMaxObserver>(sc));
  auto x = at::linspace(-1, 1, 101);
  CHECK_THROWS_AS(q.set_quantizing(true), qbench::Error);  // not calibrated yet
  q.set_observing(true);
  CHECK(at::equal(q.forward(x), x));  // observing only: identity
  q.set_observing(false);
  q.compute_qparams();
  q.set_quantizing(true);
  auto y = q.forward(x);
  CHECK(std::get<0>(at::_unique(y)).numel() <= 16);
  // Frozen: a wider input later does not move the scale.
  auto s0 = q.qparams().scale.item<float>();
  q.forward(x * 10);
  CHECK(q.qparams().scale.item<float>() == s0);
}
