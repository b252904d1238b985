// The fused pieces of a reconstruction iteration (lib/ptq/src/recon_fused.cpp, recon_fused.h)
// against the composed ATen forms they replace (bit for bit where those are a fixed sequence of
// IEEE float operations: the soft-rounded weight and its loss gradient, the activation quantizer
// with QDrop's mask, the batch draw, the loss gradient), against plain double references written
// out here as loops, and against central finite differences; each at 1 and 2 threads, where every
// result must be the same bits (sums run per fixed chunk, added in chunk order). Sizes span several
// chunks (kReconGrain elements) and end in a ragged tail that is no multiple of the 16 lanes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <vector>

#include "qbench/models/models.h"
#include "qbench/ptq/recon.h"
#include "qbench/ptq/recon_fused.h"
#include "qbench/qat/lsq.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

#include "recon_util.h"
#include "scheme_util.h"

using namespace qbench;
using namespace qbench::ptq;
using qbench::test::floats;

namespace {

/// Runs f at 1 and at 2 threads and restores the thread count.
void at_threads(const std::function<void(int)>& f) {
  const int before = at::get_num_threads();
  for (int t : {1, 2}) {
    at::set_num_threads(t);
    f(t);
  }
  at::set_num_threads(before);
}

/// Exactly the same values (a NaN would fail, as it should).
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes().equals(b.sizes()) && at::equal(a.contiguous(), b.contiguous());
}

std::vector<double> doubles(const at::Tensor& t) {
  auto c = t.detach().to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// lowbias32 (C. Wellons, "Prospecting for hash functions", 2018), written out again here, and the
// mask's definition in src/kernels/recon.h: element i uses 16 bits of mix(j * (k1 | 1) + k0) for its
// pair j = (i / 16) * 8 + i % 8 (low half when i % 16 < 8) and is quantized iff they are below
// round(p 2^16); k0 and k1 are the key's low and high words.
uint32_t ref_mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
bool ref_keep(uint64_t key, uint32_t i, double p) {
  const auto thr = static_cast<uint32_t>(std::nearbyint(p * 65536.0));
  const uint32_t pair = (i / 16) * 8 + i % 8;
  const uint32_t h = ref_mix(pair * (static_cast<uint32_t>(key >> 32) | 1u) + static_cast<uint32_t>(key));
  const uint32_t half = i % 16 < 8 ? h % 65536 : h / 65536;
  return half < thr;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// QDrop's mask

TEST_CASE("recon fused: the drop mask is the hash of (key, index), at rate p, and the same at any thread count",
          "[recon][recon_fused]") {
  const int64_t n = 3 * kReconGrain + 1001;
  const uint64_t key = 0x243f6a8885a308d3ULL;
  for (double p : {0.5, 0.1, 0.9}) {
    INFO("p " << p);
    std::vector<at::Tensor> masks;
    at_threads([&](int) { masks.push_back(drop_mask(key, n, p)); });
    CHECK(same_bits(masks[0], masks[1]));
    const auto m = masks[0];
    const bool* pm = m.data_ptr<bool>();
    int64_t bad = 0, kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad += pm[i] != ref_keep(key, static_cast<uint32_t>(i), p);
      kept += pm[i];
    }
    CHECK(bad == 0);
    const double sd = std::sqrt(p * (1 - p) / static_cast<double>(n));
    CHECK(std::fabs(static_cast<double>(kept) / static_cast<double>(n) - p) < 5 * sd);
    // Counter-based: a shorter draw is the start of a longer one.
    CHECK(same_bits(drop_mask(key, 1000, p), m.narrow(0, 0, 1000)));
  }
  // No structure between neighbours or between two keys: pairs (1, 1) occur at p^2.
  const double p = 0.5;
  auto a = drop_mask(1, 1 << 20, p).to(at::kDouble), b = drop_mask(2, 1 << 20, p).to(at::kDouble);
  const double sd = std::sqrt(0.25 * 0.75 / (1 << 20));
  CHECK(std::fabs((a.narrow(0, 0, (1 << 20) - 1) * a.narrow(0, 1, (1 << 20) - 1)).mean().item<double>() - 0.25) <
        5 * sd);
  CHECK(std::fabs((a * b).mean().item<double>() - 0.25) < 5 * sd);
  // Keys that differ only in the high word are unrelated too (not a shifted copy).
  auto c = drop_mask(1ULL | (7ULL << 32), 1 << 20, p).to(at::kDouble);
  CHECK(std::fabs((a * c).mean().item<double>() - 0.25) < 5 * sd);
  // The ends: p = 0 keeps everything in float, p >= 1 quantizes everything.
  CHECK(drop_mask(3, 5000, 0.0).sum().item<int64_t>() == 0);
  CHECK(drop_mask(3, 5000, 1.0).sum().item<int64_t>() == 5000);
  CHECK(drop_threshold(0.5) == 32768u);
}

// ---------------------------------------------------------------------------------------------
// The activation quantizer with QDrop's mask

namespace {
struct ActCase {
  at::Tensor x, r;
  float s;
  int64_t qmin, qmax;
  double g;
};

/// The plain reference of y and of the gradients of sum(r * y) (the step's before g), in double
/// for the sum; y and dx are exact float expressions.
struct ActRef {
  std::vector<float> y, dx;
  double ds = 0, abs_terms = 0;
};
ActRef act_ref(const ActCase& c, double p, uint64_t key) {
  const auto xv = floats(c.x), rv = floats(c.r);
  ActRef ref;
  ref.y.resize(xv.size());
  ref.dx.resize(xv.size());
  const float lo = static_cast<float>(c.qmin), hi = static_cast<float>(c.qmax);
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool keep = p >= 1.0 || ref_keep(key, static_cast<uint32_t>(i), p);
    const float v = xv[i] / c.s;
    const float vc = std::min(std::max(v, lo), hi);
    const bool inside = vc == v;
    ref.y[i] = keep ? std::nearbyint(vc) * c.s : xv[i];
    ref.dx[i] = keep ? (inside ? rv[i] : 0.f) : rv[i];
    if (keep) {
      const double term = inside ? std::nearbyint(vc) - static_cast<double>(vc) : vc;
      ref.ds += static_cast<double>(rv[i]) * term;
      ref.abs_terms += std::fabs(static_cast<double>(rv[i]) * term);
    }
  }
  return ref;
}
}  // namespace

