// pipeline.qat.range_init: mse (issue 21). Every QAT method's init_range() must turn the MSE
// observer's grid into the method's own parameters so that the method starts as that grid:
//   - activations (unsigned, after a ReLU): the method's forward equals the grid's affine fake
//     quantization, element for element (the reference loop ref_fq);
//   - weights: the method's levels are spaced by the grid's step (its own level count around 0).
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qat_util.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/quantizer.h"
#include "scheme_util.h"

using namespace qbench;

namespace {

// The grid the shared MSE observer picks on x for `scheme`.
quant::QParams mse_grid(const quant::QuantScheme& scheme, const at::Tensor& x) {
  auto q = std::make_shared<quant::QuantizerImpl>(scheme, quant::observer_registry().get("mse").make(scheme));
  test::ready(q, x);
  return q->qparams();
}

// x's elements, each fake-quantized with the grid by the plain reference loop.
at::Tensor reference(const at::Tensor& x, const quant::QParams& qp) {
  const float s = qp.scale.item<float>();
  const int z = qp.zero_point.item<int>();
  std::vector<float> out;
  for (float v : test::floats(x)) out.push_back(test::ref_fq(v, s, z, qp.range.qmin, qp.range.qmax));
  return at::tensor(out).reshape(x.sizes());
}

// The method's quantizer readied on x (its own start), then restarted from the grid.
std::shared_ptr<quant::FakeQuantizer> restarted(std::shared_ptr<quant::FakeQuantizer> q, const at::Tensor& x,
                                                const quant::QParams& grid, bool expect_taken = true) {
  test::ready(q, x);
  torch::NoGradGuard ng;
  CHECK(q->init_range(grid) == expect_taken);
  return q;
}

// The distinct magnitudes of a tensor's values, ascending (rounded to 1e-6 of the largest).
std::vector<double> magnitudes(const at::Tensor& y) {
  auto v = test::floats(y.abs());
  double top = 0;
  for (float f : v) top = std::max(top, static_cast<double>(f));
  std::set<long long> seen;
  for (float f : v) seen.insert(std::llround(f / top * 1e6));
  std::vector<double> out;
  for (long long k : seen) out.push_back(static_cast<double>(k) * top / 1e6);
  return out;
}

}  // namespace

TEST_CASE("range_init: every method's activation quantizer starts as the MSE grid", "[qat][numeric]") {
  for (const char* name : {"lsq", "lsq+", "pact", "dsq", "dorefa", "apot", "qil"}) {
    for (int bits : {2, 3, 4}) {
      INFO(name << " " << bits << " bits");
      at::manual_seed(7 + bits);
      // A ReLU output with a long tail: the MSE range clips well inside the max.
      auto x = at::relu(at::randn({64, 8, 6, 6}) * 1.3 + 0.2);
      const auto scheme = test::test_scheme(bits, quant::Signedness::Auto);
      const auto grid = mse_grid(scheme, x);
      REQUIRE(grid.range.qmin == 0);  // unsigned
      REQUIRE(grid_range(grid).second.item<double>() < x.max().item<double>() * 0.9);  // it clips
      auto q = restarted(qat::qat_method_registry().get(name).make_activation(scheme), x, grid);
      at::Tensor y;
      {
        torch::NoGradGuard ng;
        y = q->forward(x);
      }
      const auto want = reference(x, grid);
      // Each method computes the grid its own way (x / s, x * n / alpha, (x - l) / delta, ...), so
      // an element exactly on a rounding boundary may round the other way: allow a handful.
      const double tol = grid.scale.item<double>() * 1e-4;
      const auto off = ((y - want).abs() > tol).sum().item<int64_t>();
      CHECK(off <= x.numel() / 2000);
      CHECK((y - want).abs().max().item<double>() <= grid.scale.item<double>() * 1.0001);
    }
  }
}

TEST_CASE("range_init: weight quantizers take the MSE grid's step over their own levels", "[qat][numeric]") {
  at::manual_seed(3);
  auto w = at::randn({16, 8, 3, 3}) * 0.05;
  for (int bits : {2, 3}) {
    const auto scheme = test::test_scheme(bits, quant::Signedness::Signed);
    const auto grid = mse_grid(scheme, w);
    const double step = grid.scale.item<double>();
    auto levels_of = [&](const char* name) {
      auto q = restarted(qat::qat_method_registry().get(name).make_weight(scheme), w, grid);
      torch::NoGradGuard ng;
      return magnitudes(q->forward(w));
    };
    INFO(bits << " bits, step " << step);
    SECTION("lsq: 0, s, 2s, ...") {
      const auto m = levels_of("lsq");
      REQUIRE(m.size() >= 2);
      CHECK(m[0] == Approx(0.0).margin(1e-9));
      for (size_t k = 1; k < m.size(); ++k) CHECK(m[k] == Approx(step * static_cast<double>(k)).epsilon(1e-4));
    }
    SECTION("dsq: (k + 1/2) s, no level at 0") {
      const auto m = levels_of("dsq");
      REQUIRE(m.size() == static_cast<size_t>(1 << (bits - 1)));
      for (size_t k = 0; k < m.size(); ++k) CHECK(m[k] == Approx(step * (static_cast<double>(k) + 0.5)).epsilon(1e-4));
    }
    SECTION("qil: 0, s, ..., q s with q = 2^(b-1) - 1") {
      const auto m = levels_of("qil");
      REQUIRE(m.size() == static_cast<size_t>(1 << (bits - 1)));
      for (size_t k = 0; k < m.size(); ++k) CHECK(m[k] == Approx(step * static_cast<double>(k)).margin(step * 1e-4));
    }
    SECTION("apot: the largest level is (2^(b-1) - 1) s") {
      const auto m = levels_of("apot");
      CHECK(m.back() == Approx(step * static_cast<double>((1 << (bits - 1)) - 1)).epsilon(1e-4));
      if (bits == 2) CHECK(m.size() == 2);  // ternary {0, s}
    }
  }
}

TEST_CASE("range_init: DoReFa's weights have no range to set and keep their own start", "[qat][numeric]") {
  at::manual_seed(4);
  auto w = at::randn({8, 4, 3, 3}) * 0.1;
  const auto scheme = test::test_scheme(2, quant::Signedness::Signed);
  auto own = test::ready(qat::qat_method_registry().get("dorefa").make_weight(scheme), w);
  auto q = restarted(qat::qat_method_registry().get("dorefa").make_weight(scheme), w, mse_grid(scheme, w), false);
  torch::NoGradGuard ng;
  CHECK(at::equal(q->forward(w), own->forward(w)));
}

TEST_CASE("range_init: init_range before compute_qparams is refused", "[qat][numeric]") {
  const auto scheme = test::test_scheme(4, quant::Signedness::Auto);
  auto x = at::rand({4, 10});
  const auto grid = mse_grid(scheme, x);
  for (const char* name : {"lsq", "lsq+", "pact", "dsq", "dorefa", "apot", "qil"}) {
    INFO(name);
    auto q = qat::qat_method_registry().get(name).make_activation(scheme);
    torch::NoGradGuard ng;
    CHECK_THROWS_WITH(q->init_range(grid), Catch::Contains("init_range() before compute_qparams()"));
  }
}
