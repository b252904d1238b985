// The range observers (ema-minmax, mse, percentile, clip-std, kl, lsq-init, lsq+-init, pot) against
// plain reference computations written here as loops over floats/doubles, plus edge cases.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/quant/observer.h"
#include "qbench/quant/observers_extra.h"
#include "scheme_util.h"

using namespace qbench::quant;
using qbench::test::ref_fq;
using qbench::test::scheme;

namespace {


/// mean |fq(x) - x|^p over `xs`.
double lp_error(const std::vector<float>& xs, float s, int z, int64_t qmin, int64_t qmax, double p = 2.0) {
  double e = 0.0;
  for (float x : xs) e += std::pow(std::fabs(static_cast<double>(ref_fq(x, s, z, qmin, qmax)) - x), p);
  return e / static_cast<double>(xs.size());
}

std::vector<float> values(const at::Tensor& t) {
  auto c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}


std::unique_ptr<Observer> make(const std::string& name, const QuantScheme& s) {
  return observer_registry().get(name).make(s);
}

const std::vector<std::string> kExtra = {"ema-minmax", "mse", "percentile", "clip-std",
                                         "kl",         "lsq-init", "lsq+-init", "pot"};

/// Heavy-tailed data: Gaussian with a few large outliers, so clipping observers have work to do.
at::Tensor heavy_tailed(int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  auto x = at::randn({n});
  x.index_put_({at::arange(0, n, n / 8)}, at::randn({(n + n / 8 - 1) / (n / 8)}) * 12.0);
  return x;
}

/// Divergence of the entropy calibration, written independently: groups as index ranges
/// [ceil(g i / L), ceil((g+1) i / L)), which are exactly the bins j with floor(j L / i) == g.
double ref_kl(const std::vector<double>& h, int64_t L, int64_t i) {
  const int64_t n = static_cast<int64_t>(h.size());
  std::vector<double> p(h.begin(), h.begin() + i), q(static_cast<std::size_t>(i), 0.0);
  for (int64_t j = i; j < n; ++j) p[i - 1] += h[j];
  for (int64_t g = 0; g < L; ++g) {
    const int64_t a = (g * i + L - 1) / L, b = ((g + 1) * i + L - 1) / L;
    double sum = 0.0;
    int64_t nonzero = 0;
    for (int64_t j = a; j < b; ++j) {
      sum += h[j];
      nonzero += h[j] != 0.0;
    }
    for (int64_t j = a; j < b; ++j)
      if (h[j] != 0.0) q[j] = sum / nonzero;
  }
  const double ps = std::accumulate(p.begin(), p.end(), 0.0), qs = std::accumulate(q.begin(), q.end(), 0.0);
  double kl = 0.0;
  for (int64_t j = 0; j < i; ++j) {
    if (p[j] == 0.0) continue;
    if (q[j] == 0.0) return std::numeric_limits<double>::infinity();
    kl += (p[j] / ps) * std::log((p[j] / ps) / (q[j] / qs));
  }
  return kl;
}

}  // namespace

TEST_CASE("every extra observer is registered and names itself", "[observer][numeric]") {
  for (const auto& n : kExtra) {
    INFO(n);
    REQUIRE(observer_registry().contains(n));
    CHECK_FALSE(observer_registry().get(n).description.empty());
    auto o = make(n, scheme(8, true, Signedness::Signed));
    CHECK(o->name() == n);
    CHECK_FALSE(o->observed());
    CHECK_THROWS_AS(o->compute(), qbench::Error);  // nothing observed
  }
}