TEST_CASE("recon fused: the activation quantizer with QDrop's mask is its composed form and the reference",
          "[recon][recon_fused]") {
  at::manual_seed(21);
  // 7: one partial block of the mask; 2000: whole blocks; the third: chunks and a ragged tail.
  for (int64_t n : {int64_t{7}, int64_t{2000}, 3 * kReconGrain + 1001}) {
    ActCase c;
    c.x = at::randn({n}) * 1.7;
    c.r = at::randn({n});
    c.s = 0.23f;
    c.qmin = -7;
    c.qmax = 7;
    c.g = 1.0 / std::sqrt(static_cast<double>(n) * 7.0);
    for (double p : {0.5, 1.0}) {
      INFO("n " << n << " p " << p);
      const uint64_t key = 977 + static_cast<uint64_t>(n);
      const ActRef ref = act_ref(c, p, key);
      std::vector<double> ds_by_threads;
      at_threads([&](int threads) {
        INFO("threads " << threads);
        auto run = [&](bool fused) {
          auto x = c.x.clone().set_requires_grad(true);
          auto s = at::full({1}, c.s).set_requires_grad(true);
          auto y = fused ? act_quant_drop(x, s, c.qmin, c.qmax, c.g, p, key)
                         : act_quant_drop_composed(x, s, c.qmin, c.qmax, c.g, p, key);
          (y * c.r).sum().backward();
          return std::make_tuple(y.detach(), x.grad(), s.grad().item<double>());
        };
        auto [yf, dxf, dsf] = run(true);
        auto [yc, dxc, dsc] = run(false);
        CHECK(same_bits(yf, yc));
        CHECK(same_bits(dxf, dxc));
        // One chunk at 1 thread sums in the composed LSQ kernel's order: the same bits. Otherwise
        // the order differs, and both are within float rounding of the double reference.
        if (n <= kReconGrain && threads == 1) CHECK(dsf == dsc);
        CHECK(std::fabs(dsf - ref.ds * c.g) <= 1e-6 * ref.abs_terms * c.g);
        CHECK(std::fabs(dsc - ref.ds * c.g) <= 1e-6 * ref.abs_terms * c.g);
        CHECK(floats(yf) == ref.y);
        CHECK(floats(dxf) == ref.dx);
        ds_by_threads.push_back(dsf);
      });
      CHECK(ds_by_threads[0] == ds_by_threads[1]);
    }
  }
}

