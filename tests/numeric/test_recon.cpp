// Reconstruction PTQ (AdaRound, BRECQ, QDrop; lib/ptq/src/recon_*.cpp) against the formulas of
// docs/algorithms.md ("Post-training reconstruction"), written out here as
// scalar loops, central finite differences of the rounding loss, and end-to-end properties of the
// engine on a tiny ResNet: every unit's output error drops from the MSE-observer start, the baked
// weights sit on the quantization grid, QDrop's drop rate is p, and one seed gives one result.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/ptq/recon.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "recon_util.h"

using namespace qbench;
using namespace qbench::ptq;

namespace {

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double h_ref(double v) { return std::min(1.0, std::max(0.0, sigmoid(v) * 1.2 - 0.1)); }

std::vector<double> vecd(const at::Tensor& t) {
  auto c = t.detach().to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

/// A resnet8-w0.5 with BatchNorm statistics from a few random batches (so BN is not the identity)
/// and the first BN folding the papers use (strategy 0, merged). Same seed, same weights.
std::shared_ptr<quant::QuantModel> tiny_model(uint64_t seed, int bn_fold = 0) {
  at::manual_seed(static_cast<int64_t>(seed));
  auto m = models::make_model("resnet8-w0.5", {1, 10, 28});
  {
    torch::NoGradGuard ng;
    m->train();
    for (int i = 0; i < 4; ++i) m->forward(at::randn({32, 1, 28, 28}));
  }
  m->eval();
  quant::apply_bn_fold(*m, bn_fold);
  return m;
}

quant::AlgorithmContext tiny_ctx(uint64_t seed, int64_t iters, int w_bits = 4, int a_bits = 4) {
  return qbench::test::recon_ctx("academic", seed, iters, w_bits, a_bits);
}

/// The engine's two steps with the settings the context carries, as ReconAlgorithm::apply runs them.
void prepare(quant::QuantModel& m, quant::AlgorithmContext& ctx) {
  prepare_for_reconstruction(m, ctx, recon_options().read(ctx.settings).mse_p);
}
std::vector<UnitResult> recon(quant::QuantModel& m, quant::AlgorithmContext& ctx, ReconMode mode) {
  return reconstruct(m, ctx, mode, recon_options().read(ctx.settings));
}

/// Mean squared difference of the logits of `q` and `fp` on `x`.
double logit_mse(quant::QuantModel& q, quant::QuantModel& fp, const at::Tensor& x) {
  torch::NoGradGuard ng;
  return (q.forward(x) - fp.forward(x)).pow(2).mean().item<double>();
}

std::map<std::string, at::Tensor> params_of(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

}  // namespace

TEST_CASE("recon: rectified sigmoid h(V) follows clip(sigmoid(V)(zeta-gamma)+gamma, 0, 1)", "[recon]") {
  REQUIRE(kAdaRoundZeta == 1.1);
  REQUIRE(kAdaRoundGamma == -0.1);
  std::vector<double> vs{-12.0, -3.0, -2.3, -0.7, 0.0, 0.4, 1.9, 2.4, 3.5, 15.0};
  auto h = vecd(rectified_sigmoid(at::tensor(vs, at::kDouble)));
  for (size_t i = 0; i < vs.size(); ++i) CHECK(h[i] == Approx(h_ref(vs[i])).margin(1e-12));
  CHECK(h[4] == Approx(0.5));   // V = 0
  CHECK(h[0] == 0.0);           // saturates below
  CHECK(h[9] == 1.0);           // and above
}

TEST_CASE("recon: rounding regulariser is sum(1 - |2h - 1|^beta)", "[recon]") {
  std::vector<double> vs{-5.0, -1.0, -0.2, 0.0, 0.3, 1.7, 6.0};
  for (double beta : {20.0, 8.0, 2.0}) {
    double expect = 0;
    for (double v : vs) expect += 1.0 - std::pow(std::abs(2.0 * h_ref(v) - 1.0), beta);
    CHECK(rounding_regularizer(at::tensor(vs, at::kDouble), beta).item<double>() == Approx(expect).epsilon(1e-12));
  }
  // h = 0.5 costs 1 per element, a decided h (0 or 1) costs nothing.
  CHECK(rounding_regularizer(at::zeros({3}, at::kDouble), 2.0).item<double>() == Approx(3.0));
  CHECK(rounding_regularizer(at::full({2}, 20.0, at::kDouble), 2.0).item<double>() == Approx(0.0).margin(1e-12));
}

TEST_CASE("recon: V's initialisation reproduces frac(W/s), and the soft weight then equals W", "[recon]") {
  at::manual_seed(3);
  auto w = at::randn({8, 4, 3, 3}, at::kDouble) * 0.3;
  SECTION("per tensor") {
    const double s = 0.037;
    auto v = adaround_init_v(w, at::scalar_tensor(s, at::kDouble));
    auto h = vecd(rectified_sigmoid(v));
    auto wv = vecd(w);
    for (size_t i = 0; i < wv.size(); ++i) {
      const double ws = wv[i] / s;
      CHECK(h[i] == Approx(ws - std::floor(ws)).margin(1e-9));
    }
    // s * (floor(W/s) + frac) = W inside the integer range (wide enough here).
    auto back = adaround_weight(w, rectified_sigmoid(v), at::scalar_tensor(s, at::kDouble),
                                at::scalar_tensor(0.0, at::kDouble), -1000, 1000);
    CHECK(at::allclose(back, w, 1e-9, 1e-12));
  }
  SECTION("per channel, with a zero point and clipping") {
    auto s = (at::rand({8}, at::kDouble) * 0.05 + 0.01).reshape({8, 1, 1, 1});
    auto z = at::full({8, 1, 1, 1}, 3.0, at::kDouble);
    auto v = adaround_init_v(w, s);
    auto h = rectified_sigmoid(v);
    auto wv = vecd(w), sv = vecd(s.expand_as(w)), hv = vecd(h);
    for (size_t i = 0; i < wv.size(); ++i) CHECK(hv[i] == Approx(wv[i] / sv[i] - std::floor(wv[i] / sv[i])).margin(1e-9));
    // Hard rounding with qmin 0, qmax 7 (4 levels below the zero point 3, 4 above): a scalar loop.
    auto hard = (h >= 0.5).to(at::kDouble);
    auto got = vecd(adaround_weight(w, hard, s, z, 0, 7));
    auto hd = vecd(hard);
    for (size_t i = 0; i < wv.size(); ++i) {
      const double q = std::min(7.0, std::max(0.0, std::floor(wv[i] / sv[i]) + hd[i] + 3.0));
      CHECK(got[i] == Approx((q - 3.0) * sv[i]).margin(1e-12));
    }
  }
}

TEST_CASE("recon: the beta schedule holds beta_start through the warm-up, then falls linearly to beta_end", "[recon]") {
  const ReconParams p = recon_options().defaults();  // 20 -> 2, warm-up 0.2
  const int64_t T = 1001;
  CHECK(anneal_beta(0, T, p) == 20.0);
  CHECK_FALSE(regularizer_on(0, T, p));
  CHECK_FALSE(regularizer_on(200, T, p));  // 200 < 0.2 * 1001
  CHECK(regularizer_on(201, T, p));
  CHECK(anneal_beta(T - 1, T, p) == Approx(2.0));
  const double start = 0.2 * T, mid = (start + (T - 1)) / 2.0;
  CHECK(anneal_beta(static_cast<int64_t>(mid), T, p) ==
        Approx(2.0 + 18.0 * (1.0 - (static_cast<int64_t>(mid) - start) / ((T - 1) - start))));
}

TEST_CASE("recon: gradient of the rounding loss matches central finite differences", "[recon]") {
  // loss(V) = ||W x - W~(V) x||^2 + lambda * sum(1 - |2h(V) - 1|^beta), in double precision.
  at::manual_seed(11);
  auto w = at::randn({5, 7}, at::kDouble) * 0.4;
  auto x = at::randn({7, 9}, at::kDouble);
  const auto s = at::scalar_tensor(0.1, at::kDouble), z = at::scalar_tensor(0.0, at::kDouble);
  // V in [-2, 2]: h strictly inside (0, 1), where it is differentiable.
  auto v0 = at::rand({5, 7}, at::kDouble) * 4.0 - 2.0;
  const double lambda = 0.05, beta = 3.0;
  auto loss_of = [&](const at::Tensor& v) {
    auto wq = adaround_weight(w, rectified_sigmoid(v), s, z, -128, 127);
    return (w.mm(x) - wq.mm(x)).pow(2).sum() + lambda * rounding_regularizer(v, beta);
  };
  auto v = v0.clone().requires_grad_(true);
  loss_of(v).backward();
  auto g = vecd(v.grad());
  const double eps = 1e-6;
  auto base = v0.contiguous();
  for (int64_t i = 0; i < base.numel(); ++i) {
    auto vp = base.clone(), vm = base.clone();
    vp.view({-1})[i] += eps;
    vm.view({-1})[i] -= eps;
    const double fd = (loss_of(vp).item<double>() - loss_of(vm).item<double>()) / (2 * eps);
    CHECK(g[static_cast<size_t>(i)] == Approx(fd).epsilon(1e-5).margin(1e-7));
  }
}

TEST_CASE("recon: QDrop quantizes each element with probability p", "[recon]") {
  quant::QuantScheme sch;
  sch.bits = 4;
  sch.signedness = quant::Signedness::Signed;
  quant::QParams qp;
  qp.scale = at::scalar_tensor(0.25f);
  qp.zero_point = at::scalar_tensor(0, at::kInt);
  qp.range = {-8, 7};
  // Every element sits 0.3 steps off the grid, so quantized and float always differ.
  at::manual_seed(5);
  auto k = at::randint(-6, 6, {200000}).to(at::kFloat);
  auto x = (k + 0.3f) * 0.25f;
  auto q = at::round(x / 0.25f) * 0.25f;
  for (double p : {0.5, 0.2, 0.9}) {
    ReconActQuantizer rq(sch, qp, /*learn_scale=*/true, at::make_generator<at::CPUGeneratorImpl>(42));
    rq.set_drop_prob(p);
    torch::NoGradGuard ng;
    auto y = rq.forward(x);
    const double quantized = (y - q).abs().lt(1e-6).to(at::kDouble).mean().item<double>();
    const double passed = (y - x).abs().lt(1e-6).to(at::kDouble).mean().item<double>();
    CHECK(quantized + passed == Approx(1.0));
    CHECK(quantized == Approx(p).margin(0.005));  // 200k Bernoulli draws: sd ~0.0011
  }
  // p = 1 (brecq): everything is quantized.
  ReconActQuantizer all(sch, qp, true, at::make_generator<at::CPUGeneratorImpl>(1));
  torch::NoGradGuard ng;
  CHECK(at::allclose(all.forward(x), q));
}

TEST_CASE("recon: units are layers (adaround) or blocks plus the layers outside them (brecq, qdrop)", "[recon]") {
  auto m = tiny_model(0);
  auto layer_units = recon_units(*m, ReconMode::AdaRound);
  REQUIRE(layer_units.size() == m->quant_layers().size());
  CHECK(layer_units.front().skipped);  // the first layer is not reconstructed
  for (size_t i = 1; i < layer_units.size(); ++i) CHECK_FALSE(layer_units[i].skipped);
  auto block_units = recon_units(*m, ReconMode::Brecq);
  // resnet8: stem conv, three basic blocks, fc.
  REQUIRE(block_units.size() == 5);
  CHECK(block_units[0].name == "conv1");
  CHECK(block_units[0].skipped);
  CHECK(block_units[1].name == "layer1.0");
  CHECK(block_units[1].is_block);
  CHECK(block_units[2].layers.size() == 3);  // conv1, conv2, the downsample conv
  CHECK(block_units[4].name == "fc");
}

TEST_CASE("recon: reconstruction lowers every unit's output error from the observer-only start", "[recon][.slow]") {
  at::set_num_threads(1);
  for (auto mode : {ReconMode::AdaRound, ReconMode::Brecq, ReconMode::QDrop}) {
    DYNAMIC_SECTION(recon_mode_name(mode)) {
      auto model = tiny_model(7);
      auto fp = tiny_model(7);
      auto observer_only = tiny_model(7);
      auto ctx = tiny_ctx(0, 300, /*w_bits=*/3, /*a_bits=*/4);
      prepare(*observer_only, ctx);
      prepare(*model, ctx);
      auto res = recon(*model, ctx, mode);
      REQUIRE_FALSE(res.empty());
      for (const auto& r : res) {
        INFO(r.name);
        CHECK(r.iters == 300);
        CHECK(r.final_loss < r.initial_loss);
      }
      int rows = 0;
      for (const auto& d : ctx.details) rows += d.section == "recon_units";
      CHECK(rows == static_cast<int>(res.size()) + 1);  // + the skipped first layer
      // The whole network, on images it was not calibrated on: closer to FP32 than observers alone.
      at::manual_seed(99);
      auto x = at::randn({64, 1, 28, 28});
      CHECK(logit_mse(*model, *fp, x) < logit_mse(*observer_only, *fp, x));
      // Baked weights: every quantized layer but the first sits on its grid, and round-to-nearest
      // of the baked weight is the weight itself; some roundings differ from nearest.
      int64_t changed = 0;
      auto ref_layers = observer_only->quant_layers();
      auto layers = model->quant_layers();
      for (size_t i = 1; i < layers.size(); ++i) {
        auto* wq = layers[i].layer->weight_quantizer();
        REQUIRE(wq != nullptr);
        auto qp = wq->affine_qparams();
        REQUIRE(qp.has_value());
        torch::NoGradGuard ng;
        const auto& w = layers[i].layer->weight_tensor();
        CHECK(at::allclose(wq->forward(w), w, 0, 1e-6));
        auto ref_w = ref_layers[i].layer->weight_quantizer()->forward(ref_layers[i].layer->weight_tensor());
        changed += (w - ref_w).abs().gt(1e-7).sum().item<int64_t>();
      }
      CHECK(changed > 0);
    }
  }
}

TEST_CASE("recon: BN folded on the fly (strategy 1) bakes to the same grid as a merged BN", "[recon][.slow]") {
  at::set_num_threads(1);
  auto model = tiny_model(3, /*bn_fold=*/1);
  auto ctx = tiny_ctx(0, 200);
  prepare(*model, ctx);
  auto res = recon(*model, ctx, ReconMode::Brecq);
  for (const auto& r : res) CHECK(r.final_loss < r.initial_loss);
  // What the weight quantizer sees (W * gamma / sigma) is on its grid after baking.
  for (auto& l : model->quant_layers()) {
    auto* conv = dynamic_cast<quant::QConv2dImpl*>(l.layer);
    if (!conv || l.is_first) continue;
    torch::NoGradGuard ng;
    auto folded = conv->folded_weight_bias().first;
    CHECK(at::allclose(conv->weight_quantizer()->forward(folded), folded, 1e-5, 1e-6));
  }
}

TEST_CASE("recon: the same seed gives the same result, another seed another", "[recon][.slow]") {
  at::set_num_threads(1);
  auto run = [](uint64_t seed) {
    auto model = tiny_model(5);
    auto ctx = tiny_ctx(seed, 60);
    prepare(*model, ctx);
    recon(*model, ctx, ReconMode::QDrop);
    return params_of(*model);
  };
  auto a = run(0), b = run(0), c = run(1);
  REQUIRE(a.size() == b.size());
  bool all_same = true, any_diff = false;
  for (const auto& [k, t] : a) {
    all_same = all_same && at::equal(t, b.at(k));
    any_diff = any_diff || !at::equal(t, c.at(k));
  }
  CHECK(all_same);
  CHECK(any_diff);
}

TEST_CASE("recon: caches above cache_mb go to disk and give the same result", "[recon][.slow]") {
  at::set_num_threads(1);
  auto run = [](int64_t cache_mb) {
    auto model = tiny_model(8);
    auto ctx = tiny_ctx(2, 30);
    ctx.settings["cache_mb"] = cache_mb;
    prepare(*model, ctx);
    auto res = recon(*model, ctx, ReconMode::QDrop);
    return std::make_pair(params_of(*model), res);
  };
  auto [mem, rm] = run(1024);
  auto [disk, rd] = run(0);
  for (const auto& r : rm) CHECK_FALSE(r.on_disk);
  for (const auto& r : rd) CHECK(r.on_disk);
  bool same = true;
  for (const auto& [k, t] : mem) same = same && at::equal(t, disk.at(k));
  CHECK(same);
}