TEST_CASE("ema-minmax: the first batch sets the range, later ones move it by 10%", "[observer][numeric]") {
  auto a = at::tensor({-1.0f, 0.5f, 2.0f}), b = at::tensor({-3.0f, 1.0f, 6.0f}), c = at::tensor({0.0f, 4.0f});
  auto s = scheme(8, false, Signedness::Signed);
  EmaMinMaxObserver o(s);
  o.update(a);
  CHECK(o.min_val().item<float>() == -1.0f);
  CHECK(o.max_val().item<float>() == 2.0f);
  o.update(b);
  o.update(c);
  double mn = -1.0, mx = 2.0;
  mn = 0.9 * mn + 0.1 * -3.0, mx = 0.9 * mx + 0.1 * 6.0;
  mn = 0.9 * mn + 0.1 * 0.0, mx = 0.9 * mx + 0.1 * 4.0;
  CHECK(o.min_val().item<double>() == Approx(mn).epsilon(1e-6));
  CHECK(o.max_val().item<double>() == Approx(mx).epsilon(1e-6));
  auto qp = o.compute();
  // Asymmetric signed 8-bit: s = (max - min) / 255, z = -128 - round(min / s).
  const double sc = (mx - mn) / 255.0;
  CHECK(qp.scale.item<double>() == Approx(sc).epsilon(1e-6));
  CHECK(qp.zero_point.item<int>() == static_cast<int>(-128 - std::nearbyint(mn / sc)));

  SECTION("per channel keeps one EMA per channel") {
    auto sc2 = scheme(8, true, Signedness::Signed, true);
    EmaMinMaxObserver pc(sc2);
    auto w1 = at::tensor({1.0f, -2.0f, 3.0f, 4.0f}).reshape({2, 2});
    auto w2 = at::tensor({5.0f, -2.0f, 0.0f, 0.0f}).reshape({2, 2});
    pc.update(w1);
    pc.update(w2);
    REQUIRE(pc.max_val().sizes() == at::IntArrayRef({2}));
    CHECK(pc.max_val()[0].item<double>() == Approx(0.9 * 1 + 0.1 * 5));
    CHECK(pc.min_val()[0].item<double>() == Approx(-2.0));
    CHECK(pc.max_val()[1].item<double>() == Approx(0.9 * 4 + 0.1 * 0));
    CHECK(pc.min_val()[1].item<double>() == Approx(0.9 * 3 + 0.1 * 0));
    auto q = pc.compute();
    CHECK(q.ch_axis == 0);
    CHECK(q.scale.sizes() == at::IntArrayRef({2}));
  }
}

TEST_CASE("mse (per tensor): the chosen range is the argmin of the Lp error over all 95 candidates",
          "[observer][numeric][mse]") {
  auto x1 = heavy_tailed(3000, 3), x2 = heavy_tailed(2000, 4) * 0.5;
  std::vector<float> data = values(x1), d2 = values(x2);
  data.insert(data.end(), d2.begin(), d2.end());
  const float mn = *std::min_element(data.begin(), data.end()), mx = *std::max_element(data.begin(), data.end());

  for (double p : {2.0, 2.4, 1.0}) {
    for (bool sym : {true, false}) {
      INFO("p " << p << " sym " << sym);
      auto s = scheme(4, sym, Signedness::Signed);
      MseObserver o(s, p);
      o.update(x1);
      o.update(x2);
      REQUIRE(o.candidates() == 95);
      CHECK(o.sample().numel() == 5000);  // under the cap: everything kept
      auto qp = o.compute();
      const float so = qp.scale.item<float>();
      const int zo = qp.zero_point.item<int>();
      const double chosen = lp_error(data, so, zo, qp.range.qmin, qp.range.qmax, p);
      double best = std::numeric_limits<double>::infinity();
      bool scale_is_a_candidate = false;
      for (int i = 0; i < 95; ++i) {
        const double f = 1.0 - 0.01 * i;
        float sc;
        int z;
        if (sym) {  // 4-bit signed: s = max|x| / ((7 - (-8)) / 2)
          sc = static_cast<float>(std::max(-mn * f, mx * f) / 7.5);
          z = 0;
        } else {  // s = (max - min) / 15, z = -8 - round(min / s)
          sc = static_cast<float>((mx * f - mn * f) / 15.0);
          z = static_cast<int>(std::clamp(-8.0 - std::nearbyint(mn * f / sc), -8.0, 7.0));
        }
        best = std::min(best, lp_error(data, sc, z, -8, 7, p));
        if (std::fabs(sc - so) <= 1e-6f * sc) scale_is_a_candidate = true;
      }
      CHECK(scale_is_a_candidate);
      CHECK(chosen <= best * (1.0 + 1e-5) + 1e-12);
      // Shrinking pays off on heavy tails: better than the full range (candidate 0).
      const float s0 = static_cast<float>(sym ? std::max(-mn, mx) / 7.5 : (mx - mn) / 15.0);
      CHECK(so < s0);
    }
  }
}