TEST_CASE("recon fused: a residual add of two quantized operands (and ReLU) is the three ops, bit for bit",
          "[recon][recon_fused]") {
  at::manual_seed(23);
  for (int64_t n : {int64_t{7}, int64_t{2000}, 3 * kReconGrain + 1001}) {
    const auto a0 = at::randn({n}) * 1.3, b0 = at::randn({n}) * 0.8 + 0.2, r = at::randn({n});
    const double ga = 1.0 / std::sqrt(static_cast<double>(n) * 7.0), gb = 1.0 / std::sqrt(static_cast<double>(n) * 127.0);
    for (double p : {0.5, 1.0})
      for (bool relu : {true, false})
        for (bool b_grad : {true, false}) {
          INFO("n " << n << " p " << p << " relu " << relu << " operand b needs grad " << b_grad);
          const uint64_t ka = 31 + static_cast<uint64_t>(n), kb = 977 + static_cast<uint64_t>(n);
          at_threads([&](int threads) {
            INFO("threads " << threads);
            auto run = [&](bool fused) {
              auto a = a0.clone().set_requires_grad(true), b = b0.clone().set_requires_grad(b_grad);
              auto sa = at::full({1}, 0.21f).set_requires_grad(true), sb = at::full({1}, 0.013f).set_requires_grad(true);
              at::Tensor y;
              if (fused) {
                // 4-bit signed operand a, 8-bit unsigned operand b (zero point removed: 0..255).
                y = quant_add_fused(a, b, ActQuantArgs{sa, -8, 7, ga, p, ka}, ActQuantArgs{sb, 0, 255, gb, p, kb}, relu);
              } else {
                y = act_quant_drop(a, sa, -8, 7, ga, p, ka) + act_quant_drop(b, sb, 0, 255, gb, p, kb);
                if (relu) y = at::relu(y);
              }
              (y * r).sum().backward();
              return std::make_tuple(y.detach(), a.grad(), b.grad(), sa.grad().item<double>(), sb.grad().item<double>());
            };
            auto [yf, daf, dbf, saf, sbf] = run(true);
            auto [yr, dar, dbr, sar, sbr] = run(false);
            CHECK(at::equal(yf, yr));  // values (a ReLU'd -0 may come out +0)
            CHECK(same_bits(daf, dar));
            CHECK(dbf.defined() == b_grad);
            if (b_grad) CHECK(same_bits(dbf, dbr));
            CHECK(saf == sar);
            CHECK(sbf == sbr);
            CHECK(saf != 0.0);
            CHECK(sbf != 0.0);
          });
        }
  }
  // Operands of two shapes, or quantizers with different p, are refused.
  auto sa = at::full({1}, 0.2f), sb = at::full({1}, 0.2f);
  CHECK_THROWS_AS(quant_add_fused(at::zeros({4}), at::zeros({5}), ActQuantArgs{sa, -8, 7, 1.0, 1.0, 0},
                                  ActQuantArgs{sb, -8, 7, 1.0, 1.0, 0}, true),
                  Error);
  CHECK_THROWS_AS(quant_add_fused(at::zeros({4}), at::zeros({4}), ActQuantArgs{sa, -8, 7, 1.0, 0.5, 0},
                                  ActQuantArgs{sb, -8, 7, 1.0, 1.0, 0}, true),
                  Error);
}

TEST_CASE("recon fused: the quantizer input's gradient is skipped, not changed, when nothing needs it",
          "[recon][recon_fused]") {
  at::manual_seed(22);
  auto x = at::randn({5000});
  auto r = at::randn({5000});
  auto s1 = at::full({1}, 0.3f).set_requires_grad(true), s2 = at::full({1}, 0.3f).set_requires_grad(true);
  (act_quant_drop(x, s1, -8, 7, 0.01, 0.5, 5) * r).sum().backward();
  auto xg = x.clone().set_requires_grad(true);
  (act_quant_drop(xg, s2, -8, 7, 0.01, 0.5, 5) * r).sum().backward();
  CHECK(s1.grad().item<float>() == s2.grad().item<float>());
  CHECK(xg.grad().defined());
}

