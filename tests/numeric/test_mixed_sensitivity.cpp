// Mixed precision's sensitivity measures (lib/mixed/sensitivity.h) from first principles:
// Hutchinson's trace against the exact trace of a tiny network's Hessian (every diagonal entry
// by double backward), within the estimator's own spread computed from the exact Hessian, over
// several seeds; the Fisher and loss measures against a plain recomputation.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "qbench/mixed/allocate.h"
#include "qbench/mixed/search.h"
#include "qbench/mixed/sensitivity.h"
#include "qbench/models/models.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

using namespace qbench;

namespace {

/// conv(1->3, 3x3) -> tanh -> linear(3*4*4 -> 5) on 6x6 images, cross-entropy; two chunks.
struct TinyNet {
  at::Tensor w1, w2, x, y;
  TinyNet() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    w1 = (at::randn({3, 1, 3, 3}, gen) * 0.5).requires_grad_(true);
    w2 = (at::randn({5, 48}, gen) * 0.3).requires_grad_(true);
    x = at::randn({12, 1, 6, 6}, gen);
    y = at::randint(0, 5, {12}, gen);
  }
  at::Tensor loss(int c) const {
    auto xs = x.narrow(0, c * 6, 6);
    auto h = at::tanh(at::conv2d(xs, w1));
    auto logits = at::linear(h.reshape({6, -1}), w2);
    return at::cross_entropy_loss(logits, y.narrow(0, c * 6, 6), {}, at::Reduction::Sum) / 12.0;
  }
};

/// The full Hessian block of parameter i (rows by Hessian-vector products).
at::Tensor hessian_block(const TinyNet& net, const std::vector<at::Tensor>& params, std::size_t i) {
  const int64_t n = params[i].numel();
  at::Tensor h = at::zeros({n, n}, at::kDouble);
  for (int64_t e = 0; e < n; ++e) {
    std::vector<at::Tensor> v;
    for (const auto& p : params) v.push_back(at::zeros_like(p));
    v[i].view({-1})[e] = 1;
    at::Tensor row = at::zeros({n}, at::kDouble);
    for (int c = 0; c < 2; ++c) {
      auto l = net.loss(c);
      auto g = torch::autograd::grad({l}, params, {}, true, true);
      at::Tensor gv = (g[0] * v[0]).sum() + (g[1] * v[1]).sum();
      auto hv = torch::autograd::grad({gv}, params, {}, false, false);
      row += hv[i].reshape({-1}).to(at::kDouble);
    }
    h[e] = row;
  }
  return h;
}

}  // namespace

TEST_CASE("mixed: Hutchinson's trace matches the exact Hessian trace within its own spread", "[numeric][mixed]") {
  TinyNet net;
  std::vector<at::Tensor> params{net.w1, net.w2};
  auto loss = [&](int c) { return net.loss(c); };
  const auto exact = mixed::exact_trace(loss, 2, params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    at::Tensor h = hessian_block(net, params, i);
    const double tr = h.diagonal().sum().item<double>();
    CHECK(std::fabs(tr - exact[i]) <= 1e-5 * std::max(1.0, std::fabs(tr)));
    // Rademacher probes: Var[v'Hv] = 2 * sum over i != j of H_ij^2 (per probe).
    const double off = (h.pow(2).sum() - h.diagonal().pow(2).sum()).item<double>();
    const int probes = 64;
    const double sd = std::sqrt(2.0 * off / probes);
    int within = 0;
    for (uint64_t seed = 0; seed < 6; ++seed) {
      auto est = mixed::hutchinson_trace(loss, 2, params, probes, /*tolerance=*/0.0, seed);
      REQUIRE(est.probes == probes);  // tolerance 0: every probe
      INFO("param " << i << " seed " << seed << " exact " << exact[i] << " est " << est.trace[i] << " sd " << sd);
      CHECK(std::fabs(est.trace[i] - exact[i]) <= 4.0 * sd);
      within += std::fabs(est.trace[i] - exact[i]) <= 2.0 * sd;
      // The estimator's own standard error agrees with the exact spread (within a factor).
      CHECK(est.stderr_[i] > 0.4 * sd);
      CHECK(est.stderr_[i] < 2.5 * sd);
    }
    CHECK(within >= 4);  // about 95% of estimates lie within 2 sd
  }
  // A tolerance stops early, after at least 8 probes.
  auto early = mixed::hutchinson_trace(loss, 2, params, 64, /*tolerance=*/0.5, 3);
  CHECK(early.probes >= 8);
  CHECK(early.probes < 64);
}