TEST_CASE("mse (per channel): each channel's range is its own argmin over 80 candidates", "[observer][numeric][mse]") {
  at::manual_seed(11);
  auto w = at::randn({6, 4, 3, 3});
  w.index_put_({0, 0, 0, 0}, 9.0);   // an outlier in channel 0
  w.index_put_({3}, w.index({3}) * 0.01);  // a small channel
  auto s = scheme(3, true, Signedness::Signed, true, true);  // narrow: [-3, 3]
  MseObserver o(s);
  o.update(w);
  REQUIRE(o.candidates() == 80);
  auto qp = o.compute();
  REQUIRE(qp.scale.sizes() == at::IntArrayRef({6}));
  CHECK(qp.ch_axis == 0);
  CHECK(qp.range.qmin == -3);
  CHECK(qp.range.qmax == 3);
  for (int64_t c = 0; c < 6; ++c) {
    auto row = values(w[c]);
    const float mn = *std::min_element(row.begin(), row.end()), mx = *std::max_element(row.begin(), row.end());
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 80; ++i) {
      const double f = 1.0 - 0.01 * i;
      const float sc = static_cast<float>(std::max(-mn * f, mx * f) / 3.0);  // symmetric narrow: (3 - -3) / 2
      best = std::min(best, lp_error(row, sc, 0, -3, 3));
    }
    const double chosen = lp_error(row, qp.scale[c].item<float>(), 0, -3, 3);
    INFO("channel " << c);
    CHECK(qp.zero_point[c].item<int>() == 0);
    CHECK(chosen <= best * (1.0 + 1e-5) + 1e-15);
  }
}

TEST_CASE("mse: the fused search picks the composed search's candidate, at 1 and 2 threads",
          "[observer][numeric][mse]") {
  const int threads = at::get_num_threads();
  struct Case {
    int bits;
    bool sym, per_channel, narrow;
    Signedness sg;
    double p;
  };
  const std::vector<Case> cases = {
      {4, true, false, false, Signedness::Signed, 2.4},    {4, false, false, false, Signedness::Signed, 2.4},
      {2, true, false, false, Signedness::Signed, 2.0},    {3, false, false, false, Signedness::Unsigned, 1.0},
      {8, true, false, true, Signedness::Signed, 2.4},     {4, true, true, false, Signedness::Signed, 2.4},
      {3, true, true, true, Signedness::Signed, 2.0},      {4, false, true, false, Signedness::Signed, 1.0},
      {5, false, false, false, Signedness::Auto, 3.0}};
  int k = 0;
  for (const auto& c : cases) {
    ++k;
    // Heavy tails, a ragged length (not a multiple of the kernel's 16 lanes), and for the
    // non-negative case a ReLU'd tensor; per channel, channels of different magnitudes.
    at::Tensor x = c.per_channel ? heavy_tailed(7 * 1237, 40 + k).reshape({7, 1237}) *
                                       at::linspace(0.05, 3.0, 7).reshape({7, 1})
                                 : heavy_tailed(50003, 40 + k);
    if (c.sg == Signedness::Unsigned) x = at::relu(x);
    auto s = scheme(c.bits, c.sym, c.sg, c.per_channel, c.narrow);
    INFO("case " << k << ": bits " << c.bits << " sym " << c.sym << " per-channel " << c.per_channel << " p " << c.p);
    MseObserver o(s, c.p);
    const int64_t d = c.per_channel ? 1 : 0, half = x.size(d) / 2;  // two batches
    o.update(x.narrow(d, 0, half));
    o.update(x.narrow(d, half, x.size(d) - half));
    const auto ref = o.compute_composed();
    for (int t : {1, 2}) {
      at::set_num_threads(t);
      const auto got = o.compute();
      INFO("threads " << t);
      CHECK(at::equal(got.scale, ref.scale));
      CHECK(at::equal(got.zero_point, ref.zero_point));
      CHECK(got.range.qmin == ref.range.qmin);
      CHECK(got.range.qmax == ref.range.qmax);
    }
  }
  at::set_num_threads(threads);
}

TEST_CASE("mse keeps a bounded sample in which every batch keeps its share", "[observer][numeric][mse]") {
  MseObserver o(scheme(8, true, Signedness::Signed), 2.0, /*max_samples=*/4096);
  o.update(at::full({6000}, 1.0f));
  CHECK(o.sample().numel() == 4096);
  o.update(at::full({6000}, -1.0f));
  o.update(at::full({12000}, 2.0f));
  auto v = values(o.sample());
  CHECK(static_cast<int64_t>(v.size()) <= 4096);
  CHECK(v.size() >= 4090);
  const double n = static_cast<double>(v.size());
  CHECK(std::count(v.begin(), v.end(), 1.0f) / n == Approx(0.25).margin(0.002));
  CHECK(std::count(v.begin(), v.end(), -1.0f) / n == Approx(0.25).margin(0.002));
  CHECK(std::count(v.begin(), v.end(), 2.0f) / n == Approx(0.5).margin(0.002));
}