// ---------------------------------------------------------------------------------------------
// AdaRound's soft-rounded weight and regulariser

namespace {
struct WeightCase {
  at::Tensor w, v, s_b, z_b, s, z;  // s_b / z_b broadcast against w; s / z flat
  int64_t qmin, qmax;
};
/// A conv weight of 64 x 64 x 3 x 3 + 1 rows (more than one chunk, a ragged row count), V drawn
/// so that some h saturate at 0 or 1 and some weights clip at qmin / qmax.
WeightCase weight_case(bool per_channel, int64_t out_ch = 65) {
  at::manual_seed(per_channel ? 31 : 32);
  WeightCase c;
  c.w = at::randn({out_ch, 64, 3, 3}) * 0.2;
  c.v = at::randn(c.w.sizes()) * 3.0;
  if (per_channel) {
    c.s = at::rand({out_ch}) * 0.05 + 0.01;
    c.z = at::randint(-2, 3, {out_ch}).to(at::kFloat);
    c.s_b = c.s.reshape({out_ch, 1, 1, 1});
    c.z_b = c.z.reshape({out_ch, 1, 1, 1});
  } else {
    c.s = at::full({1}, 0.031f);
    c.z = at::zeros({1});
    c.s_b = c.s.reshape({});
    c.z_b = c.z.reshape({});
  }
  c.qmin = -8;
  c.qmax = 7;
  return c;
}
}  // namespace

TEST_CASE("recon fused: the soft-rounded weight and its loss gradient are the composed form, bit for bit",
          "[recon][recon_fused]") {
  for (bool per_channel : {false, true}) {
    auto c = weight_case(per_channel);
    auto r = at::randn(c.w.sizes());
    // Composed (what AdaRoundQuantizer computed before): autograd through ATen ops.
    auto vc = c.v.clone().set_requires_grad(true);
    auto wc = adaround_weight(c.w, rectified_sigmoid(vc), c.s_b, c.z_b, c.qmin, c.qmax);
    (wc * r).sum().backward();
    at_threads([&](int threads) {
      INFO("per channel " << per_channel << " threads " << threads);
      auto vf = c.v.clone().set_requires_grad(true);
      auto [wf, reg] = adaround_weight_fused(vf, c.w, c.s, c.z, c.qmin, c.qmax, /*beta=*/0.0);
      (wf * r).sum().backward();
      CHECK(same_bits(wf.detach(), wc.detach()));
      CHECK(same_bits(vf.grad(), vc.grad()));
      CHECK(reg.item<double>() == 0.0);
    });
    // And the composed form is the formula (a double loop): s (clip(floor(w/s) + h + z) - z).
    auto h = doubles(rectified_sigmoid(c.v));
    auto wv = floats(c.w), got = floats(wc);
    auto sv = doubles(c.s_b.expand_as(c.w)), zv = doubles(c.z_b.expand_as(c.w));
    int64_t bad = 0, clipped = 0, saturated = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      const double base = std::floor(static_cast<double>(static_cast<float>(wv[i] / static_cast<float>(sv[i]))));
      const double q0 = base + h[i] + zv[i], q = std::min<double>(std::max<double>(q0, c.qmin), c.qmax);
      clipped += q != q0;
      saturated += h[i] == 0.0 || h[i] == 1.0;
      bad += std::fabs(got[i] - (q - zv[i]) * sv[i]) > 1e-6 * sv[i];
    }
    CHECK(bad == 0);
    CHECK(clipped > 0);
    CHECK(saturated > 0);
  }
}

