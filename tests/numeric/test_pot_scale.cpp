// Power-of-two scales (QuantScheme::pot_scale): a fixed quantizer rounds its observer's scale up
// to 2^ceil(log2 s), never below 2^-pot_max_frac_bits; checked against hand-computed values.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "qbench/common/errors.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/quantizer.h"
#include "scheme_util.h"

using namespace qbench;

namespace {
quant::QParams calibrated(const quant::QuantScheme& s, const at::Tensor& x) {
  quant::QuantizerImpl q(s, quant::observer_registry().get("minmax").make(s));
  q.set_observing(true);
  q.forward(x);
  q.compute_qparams();
  return q.qparams();
}
}  // namespace

TEST_CASE("pot_scale rounds the minmax scale up to a power of two", "[numeric][pot]") {
  auto s = test::test_scheme(8);
  s.pot_scale = true;
  // max|x| = 3.0: minmax s = 3 / 127.5 = 0.02353 -> 2^-5 = 0.03125 (2^-6 = 0.0156 would clip).
  auto qp = calibrated(s, at::tensor({-3.0f, 1.0f, 2.5f}));
  CHECK(qp.scale.item<double>() == 0.03125);
  CHECK(qp.zero_point.item<int>() == 0);
  // An exact power of two stays: max|x| = 127.5 * 2^-3 -> s = 0.125.
  CHECK(calibrated(s, at::tensor({15.9375f, -1.0f})).scale.item<double>() == 0.125);
  // Unsigned (auto on non-negative data): s = 10 / 255 = 0.0392 -> 2^-4.
  s.signedness = quant::Signedness::Auto;
  auto qu = calibrated(s, at::tensor({0.0f, 10.0f}));
  CHECK(qu.range.qmin == 0);
  CHECK(qu.scale.item<double>() == 0.0625);
  // Tiny ranges are floored at 2^-max_frac_bits.
  s.pot_max_frac_bits = 12;
  CHECK(calibrated(s, at::tensor({1e-6f, 0.0f})).scale.item<double>() == std::ldexp(1.0, -12));
}

TEST_CASE("pot_scale per channel: one power of two per channel", "[numeric][pot]") {
  auto s = test::test_scheme(4, quant::Signedness::Signed, /*per_channel=*/true);
  s.narrow_range = true;
  s.pot_scale = true;
  // Narrow 4-bit: denominator 7. Channel maxima 1.0 -> 1/7 = 0.143 -> 0.25; 0.05 -> 0.00714 -> 2^-7.
  auto x = at::tensor({1.0f, -0.5f, 0.05f, -0.01f}).reshape({2, 2});
  auto qp = calibrated(s, x);
  REQUIRE(qp.scale.numel() == 2);
  CHECK(qp.scale[0].item<double>() == 0.25);
  CHECK(qp.scale[1].item<double>() == 0.0078125);
}

TEST_CASE("pot_scale refuses an asymmetric scheme", "[numeric][pot]") {
  auto s = test::test_scheme(8, quant::Signedness::Unsigned);
  s.symmetric = false;
  s.pot_scale = true;
  CHECK_THROWS_AS(calibrated(s, at::tensor({-1.0f, 2.0f})), Error);
}