TEST_CASE("percentile: clip at the |x| quantile from a 2048-bin histogram, EMA across batches",
          "[observer][numeric][percentile]") {
  auto x1 = heavy_tailed(20000, 5), x2 = heavy_tailed(10000, 6) * 2.0;
  const double quantile = 0.999;
  // Reference per batch: bin = floor(|x| / amax * 2048) (the max in the last bin), then the
  // cumulative count with linear interpolation inside the bin that crosses quantile * n.
  auto ref_range = [&](const std::vector<float>& v, double& lo, double& hi, double& width) {
    const double mn = *std::min_element(v.begin(), v.end()), mx = *std::max_element(v.begin(), v.end());
    const double amax = std::max(-mn, mx);
    std::vector<double> h(2048, 0.0);
    for (float x : v) h[std::min<int64_t>(2047, static_cast<int64_t>(std::fabs(x) / amax * 2048))] += 1;
    const double target = quantile * v.size();
    double cum = 0, clip = amax;
    for (int b = 0; b < 2048; ++b) {
      if (h[b] > 0 && cum + h[b] >= target) {
        clip = (b + (target - cum) / h[b]) * amax / 2048;
        break;
      }
      cum += h[b];
    }
    lo = std::max(mn, -clip);
    hi = std::min(mx, clip);
    width = amax / 2048;
  };
  double lo1, hi1, w1, lo2, hi2, w2;
  ref_range(values(x1), lo1, hi1, w1);
  ref_range(values(x2), lo2, hi2, w2);
  const double lo = 0.9 * lo1 + 0.1 * lo2, hi = 0.9 * hi1 + 0.1 * hi2, tol = 0.9 * w1 + 0.1 * w2;

  PercentileObserver o(scheme(8, false, Signedness::Signed), quantile);
  o.update(x1);
  CHECK(o.min_val().item<double>() == Approx(lo1).margin(w1));
  CHECK(o.max_val().item<double>() == Approx(hi1).margin(w1));
  CHECK(hi1 < values(x1.max())[0]);  // the outliers were clipped
  o.update(x2);
  CHECK(o.min_val().item<double>() == Approx(lo).margin(tol));
  CHECK(o.max_val().item<double>() == Approx(hi).margin(tol));
  auto qp = o.compute();
  CHECK(qp.scale.item<double>() == Approx((o.max_val().item<double>() - o.min_val().item<double>()) / 255.0).epsilon(1e-5));

  SECTION("the registered default clips at 0.99999") {
    auto def = make("percentile", scheme(8, false, Signedness::Signed));
    def->update(x1);
    auto* p = dynamic_cast<PercentileObserver*>(def.get());
    REQUIRE(p != nullptr);
    // 0.99999 of 20000 is 19999.8 values: the clip sits inside the largest |x|'s bin.
    const double amax = values(x1.abs().max())[0];
    CHECK(std::max(-p->min_val().item<double>(), p->max_val().item<double>()) == Approx(amax).margin(amax / 2048));
  }
  SECTION("per channel along axis 1 clips each channel on its own") {
    at::manual_seed(8);
    auto act = at::randn({16, 3, 8, 8});
    PercentileObserver pc(scheme(8, false, Signedness::Signed, true, false, 1), 0.9);
    pc.update(act);
    REQUIRE(pc.max_val().sizes() == at::IntArrayRef({3}));
    // At quantile 0.9 each channel's clip is near the 90th percentile of its |x| (~1.645 for N(0,1)).
    for (int64_t c = 0; c < 3; ++c) {
      auto v = values(act.select(1, c).abs().flatten());
      std::sort(v.begin(), v.end());
      const double q90 = v[static_cast<std::size_t>(0.9 * v.size()) - 1];
      CHECK(pc.max_val()[c].item<double>() == Approx(q90).margin(0.05));
    }
  }
}