TEST_CASE("recon fused: the rounding regulariser in the weight's pass is the composed one and finite differences",
          "[recon][recon_fused]") {
  for (bool per_channel : {false, true}) {
    for (double beta : {20.0, 7.3, 2.0}) {
      auto c = weight_case(per_channel);
      auto r = at::randn(c.w.sizes()) * 0.1;
      const double lambda = 0.01;
      // Composed: the engine's loss sum(r W~) + lambda * rounding_regularizer(V, beta).
      auto vc = c.v.clone().set_requires_grad(true);
      auto wc = adaround_weight(c.w, rectified_sigmoid(vc), c.s_b, c.z_b, c.qmin, c.qmax);
      auto reg_c = rounding_regularizer(vc, beta);
      ((wc * r).sum() + lambda * reg_c).backward();
      const auto gc = doubles(vc.grad());
      // The reference of the regulariser's gradient alone, in double: lambda d/dV sum(1 - |2h-1|^beta),
      // h = clip(1.2 sigmoid(V) - 0.1, 0, 1) (zero where h saturates).
      const auto vv = doubles(c.v);
      std::vector<double> g_reg(vv.size());
      double reg_ref = 0;
      for (size_t i = 0; i < vv.size(); ++i) {
        const double sg = sigmoid(vv[i]), hp = 1.2 * sg - 0.1, h = std::min(1.0, std::max(0.0, hp));
        const double t = 2 * h - 1, a = std::fabs(t);
        reg_ref += 1 - std::pow(a, beta);
        const double dh = (hp >= 0 && hp <= 1) ? 1.2 * sg * (1 - sg) : 0.0;
        g_reg[i] = lambda * -beta * std::pow(a, beta - 1) * (t > 0 ? 1.0 : t < 0 ? -1.0 : 0.0) * 2 * dh;
      }
      std::vector<at::Tensor> grads;
      at_threads([&](int threads) {
        INFO("per channel " << per_channel << " beta " << beta << " threads " << threads);
        auto vf = c.v.clone().set_requires_grad(true);
        auto [wf, reg_f] = adaround_weight_fused(vf, c.w, c.s, c.z, c.qmin, c.qmax, beta);
        ((wf * r).sum() + lambda * reg_f).backward();
        CHECK(same_bits(wf.detach(), wc.detach()));
        // Each term 1 - a^beta carries the power's relative error (< 2e-5, see the power's test) on a^beta <= 1.
        CHECK(reg_f.item<double>() == Approx(reg_c.item<double>()).epsilon(2e-5));
        CHECK(reg_f.item<double>() == Approx(reg_ref).epsilon(2e-5));
        // The gradient: the loss part is the composed one's bits; the regulariser's power runs on
        // the kernel's own exp2/log2, so allow its relative error (< 2e-5) on that part.
        const auto gf = doubles(vf.grad());
        int64_t bad = 0;
        double worst = 0;
        for (size_t i = 0; i < gf.size(); ++i) {
          const double err = std::fabs(gf[i] - gc[i]), tol = 2e-5 * std::fabs(g_reg[i]) + 1e-9;
          worst = std::max(worst, err / tol);
          bad += err > tol;
        }
        INFO("worst error / tolerance " << worst);
        CHECK(bad == 0);
        grads.push_back(vf.grad());
      });
      CHECK(same_bits(grads[0], grads[1]));
    }
  }
  // Central finite differences of the regulariser (double, composed) at a few V: the fused
  // gradient of lambda * reg alone matches them.
  auto c = weight_case(true, 4);
  const double beta = 6.0, lambda = 1.0;
  auto vf = c.v.clone().set_requires_grad(true);
  auto [wf, reg_f] = adaround_weight_fused(vf, c.w, c.s, c.z, c.qmin, c.qmax, beta);
  (lambda * reg_f).backward();
  const auto gf = doubles(vf.grad());
  const auto v0 = c.v.to(at::kDouble).contiguous();
  int64_t checked = 0;
  for (int64_t i = 0; i < v0.numel(); i += 37) {
    const double vi = v0.view({-1})[i].item<double>();
    if (std::fabs(1.2 * sigmoid(vi) - 0.1 - 0.5) < 1e-3 || 1.2 * sigmoid(vi) - 0.1 <= 1e-3 ||
        1.2 * sigmoid(vi) - 0.1 >= 1 - 1e-3)
      continue;  // at h = 1/2 (|t| kinks) or near a clip: not differentiable there
    const double eps = 1e-6;
    auto vp = v0.clone(), vm = v0.clone();
    vp.view({-1})[i] += eps;
    vm.view({-1})[i] -= eps;
    const double fd = lambda * (rounding_regularizer(vp, beta).item<double>() - rounding_regularizer(vm, beta).item<double>()) / (2 * eps);
    CHECK(gf[static_cast<size_t>(i)] == Approx(fd).epsilon(1e-4).margin(1e-6));
    ++checked;
  }
  CHECK(checked > 20);
}

