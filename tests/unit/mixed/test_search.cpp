// The mixed-precision search (lib/mixed/search.h) against brute-force enumeration: on random
// 6-layer problems, for a sweep of every budget alone and together, GLPK's optimum equals the
// enumerated one.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "qbench/common/errors.h"
#include "qbench/mixed/search.h"

using namespace qbench::mixed;
#define ContainsSubstring Catch::Matchers::Contains
using Catch::Matchers::WithinRel;

namespace {

/// Six layers, widths {2,3,4,8} x {4,8}, sensitivities that fall with the width (as quantization
/// error does, 4x per bit), random sizes; layers 2 and 3 read one activation, the first and the
/// last are fixed at w8a8 as a profile's first/last policy makes them; with a latency table.
std::vector<LayerChoices> random_problem(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> params(100, 20000), macs(1000, 500000), elems(100, 5000);
  std::uniform_real_distribution<double> u(0.1, 10.0);
  std::vector<LayerChoices> layers;
  for (int k = 0; k < 6; ++k) {
    LayerChoices l;
    l.name = "layer" + std::to_string(k);
    l.params = params(rng);
    l.macs = macs(rng);
    l.act_elems = (k == 3) ? 0 : elems(rng);  // layer 3 reads layer 2's edge
    const bool fixed = k == 0 || k == 5;
    l.w_bits = fixed ? std::vector<int>{8} : std::vector<int>{2, 3, 4, 8};
    l.a_bits = fixed ? std::vector<int>{8} : std::vector<int>{4, 8};
    const double sw = u(rng), sa = u(rng);
    for (int b : l.w_bits) l.w_sens.push_back(sw * std::pow(4.0, -b));
    for (int b : l.a_bits) l.a_sens.push_back(sa * std::pow(4.0, -b));
    if (k == 2 || k == 3) l.a_group = 1;
    for (int w : l.w_bits)
      for (int a : l.a_bits) l.latency_ms.push_back(1e-6 * l.macs * std::max(w, a) + 0.01 * u(rng));
    layers.push_back(l);
  }
  return layers;
}

void check_equal(const std::vector<LayerChoices>& layers, const Budget& b) {
  auto expect = brute_force(layers, b);
  if (!expect) {
    CHECK_THROWS_WITH(solve(layers, b), ContainsSubstring("no allocation meets the budget"));
    return;
  }
  Allocation got = solve(layers, b);
  CHECK_THAT(got.cost.sensitivity, WithinRel(expect->cost.sensitivity, 1e-7));
  // A different allocation may tie; it must meet the budget all the same.
  if (b.size_kb) CHECK(got.cost.size_kb <= *b.size_kb * (1 + 1e-9));
  if (b.bops_ratio) CHECK(got.cost.bops_ratio <= *b.bops_ratio * (1 + 1e-9));
  if (b.avg_w_bits) CHECK(got.cost.avg_w_bits <= *b.avg_w_bits * (1 + 1e-9));
  if (b.avg_a_bits) CHECK(got.cost.avg_a_bits <= *b.avg_a_bits * (1 + 1e-9));
  if (b.latency_ms) CHECK(got.cost.latency_ms <= *b.latency_ms * (1 + 1e-9));
  CHECK(got.a_bits[2] == got.a_bits[3]);  // one width per shared edge
}

}  // namespace

TEST_CASE("mixed search: the ILP optimum equals brute force for every budget of a sweep", "[mixed]") {
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u}) {
    const auto layers = random_problem(seed);
    const Cost lo = lowest_cost(layers), hi = highest_cost(layers);
    INFO("seed " << seed);
    for (int i = 0; i <= 10; ++i) {
      const double f = i / 10.0;
      INFO("fraction " << f);
      check_equal(layers, Budget{lo.size_kb + f * (hi.size_kb - lo.size_kb), {}, {}, {}, {}});
      check_equal(layers, Budget{{}, lo.bops_ratio + f * (hi.bops_ratio - lo.bops_ratio), {}, {}, {}});
      check_equal(layers, Budget{{}, {}, lo.avg_w_bits + f * (hi.avg_w_bits - lo.avg_w_bits), {}, {}});
      check_equal(layers, Budget{{}, {}, {}, lo.avg_a_bits + f * (hi.avg_a_bits - lo.avg_a_bits), {}});
      check_equal(layers, Budget{{}, {}, {}, {}, lo.latency_ms + f * (hi.latency_ms - lo.latency_ms)});
      // Several budgets at once, each at a different point of its range.
      const double g = 1.0 - f * 0.7;
      check_equal(layers, Budget{lo.size_kb + g * (hi.size_kb - lo.size_kb),
                                 lo.bops_ratio + f * (hi.bops_ratio - lo.bops_ratio), {},
                                 lo.avg_a_bits + g * (hi.avg_a_bits - lo.avg_a_bits), {}});
    }
  }
}