TEST_CASE("clip-std: mean +- 2.6 sigma over all batches, within the observed range", "[observer][numeric][clip-std]") {
  at::manual_seed(9);
  auto x1 = at::randn({4000}) * 2.0 + 0.5, x2 = heavy_tailed(3000, 10);
  std::vector<float> all = values(x1), v2 = values(x2);
  all.insert(all.end(), v2.begin(), v2.end());
  double sum = 0, sq = 0;
  for (float v : all) sum += v;
  const double mu = sum / all.size();
  for (float v : all) sq += (v - mu) * (v - mu);
  const double sigma = std::sqrt(sq / all.size());
  const double lo = std::max<double>(*std::min_element(all.begin(), all.end()), mu - 2.6 * sigma);
  const double hi = std::min<double>(*std::max_element(all.begin(), all.end()), mu + 2.6 * sigma);

  ClipStdObserver o(scheme(8, false, Signedness::Signed));
  o.update(x1);
  o.update(x2);
  auto qp = o.compute();
  const double sc = (hi - lo) / 255.0;
  CHECK(qp.scale.item<double>() == Approx(sc).epsilon(1e-5));
  CHECK(qp.zero_point.item<int>() == static_cast<int>(-128 - std::nearbyint(lo / sc)));

  SECTION("symmetric narrow goes through the same qparams path") {
    ClipStdObserver n(scheme(8, true, Signedness::Signed, false, true));
    n.update(x1);
    n.update(x2);
    auto q = n.compute();
    CHECK(q.range.qmin == -127);
    CHECK(q.scale.item<double>() == Approx(std::max(-lo, hi) / 127.0).epsilon(1e-5));
    CHECK(q.zero_point.item<int>() == 0);
  }
  SECTION("uniform data: 2.6 sigma lies beyond the data, so the range is min / max") {
    auto u = at::linspace(-1.0, 1.0, 1001);
    ClipStdObserver c(scheme(8, true, Signedness::Signed));
    c.update(u);
    MinMaxObserver m(scheme(8, true, Signedness::Signed));
    m.update(u);
    CHECK(c.compute().scale.item<float>() == m.compute().scale.item<float>());
  }
}

TEST_CASE("kl: the divergence and the search match an independent reference on small histograms",
          "[observer][numeric][kl]") {
  // A case worked by hand: hist {1, 0, 2, 1}, 2 levels, i = 4: P = {1, 0, 2, 1} / 4,
  // Q = {1, 0, 1.5, 1.5} / 4, KL = 0.5 ln(4/3) + 0.25 ln(2/3).
  CHECK(kl_divergence_at({1, 0, 2, 1}, 2, 4) == Approx(0.5 * std::log(4.0 / 3.0) + 0.25 * std::log(2.0 / 3.0)));
  // i = 3: P = {1, 0, 2 + 1} / 4; Q groups {0}, {1, 2} -> {1, 0, 2} / 3.
  CHECK(kl_divergence_at({1, 0, 2, 1}, 2, 3) == Approx(0.25 * std::log(0.75) + 0.75 * std::log(0.75 / (2.0 / 3.0))));
  // Mass on an empty last bin (outliers onto a zero bin) cannot be represented by Q.
  CHECK(std::isinf(kl_divergence_at({1, 2, 0, 1}, 2, 3)));

  std::mt19937 gen(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 48 + trial, levels = trial % 2 ? 4 : 8, start = 8;
    std::vector<double> h(static_cast<std::size_t>(n));
    std::geometric_distribution<int> geo(0.05 + 0.01 * trial);
    for (auto& v : h) v = (gen() % 5 == 0) ? 0.0 : static_cast<double>(geo(gen));
    if (std::accumulate(h.begin(), h.end(), 0.0) == 0.0) h[0] = 1;
    double best = std::numeric_limits<double>::infinity();
    int64_t best_i = -1;
    for (int64_t i = start; i <= n; ++i) {
      const double r = ref_kl(h, levels, i), d = kl_divergence_at(h, levels, i);
      if (std::isinf(r)) {
        CHECK(std::isinf(d));
      } else {
        CHECK(d == Approx(r).epsilon(1e-9).margin(1e-12));
      }
      if (r <= best) {
        best = r;
        best_i = i;
      }
    }
    const int64_t got = kl_threshold_bin(h, levels, start);
    INFO("trial " << trial);
    // Equal up to rounding (the library sums by groups, the reference bin by bin): the chosen i's
    // divergence is the minimum.
    CHECK(ref_kl(h, levels, got) <= best + 1e-10);
    if (got != best_i) CHECK(ref_kl(h, levels, got) == Approx(best).margin(1e-10));
  }
  CHECK_THROWS_AS(kl_threshold_bin({}, 4, 1), qbench::Error);
  CHECK_THROWS_AS(kl_threshold_bin({0, 0, 0}, 4, 1), qbench::Error);
  CHECK(kl_threshold_bin({5, 1, 1}, 4, 100) == 3);  // start past the end: the whole histogram
}