TEST_CASE("recon fused: the regulariser's power a^e on [0, 1] against std::pow", "[recon][recon_fused]") {
  // exp2(e log2 a) in float: y = e log2 a carries a relative rounding error of a few 2^-24, an
  // absolute error of up to ~126 * 2^-22 at the edge of the normal range, which exp2 turns into a
  // relative error of ln 2 times that: below 2e-5.
  double worst = 0;
  for (double e : {20.0, 19.0, 8.5, 2.0, 1.0, 0.5}) {
    for (int k = 1; k <= 2000; ++k) {
      const float a = static_cast<float>(k) / 2000.0f;
      const float got = regularizer_pow(a, static_cast<float>(e));
      const double want = std::pow(static_cast<double>(a), static_cast<double>(static_cast<float>(e)));
      if (want < 1e-30) continue;
      worst = std::max(worst, std::fabs(got - want) / want);
    }
    CHECK(regularizer_pow(0.0f, static_cast<float>(e)) == 0.0f);
    CHECK(regularizer_pow(1.0f, static_cast<float>(e)) == 1.0f);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 2e-5);
  CHECK(regularizer_pow(0.0f, 0.0f) == 1.0f);
  CHECK(std::isinf(regularizer_pow(0.0f, -0.5f)));
}

TEST_CASE("recon fused: the loops' positive-exponent power is the general one, bit for bit", "[recon][recon_fused]") {
  // The regulariser's loops take pow01_pos when beta (forward) or beta - 1 (backward) is > 0, so
  // that every clone vectorises them; it must not change a bit. a covers 0, subnormals, tiny and
  // large normals and 1; e the annealing's range and fractions.
  std::vector<float> as{0.0f, 1e-40f, 1e-38f, 1.1754944e-38f, 1e-30f, 1e-10f, 1e-3f, 0.25f, 0.5f, 0.999999f, 1.0f};
  for (int k = 1; k < 4000; ++k) as.push_back(static_cast<float>(k) / 4000.0f);
  int64_t compared = 0;
  for (float e : {20.0f, 19.0f, 7.3f, 6.3f, 2.0f, 1.0f, 0.5f, 1e-3f}) {
    for (float a : as) {
      const float g = regularizer_pow(a, e), p = regularizer_pow_positive(a, e);
      INFO("a = " << a << ", e = " << e);
      uint32_t bg = 0, bp = 0;
      std::memcpy(&bg, &g, 4);
      std::memcpy(&bp, &p, 4);
      CHECK(bg == bp);
      ++compared;
    }
  }
  CHECK(compared == 8 * 4010);
}

// ---------------------------------------------------------------------------------------------
// The loss and the batch draw

TEST_CASE("recon fused: the reconstruction loss is the composed one, its gradient bit for bit", "[recon][recon_fused]") {
  at::manual_seed(41);
  auto out = at::randn({64, 16, 28, 28});  // 802,816 elements: 25 chunks
  auto target = at::randn(out.sizes());
  auto oc = out.clone().set_requires_grad(true);
  auto lc = rec_loss_composed(oc, target);
  lc.backward();
  // The double reference: sum over channels of the squares, mean over N, H, W.
  const double ref = (out.to(at::kDouble) - target.to(at::kDouble)).pow(2).sum().item<double>() / (64.0 * 28 * 28);
  std::vector<float> values;
  at_threads([&](int threads) {
    INFO("threads " << threads);
    auto of = out.clone().set_requires_grad(true);
    auto lf = rec_loss_fused(of, target);
    lf.backward();
    CHECK(same_bits(of.grad(), oc.grad()));
    CHECK(lf.item<double>() == Approx(ref).epsilon(1e-7));
    CHECK(lc.item<double>() == Approx(ref).epsilon(1e-5));
    values.push_back(lf.item<float>());
  });
  CHECK(values[0] == values[1]);
  // The forward writes the gradient for an incoming 1; any other incoming gradient (here the loss
  // scaled by 3) is computed in the backward, and a forward without grad gives the same value.
  auto of = out.clone().set_requires_grad(true), oc3 = out.clone().set_requires_grad(true);
  (rec_loss_fused(of, target) * 3.0).backward();
  (rec_loss_composed(oc3, target) * 3.0).backward();
  CHECK(same_bits(of.grad(), oc3.grad()));
  CHECK(!same_bits(of.grad(), oc.grad()));
  CHECK(rec_loss_fused(out, target).item<float>() == values[0]);
}