TEST_CASE("mixed search: a budget met exactly by the uniform model admits it", "[mixed]") {
  auto layers = random_problem(7);
  for (auto& l : layers) {  // every layer free, 3 bits the lowest: only uniform w3 has avg_w_bits 3
    l.w_bits = {3, 4, 8};
    l.a_bits = {8};
    l.w_sens = {4, 2, 1};
    l.a_sens = {0};
    l.latency_ms.clear();
    l.a_group = -1;
  }
  const Cost at3 = cost_of(layers, std::vector<int>(6, 3), std::vector<int>(6, 8));
  Allocation a = solve(layers, Budget{{}, {}, 3.0, {}, {}});
  CHECK(a.w_bits == std::vector<int>(6, 3));
  Allocation s = solve(layers, Budget{at3.size_kb, {}, {}, {}, {}});
  CHECK(s.w_bits == std::vector<int>(6, 3));
  // One step of slack lets a layer move up: the optimum then beats uniform.
  Allocation t = solve(layers, Budget{at3.size_kb * 1.5, {}, {}, {}, {}});
  CHECK(t.cost.sensitivity < at3.sensitivity);
}

TEST_CASE("mixed search: an unreachable budget names the reachable range", "[mixed]") {
  const auto layers = random_problem(3);
  const Cost lo = lowest_cost(layers);
  CHECK_THROWS_WITH(solve(layers, Budget{lo.size_kb * 0.9, {}, {}, {}, {}}),
                    ContainsSubstring("size_kb") && ContainsSubstring("reachable"));
  CHECK_THROWS_WITH(solve(layers, Budget{{}, {}, 1.5, {}, {}}), ContainsSubstring("avg_w_bits 1.5 (reachable"));
  // The lowest cost itself is reachable.
  CHECK_NOTHROW(solve(layers, Budget{lo.size_kb, {}, {}, {}, {}}));
}

TEST_CASE("mixed search: the Pareto front's sensitivity falls as the budget grows", "[mixed]") {
  const auto layers = random_problem(4);
  for (const char* dim : {"size_kb", "bops_ratio"}) {
    auto front = pareto_front(layers, dim, 9);
    REQUIRE(front.size() == 9);
    for (std::size_t i = 1; i < front.size(); ++i) {
      CHECK(front[i].budget > front[i - 1].budget);
      CHECK(front[i].allocation.cost.sensitivity <= front[i - 1].allocation.cost.sensitivity * (1 + 1e-9));
    }
    // Each point is the optimum at its budget.
    Budget b;
    (std::string(dim) == "size_kb" ? b.size_kb : b.bops_ratio) = front[4].budget;
    CHECK_THAT(front[4].allocation.cost.sensitivity, WithinRel(brute_force(layers, b)->cost.sensitivity, 1e-7));
  }
}

TEST_CASE("mixed search: inconsistent problems are refused", "[mixed]") {
  auto layers = random_problem(1);
  layers[3].a_bits = {8};
  layers[3].a_sens = {0};
  layers[3].latency_ms.resize(4);
  CHECK_THROWS_WITH(solve(layers, Budget{}), ContainsSubstring("read one activation"));
  layers = random_problem(1);
  layers[1].w_sens.pop_back();
  CHECK_THROWS_WITH(solve(layers, Budget{}), ContainsSubstring("one sensitivity per width"));
}