TEST_CASE("kl observer: 2048-bin |x| histogram, exact range doubling, threshold from the search",
          "[observer][numeric][kl]") {
  auto x1 = heavy_tailed(30000, 12);
  auto s = scheme(4, true, Signedness::Signed);
  KlObserver o(s);
  o.update(x1);
  REQUIRE(o.histograms().size() == 1);
  const std::vector<double> h = o.histograms()[0];  // a copy: later updates change the observer's
  REQUIRE(h.size() == 2048);
  const double range = o.hist_ranges()[0];
  CHECK(range == Approx(values(x1.abs().max())[0]));
  CHECK(std::accumulate(h.begin(), h.end(), 0.0) == 30000.0);
  // Against a loop histogram: identical but for values sitting on a bin edge.
  std::vector<double> ref(2048, 0.0);
  for (float v : values(x1)) ref[std::min<int64_t>(2047, static_cast<int64_t>(std::fabs(v) / range * 2048))] += 1;
  double diff = 0;
  for (int j = 0; j < 2048; ++j) diff += std::fabs(ref[j] - h[j]);
  CHECK(diff <= 4);

  // The threshold: the reference search on the histogram with bin 0 replaced by bin 1, 2^(4-1) levels.
  std::vector<double> hz = h;
  hz[0] = hz[1];
  double best = std::numeric_limits<double>::infinity();
  for (int64_t i = 128; i <= 2048; ++i) best = std::min(best, ref_kl(hz, 8, i));
  const double t = o.thresholds()[0];
  const int64_t i_got = std::llround(t / range * 2048);
  CHECK(ref_kl(hz, 8, i_got) <= best + 1e-10);
  CHECK(t < range);  // the outliers are clipped
  auto qp = o.compute();
  CHECK(qp.scale.item<double>() == Approx(t / 7.5).epsilon(1e-5));  // symmetric 4-bit: t / ((7 + 8) / 2)

  SECTION("a later batch beyond the range doubles it by merging bin pairs") {
    auto x2 = at::tensor({3.5f * static_cast<float>(range), 0.1f});
    o.update(x2);
    const auto& h2 = o.histograms()[0];
    CHECK(o.hist_ranges()[0] == Approx(4 * range));
    CHECK(std::accumulate(h2.begin(), h2.end(), 0.0) == 30002.0);
    for (int j = 0; j < 512; ++j) {
      const double merged = h[4 * j] + h[4 * j + 1] + h[4 * j + 2] + h[4 * j + 3];
      const double extra = (j == static_cast<int>(0.1 / (4 * range) * 2048)) ? 1.0 : 0.0;
      if (h2[j] != merged + extra) FAIL("bin " << j << ": " << h2[j] << " vs " << merged + extra);
    }
    CHECK(h2[1791] + h2[1792] == 1.0);  // 3.5 r of 4 r: on the edge of bin 1792, float rounding decides
  }
  SECTION("unsigned activations use 2^b levels") {
    KlObserver u(scheme(4, true, Signedness::Auto));
    auto relu = x1.clamp_min(0);
    u.update(relu);
    const auto& hu = u.histograms()[0];
    std::vector<double> hz2 = hu;
    hz2[0] = hz2[1];
    const double tu = u.thresholds()[0];
    const int64_t iu = std::llround(tu / u.hist_ranges()[0] * 2048);
    double bu = std::numeric_limits<double>::infinity();
    for (int64_t i = 128; i <= 2048; ++i) bu = std::min(bu, ref_kl(hz2, 16, i));
    CHECK(ref_kl(hz2, 16, iu) <= bu + 1e-10);
    auto q = u.compute();
    CHECK(q.range.qmin == 0);
    CHECK(q.range.qmax == 15);
    CHECK(q.scale.item<double>() == Approx(tu / 15).epsilon(1e-5));
  }
}