TEST_CASE("mixed: sensitivities of a small ResNet fall with the width and the search uses them", "[numeric][mixed]") {
  auto model = models::random_model("resnet8-w0.5", {1, 10, 12}, 5);
  model->eval();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor images = at::randn({24, 1, 12, 12}, gen);
  at::Tensor labels = at::randint(0, 10, {24}, gen);
  const quant::Profile& profile = quant::profile_registry().get("academic");
  for (const std::string measure : {"hessian", "fisher", "loss"}) {
    INFO(measure);
    mixed::SensitivityOptions opt;
    opt.measure = measure;
    opt.w_bits = {2, 4, 8};
    opt.a_bits = {4, 8};
    opt.probes = 16;
    opt.batch_size = 10;  // three chunks, the last one short
    auto s = mixed::measure_sensitivity(*model, profile, images, labels, opt);
    const auto refs = model->quant_layers();
    REQUIRE(s.layers.size() == refs.size());
    int falling = 0, total = 0;
    for (const auto& l : s.layers) {
      CHECK(l.params > 0);
      CHECK(l.macs > 0);
      CHECK(l.act_elems > 0);
      if (measure != "loss") {
        for (double v : l.w_sens) CHECK(v >= 0);
        CHECK(l.w_sens[0] >= l.w_sens[2]);  // 2 bits hurt at least as much as 8
      }
      falling += l.a_sens[0] >= l.a_sens[1];
      ++total;
    }
    if (measure != "loss") CHECK(falling >= total - 1);  // an untrained model's loss moves either way
    if (measure == "hessian") CHECK(s.probes_used >= 8);
    // The model is left as it was: no quantizer, no gradient.
    for (auto* q : model->quantizers()) CHECK(q == nullptr);
    for (const auto& p : model->parameters()) CHECK_FALSE(p.grad().defined());
    // Shared inputs: a downsampling block's conv1 and shortcut read the same tensor.
    int grouped = 0;
    for (std::size_t k = 0; k < s.layers.size(); ++k) grouped += s.layers[k].a_group != static_cast<int>(k);
    CHECK(grouped >= 1);
    // The loss measure is the loss increase itself: recompute one entry.
    if (measure == "loss") {
      at::NoGradGuard ng;
      auto& w = refs[2].layer->weight_tensor();
      const at::Tensor w0 = w.clone();
      auto base = at::cross_entropy_loss(model->forward(images), labels).item<double>();
      quant::QuantScheme sc = profile.weight;
      sc.bits = 2;
      quant::QuantizerImpl q(sc, quant::observer_registry().get(profile.weight_observer).make(sc));
      q.set_observing(true);
      q.forward(w0);
      q.set_observing(false);
      q.compute_qparams();
      q.set_quantizing(true);
      w.copy_(q.forward(w0));
      auto quantized = at::cross_entropy_loss(model->forward(images), labels).item<double>();
      w.copy_(w0);
      CHECK(s.layers[2].w_sens[0] == Approx(quantized - base).epsilon(1e-4).margin(1e-6));
    }
    // The search over these layers: uniform w4 size as the budget, the allocation meets it and
    // attach_quantizers gives each layer its width.
    auto layers = mixed::layer_choices(*model, profile, s, opt.w_bits, opt.a_bits, 32);
    std::vector<int> w4, a8;
    for (const auto& l : layers) {
      w4.push_back(l.w_bits.size() == 1 ? l.w_bits[0] : 4);
      a8.push_back(l.a_bits.back());
    }
    const auto uniform = mixed::cost_of(layers, w4, a8);
    mixed::Budget b;
    b.size_kb = uniform.size_kb;
    auto alloc = mixed::solve(layers, b);
    CHECK(alloc.cost.size_kb <= uniform.size_kb * (1 + 1e-9));
    CHECK(alloc.cost.sensitivity <= uniform.sensitivity + 1e-12);
    auto copy = models::random_model("resnet8-w0.5", {1, 10, 12}, 5);
    copy->set_bit_allocation(mixed::to_layer_bits(layers, alloc));
    quant::prepare_model(*copy, profile, {4, 8, "", ""});
    copy->forward(images);
    auto cost = mixed::model_cost(*copy);
    CHECK(cost.size_kb == Approx(alloc.cost.size_kb));
    CHECK(cost.bops == Approx(alloc.cost.bops));
    std::size_t k = 0;
    for (const auto& ref : copy->quant_layers()) {
      CHECK(ref.layer->weight_quantizer()->scheme().bits == alloc.w_bits[k]);
      ++k;
    }
  }
}

TEST_CASE("mixed: sensitivities repeat bit for bit, and the allocation holds at 1 and 2 threads", "[numeric][mixed]") {
  auto model = models::random_model("resnet8-w0.5", {1, 10, 12}, 9);
  model->eval();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  at::Tensor images = at::randn({16, 1, 12, 12}, gen);
  at::Tensor labels = at::randint(0, 10, {16}, gen);
  const quant::Profile& profile = quant::profile_registry().get("academic");
  mixed::SensitivityOptions opt;
  opt.w_bits = {2, 4, 8};
  opt.a_bits = {4, 8};
  opt.probes = 12;
  opt.seed = 5;
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto a = mixed::measure_sensitivity(*model, profile, images, labels, opt);
  auto b = mixed::measure_sensitivity(*model, profile, images, labels, opt);
  at::set_num_threads(1);
  auto c = mixed::measure_sensitivity(*model, profile, images, labels, opt);
  at::set_num_threads(threads);
  REQUIRE(a.layers.size() == b.layers.size());
  for (std::size_t k = 0; k < a.layers.size(); ++k) {
    CHECK(a.layers[k].w_sens == b.layers[k].w_sens);
    CHECK(a.layers[k].a_sens == b.layers[k].a_sens);
    for (std::size_t i = 0; i < a.layers[k].w_sens.size(); ++i)
      CHECK(c.layers[k].w_sens[i] == Approx(a.layers[k].w_sens[i]).epsilon(1e-4).margin(1e-12));
  }
  auto alloc = [&](const mixed::Sensitivity& s) {
    auto layers = mixed::layer_choices(*model, profile, s, opt.w_bits, opt.a_bits, 32);
    mixed::Budget bud;
    bud.avg_w_bits = 3.5;
    return mixed::solve(layers, bud).w_bits;
  };
  CHECK(alloc(a) == alloc(c));
}