TEST_CASE("recon fused: the batch draw is index_select, and QDrop's mix is where(mask) of the two caches",
          "[recon][recon_fused]") {
  at::manual_seed(42);
  auto a = at::randn({200, 16, 28, 28}), b = at::randn({200, 16, 28, 28});
  auto idx = at::randperm(200, at::kLong).narrow(0, 0, 64);
  const uint64_t key = 0xfeedULL;
  at_threads([&](int threads) {
    INFO("threads " << threads);
    auto out = at::empty({64, 16, 28, 28});
    gather_rows(a, nullptr, idx, 1.0, 0, out);
    CHECK(same_bits(out, a.index_select(0, idx)));
    gather_rows(a, &b, idx, 0.5, key, out);
    auto m = drop_mask(key, out.numel(), 0.5).view(out.sizes());
    CHECK(same_bits(out, at::where(m, a.index_select(0, idx), b.index_select(0, idx))));
  });
  // Rows of 105 floats: segments start off the mask's blocks of 16, so the element-wise head and
  // tail of the blocked loop decide some elements; the mask is the same.
  auto a2 = at::randn({50, 3, 5, 7}), b2 = at::randn({50, 3, 5, 7});
  auto idx2 = at::randperm(50, at::kLong).narrow(0, 0, 40);
  at_threads([&](int threads) {
    INFO("odd rows, threads " << threads);
    auto out = at::empty({40, 3, 5, 7});
    gather_rows(a2, &b2, idx2, 0.3, key, out);
    auto m = drop_mask(key, out.numel(), 0.3).view(out.sizes());
    CHECK(same_bits(out, at::where(m, a2.index_select(0, idx2), b2.index_select(0, idx2))));
  });
  auto bad = at::tensor({0, 200}, at::kLong);
  auto out = at::empty({2, 16, 28, 28});
  CHECK_THROWS(gather_rows(a, nullptr, bad, 1.0, 0, out));
}

// ---------------------------------------------------------------------------------------------
// Adam

TEST_CASE("recon fused: the fused Adam step follows torch::optim::Adam and a double reference", "[recon][recon_fused]") {
  at::manual_seed(51);
  std::vector<at::Tensor> init{at::randn({65, 64, 3, 3}), at::randn({1}), at::randn({3})};
  const std::vector<double> lrs{1e-2, 4e-5, 4e-5};
  const int steps = 30;
  std::vector<std::vector<at::Tensor>> grads(steps);
  for (auto& g : grads)
    for (auto& p : init) g.push_back(at::randn(p.sizes()) * (p.numel() == 1 ? 1e-3 : 1.0));
  // torch::optim::Adam, one optimiser per lr (as the engine's composed form).
  std::vector<at::Tensor> pt;
  for (auto& p : init) pt.push_back(p.clone().set_requires_grad(true));
  torch::optim::Adam ta({pt[0]}, torch::optim::AdamOptions(lrs[0]));
  torch::optim::Adam tb({pt[1], pt[2]}, torch::optim::AdamOptions(lrs[1]));
  for (int s = 0; s < steps; ++s) {
    ta.zero_grad();
    tb.zero_grad();
    for (size_t i = 0; i < pt.size(); ++i) pt[i].mutable_grad() = grads[s][i].clone();
    ta.step();
    tb.step();
  }
  // The double reference of the same recursion.
  std::vector<std::vector<double>> ref;
  for (size_t i = 0; i < init.size(); ++i) {
    auto p = doubles(init[i]);
    std::vector<double> m(p.size()), v(p.size());
    for (int s = 0; s < steps; ++s) {
      const auto g = doubles(grads[s][i]);
      const double bc1 = 1 - std::pow(0.9, s + 1), bc2 = 1 - std::pow(0.999, s + 1);
      for (size_t k = 0; k < p.size(); ++k) {
        m[k] = 0.9 * m[k] + 0.1 * g[k];
        v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k];
        p[k] -= lrs[i] / bc1 * m[k] / (std::sqrt(v[k]) / std::sqrt(bc2) + 1e-8);
      }
    }
    ref.push_back(p);
  }
  std::vector<std::vector<at::Tensor>> by_threads;
  at_threads([&](int threads) {
    INFO("threads " << threads);
    std::vector<at::Tensor> pf;
    for (auto& p : init) pf.push_back(p.clone().set_requires_grad(true));
    FusedAdam fa;
    fa.add_group({pf[0]}, lrs[0]);
    fa.add_group({pf[1], pf[2]}, lrs[1]);
    for (int s = 0; s < steps; ++s) {
      for (size_t i = 0; i < pf.size(); ++i) pf[i].mutable_grad() = grads[s][i].clone();
      fa.step();
      for (auto& p : pf) CHECK_FALSE(p.grad().defined());  // reset after the step
    }
    for (size_t i = 0; i < pf.size(); ++i) {
      INFO("tensor " << i);
      const auto got = doubles(pf[i]), tv = doubles(pt[i]);
      double worst_t = 0, worst_r = 0;
      for (size_t k = 0; k < got.size(); ++k) {
        // Each step rounds p to float (up to half an ulp of |p|) and its update to a few ulps of
        // the update (about lr): the tolerance, as a multiple of which the worst error prints.
        const double tol = steps * (6e-8 * std::max(std::fabs(ref[i][k]), 1e-3) + 1e-6 * lrs[i]);
        worst_t = std::max(worst_t, std::fabs(got[k] - tv[k]) / tol);
        worst_r = std::max(worst_r, std::fabs(got[k] - ref[i][k]) / tol);
      }
      INFO("worst error / tolerance: vs torch " << worst_t << ", vs double " << worst_r);
      CHECK(worst_t <= 1.0);
      CHECK(worst_r <= 1.0);
    }
    by_threads.push_back(pf);
  });
  for (size_t i = 0; i < init.size(); ++i) CHECK(same_bits(by_threads[0][i], by_threads[1][i]));
}