TEST_CASE("lsq-init and lsq+-init follow their papers' formulas", "[observer][numeric][lsq]") {
  at::manual_seed(13);
  auto x1 = at::randn({500}) * 0.7 + 0.2, x2 = at::randn({300}) * 1.5;
  std::vector<float> all = values(x1), v2 = values(x2);
  all.insert(all.end(), v2.begin(), v2.end());
  double abs_sum = 0, sum = 0, sq = 0;
  for (float v : all) abs_sum += std::fabs(v), sum += v;
  const double mu = sum / all.size();
  for (float v : all) sq += (v - mu) * (v - mu);
  const double sigma = std::sqrt(sq / all.size());

  for (int bits : {2, 4, 8}) {
    INFO("bits " << bits);
    const double qp = (1 << (bits - 1)) - 1;
    LsqInitObserver l(scheme(bits, true, Signedness::Signed));
    l.update(x1);
    l.update(x2);
    auto q = l.compute();
    CHECK(q.scale.item<double>() == Approx(2 * abs_sum / all.size() / std::sqrt(qp)).epsilon(1e-5));
    CHECK(q.zero_point.item<int>() == 0);
    CHECK(q.range.qmax == static_cast<int64_t>(qp));

    LsqPlusInitObserver lp(scheme(bits, true, Signedness::Signed));
    lp.update(x1);
    lp.update(x2);
    auto q2 = lp.compute();
    const double expect = std::max(std::fabs(mu - 3 * sigma), std::fabs(mu + 3 * sigma)) / (1 << (bits - 1));
    CHECK(q2.scale.item<double>() == Approx(expect).epsilon(1e-5));
    CHECK(q2.zero_point.item<int>() == 0);
  }
  SECTION("non-negative data with Auto signedness: Qp = 2^b - 1") {
    LsqInitObserver l(scheme(4, true, Signedness::Auto));
    auto r = x1.abs();
    l.update(r);
    auto q = l.compute();
    CHECK(q.range.qmin == 0);
    CHECK(q.scale.item<double>() == Approx(2 * values(r.mean())[0] / std::sqrt(15.0)).epsilon(1e-5));
  }
  SECTION("per channel: one scale per channel from that channel's values") {
    at::manual_seed(14);
    auto w = at::randn({3, 2, 5}) * at::tensor({0.1f, 1.0f, 3.0f}).reshape({3, 1, 1});
    LsqInitObserver l(scheme(4, true, Signedness::Signed, true));
    LsqPlusInitObserver lp(scheme(4, true, Signedness::Signed, true));
    l.update(w);
    lp.update(w);
    auto q = l.compute(), q2 = lp.compute();
    REQUIRE(q.scale.sizes() == at::IntArrayRef({3}));
    REQUIRE(q2.scale.sizes() == at::IntArrayRef({3}));
    for (int64_t c = 0; c < 3; ++c) {
      auto v = values(w[c]);
      double a = 0, s = 0, ss = 0;
      for (float e : v) a += std::fabs(e), s += e;
      const double m = s / v.size();
      for (float e : v) ss += (e - m) * (e - m);
      const double sd = std::sqrt(ss / v.size());
      CHECK(q.scale[c].item<double>() == Approx(2 * a / v.size() / std::sqrt(7.0)).epsilon(1e-5));
      CHECK(q2.scale[c].item<double>() == Approx(std::max(std::fabs(m - 3 * sd), std::fabs(m + 3 * sd)) / 8).epsilon(1e-5));
    }
  }
}

TEST_CASE("pot: a power-of-two scale with the lowest L2 error among all exponents", "[observer][numeric][pot]") {
  for (int bits : {2, 4, 8}) {
    for (double spread : {1e-3, 0.3, 5.0, 300.0}) {
      INFO("bits " << bits << " spread " << spread);
      auto x = heavy_tailed(4000, 20 + bits) * spread;
      auto v = values(x);
      PotObserver o(scheme(bits, true, Signedness::Signed));
      o.update(x);
      auto qp = o.compute();
      const double s = qp.scale.item<double>();
      const double e = std::log2(s);
      CHECK(e == std::round(e));        // a power of two
      CHECK(e >= -12);                  // at most 12 fractional bits
      CHECK(qp.zero_point.item<int>() == 0);
      const double chosen = lp_error(v, static_cast<float>(s), 0, qp.range.qmin, qp.range.qmax);
      for (int k = -12; k <= 20; ++k)
        CHECK(chosen <= lp_error(v, std::ldexp(1.0f, k), 0, qp.range.qmin, qp.range.qmax) * (1 + 1e-9) + 1e-30);
    }
  }
  SECTION("tiny values floor at 2^-12") {
    PotObserver o(scheme(8, true, Signedness::Signed));
    o.update(at::tensor({1e-7f, -3e-7f}));
    CHECK(o.compute().scale.item<float>() == std::ldexp(1.0f, -12));
  }
  SECTION("per channel: one exponent per channel") {
    auto w = at::stack({at::linspace(-0.01, 0.01, 50), at::linspace(-7, 7, 50)});
    PotObserver o(scheme(8, true, Signedness::Signed, true));
    o.update(w);
    auto qp = o.compute();
    REQUIRE(qp.scale.sizes() == at::IntArrayRef({2}));
    for (int64_t c = 0; c < 2; ++c) {
      auto v = values(w[c]);
      const float s = qp.scale[c].item<float>();
      CHECK(std::log2(s) == std::round(std::log2(s)));
      const double chosen = lp_error(v, s, 0, -128, 127);
      for (int k = -12; k <= 10; ++k) CHECK(chosen <= lp_error(v, std::ldexp(1.0f, k), 0, -128, 127) * (1 + 1e-9) + 1e-30);
    }
    CHECK(qp.scale[0].item<float>() < qp.scale[1].item<float>());
  }
}

TEST_CASE("edge cases: all-zero, constant and single-element tensors give finite, usable qparams",
          "[observer][numeric][edge]") {
  const std::vector<std::pair<const char*, at::Tensor>> inputs = {
      {"zeros", at::zeros({4, 3})}, {"constant", at::full({4, 3}, 3.0f)},
      {"negative constant", at::full({5}, -2.0f)}, {"single", at::tensor({0.75f})}};
  for (const auto& n : kExtra) {
    for (const auto& [what, x] : inputs) {
      for (bool sym : {true, false}) {
        INFO(n << " on " << what << " sym " << sym);
        auto o = make(n, scheme(8, sym, Signedness::Auto));
        o->update(x);
        o->update(x);
        auto qp = o->compute();
        const float s = qp.scale.item<float>();
        CHECK(std::isfinite(s));
        CHECK(s > 0.0f);
        CHECK(qp.zero_point.item<int>() >= qp.range.qmin);
        CHECK(qp.zero_point.item<int>() <= qp.range.qmax);
        auto y = fake_quantize(x, qp);
        CHECK(at::isfinite(y).all().item<bool>());
        if (std::string(what) == "zeros") CHECK(at::equal(y, x));
        // Anything but the init rules (which are not range estimates) keeps a constant close.
        if (std::string(n) != "lsq-init" && std::string(n) != "lsq+-init" && std::string(what) != "zeros")
          CHECK((y - x).abs().max().item<float>() <= s * 0.5f + 1e-6f);
      }
    }
  }
}

TEST_CASE("per-channel observers give one parameter per channel on any channel axis", "[observer][numeric][edge]") {
  at::manual_seed(21);
  auto act = at::randn({4, 5, 3, 3});
  for (const auto& n : kExtra) {
    INFO(n);
    auto o = make(n, scheme(8, true, Signedness::Signed, true, false, 1));
    o->update(act);
    o->update(act * 0.5);
    auto qp = o->compute();
    CHECK(qp.ch_axis == 1);
    CHECK(qp.scale.sizes() == at::IntArrayRef({5}));
    CHECK(qp.zero_point.sizes() == at::IntArrayRef({5}));
    CHECK(at::isfinite(qp.scale).all().item<bool>());
    CHECK(fake_quantize(act, qp).sizes() == act.sizes());
    // A batch with another channel count is an error, not a silent broadcast.
    CHECK_THROWS_AS(o->update(at::randn({4, 6, 3, 3})), qbench::Error);
    // A channel axis the tensor lacks is an error.
    auto bad = make(n, scheme(8, true, Signedness::Signed, true, false, 4));
    CHECK_THROWS_AS(bad->update(act), qbench::Error);
  }
}

TEST_CASE("NaN or Inf input is a qbench::Error for every observer", "[observer][numeric][edge]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto& n : kExtra) {
    for (bool pc : {false, true}) {
      INFO(n << " per-channel " << pc);
      auto o = make(n, scheme(8, true, Signedness::Signed, pc));
      CHECK_THROWS_AS(o->update(at::tensor({1.0f, nan, 2.0f, 0.0f}).reshape({2, 2})), qbench::Error);
      CHECK_THROWS_AS(o->update(at::tensor({1.0f, -inf, 2.0f, 0.0f}).reshape({2, 2})), qbench::Error);
      CHECK_FALSE(o->observed());
      // Empty tensors are skipped, as minmax does.
      o->update(at::empty({0, 2}));
      CHECK_FALSE(o->observed());
    }
  }
}