// ---------------------------------------------------------------------------------------------
// The engine with either set of kernels

namespace {
std::shared_ptr<quant::QuantModel> trt_model() {
  at::manual_seed(3);
  auto m = models::make_model("resnet8-w0.5", {1, 10, 28});
  models::randomize_batchnorm(*m);
  m->eval();
  quant::apply_bn_fold(*m, 4);  // the tensorrt profile's folding
  return m;
}
quant::AlgorithmContext trt_ctx(int64_t iters) {
  return qbench::test::recon_ctx("tensorrt", 0, iters);  // per-channel weights, add inputs quantized
}
}  // namespace

TEST_CASE("recon fused: each method learns with the fused kernels what it learns with the composed form",
          "[recon][recon_fused][.slow]") {
  const int threads_before = at::get_num_threads();
  at::set_num_threads(1);
  for (auto mode : {ReconMode::QDrop, ReconMode::Brecq, ReconMode::AdaRound}) {
    DYNAMIC_SECTION(recon_mode_name(mode)) {
      auto run = [mode](ReconKernels k) {
        auto m = trt_model();
        auto ctx = trt_ctx(80);
        const ReconParams p = recon_options().read(ctx.settings);
        prepare_for_reconstruction(*m, ctx, p.mse_p);
        auto res = reconstruct(*m, ctx, mode, p, k);
        return std::make_pair(m, res);
      };
      auto [mf, rf] = run(ReconKernels::Fused);
      auto [mc, rc] = run(ReconKernels::Composed);
      REQUIRE(rf.size() == rc.size());
      for (size_t i = 0; i < rf.size(); ++i) {
        INFO(rf[i].name);
        // The same start, bit for bit (same caches and observers), and the same end within what a few
        // float roundings in 80 steps of V can move: the loss within 1%, almost every rounding decided alike.
        CHECK(rf[i].initial_loss == rc[i].initial_loss);
        CHECK(rf[i].final_loss == Approx(rc[i].final_loss).epsilon(0.01));
        CHECK(rf[i].final_loss < rf[i].initial_loss);
      }
      auto lf = mf->quant_layers(), lc = mc->quant_layers();
      int64_t differ = 0, total = 0;
      for (size_t i = 0; i < lf.size(); ++i) {
        torch::NoGradGuard ng;
        const auto& a = lf[i].layer->weight_tensor();
        const auto& b = lc[i].layer->weight_tensor();
        differ += (a != b).sum().item<int64_t>();
        total += a.numel();
      }
      INFO(differ << " of " << total << " baked weights differ");
      CHECK(differ <= total / 1000);
    }
  }
  at::set_num_threads(threads_before);
}
