// BN folding strategies -1..4 (MQBench, Li et al. 2021, sec. 3.3) on one conv + BatchNorm pair,
// against the unfolded conv followed by BatchNorm computed directly from its formula:
//   BN(y) = gamma * (y - mu) / sqrt(var + eps) + beta
// with the running statistics (inference, strategies 0/1 in training) or the batch statistics
// (training with strategies 2, 3, 4, and the unfolded -1). Also: what weight the weight quantizer
// sees, the running-statistics updates, which parameters train, and the errors.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/quant/qmodules.h"
#include "qbench/quant/quantizer.h"

using namespace qbench::quant;

namespace {

constexpr double kEps = 1e-5;

/// A weight "quantizer" that records what it is given and returns it unchanged (or rounds it to
/// a grid of step 0.05 when `round`), so the fold's quantizer input can be checked exactly.
class Recorder : public FakeQuantizer {
 public:
  explicit Recorder(bool round = false) : FakeQuantizer(QuantScheme{}), round_(round) {}
  at::Tensor forward(const at::Tensor& x) override {
    seen = x.detach().clone();
    if (!round_) return x;
    // Straight-through rounding: forward on the grid, identity gradient.
    return x + (at::round(x / 0.05) * 0.05 - x).detach();
  }
  void compute_qparams() override {}
  std::string describe() const override { return "recorder"; }
  at::Tensor seen;

 private:
  bool round_;
};

struct Pair {
  QConv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};

/// A 3x3 conv (4 -> 6 channels, stride 2, padding 1) and its BN with non-trivial parameters and
/// running statistics; the same seed gives the same pair.
Pair make_pair(uint64_t seed = 1, bool conv_bias = false) {
  at::manual_seed(seed);
  Pair p;
  p.conv = QConv2d(QConv2dOptions{4, 6, 3, 2, 1, 1, conv_bias});
  if (conv_bias) {
    at::NoGradGuard ng;
    p.conv->bias.uniform_(-0.5, 0.5);
  }
  p.bn = torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(6).eps(kEps));
  {
    at::NoGradGuard ng;
    p.bn->weight.uniform_(0.5, 2.0);
    p.bn->bias.uniform_(-1.0, 1.0);
    p.bn->running_mean.uniform_(-0.5, 0.5);
    p.bn->running_var.uniform_(0.3, 3.0);
  }
  p.conv->set_partner(p.bn.get(), Act::None);
  return p;
}

at::Tensor raw_conv(const Pair& p, const at::Tensor& x) {
  return at::conv2d(x, p.conv->weight, p.conv->bias, {2, 2}, {1, 1});
}

at::Tensor bn_formula(const at::Tensor& y, const at::Tensor& mu, const at::Tensor& var, const Pair& p) {
  auto c = [](const at::Tensor& v) { return v.reshape({1, -1, 1, 1}); };
  return c(p.bn->weight) * (y - c(mu)) / at::sqrt(c(var) + kEps) + c(p.bn->bias);
}

/// conv then BN with the running statistics (what inference computes).
at::Tensor reference_running(const Pair& p, const at::Tensor& x) {
  return bn_formula(raw_conv(p, x), p.bn->running_mean, p.bn->running_var, p);
}

/// conv then BN with the batch's statistics (what training computes).
at::Tensor reference_batch(const Pair& p, const at::Tensor& x) {
  auto y = raw_conv(p, x);
  auto mu = y.mean({0, 2, 3});
  auto var = (y - mu.reshape({1, -1, 1, 1})).pow(2).mean({0, 2, 3});
  return bn_formula(y, mu, var, p);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

at::Tensor input() {
  at::manual_seed(7);
  return at::randn({5, 4, 9, 9}) * 1.5 + 0.3;
}

}  // namespace

TEST_CASE("BN fold: at inference every strategy equals conv followed by BN on running statistics",
          "[numeric][bn_fold]") {
  const auto x = input();
  for (int s : {-1, 0, 1, 2, 3, 4}) {
    for (bool conv_bias : {false, true}) {
      Pair p = make_pair(1, conv_bias);
      const auto ref = reference_running(p, x).detach();
      p.conv->set_bn_fold(s);
      p.conv->eval();
      p.bn->eval();
      at::NoGradGuard ng;
      INFO("strategy " << s << (conv_bias ? " with conv bias" : ""));
      CHECK(max_diff(p.conv->forward_fused(x), ref) < 1e-4);
      // folded_weight_bias is what an integer engine would use: the same output.
      auto [w, b] = p.conv->folded_weight_bias();
      if (s >= 0) CHECK(max_diff(at::conv2d(x, w, b, {2, 2}, {1, 1}), ref) < 1e-4);
    }
  }
}

TEST_CASE("BN fold: in training, 2, 3 and 4 normalise with the batch statistics, 0 and 1 with the running ones",
          "[numeric][bn_fold]") {
  const auto x = input();
  for (int s : {-1, 0, 1, 2, 3, 4}) {
    Pair p = make_pair();
    const auto ref_batch = reference_batch(p, x).detach();
    const auto ref_run = reference_running(p, x).detach();
    p.conv->set_bn_fold(s);
    p.conv->train();
    p.bn->train();
    INFO("strategy " << s);
    auto y = p.conv->forward_fused(x);
    if (s == 0 || s == 1) {
      CHECK(max_diff(y, ref_run) < 1e-4);
      CHECK(max_diff(y, ref_batch) > 1e-2);  // the two references really differ
    } else {
      CHECK(max_diff(y, ref_batch) < 1e-4);
    }
  }
}

TEST_CASE("BN fold: running statistics move with BN's momentum for -1, 2, 3, 4 and stay for 0, 1",
          "[numeric][bn_fold]") {
  const auto x = input();
  for (int s : {-1, 0, 1, 2, 3, 4}) {
    Pair p = make_pair();
    const auto rm0 = p.bn->running_mean.clone(), rv0 = p.bn->running_var.clone();
    auto y = raw_conv(p, x).detach();
    const auto mu = y.mean({0, 2, 3});
    const auto var_unbiased = y.var({0, 2, 3}, /*unbiased=*/true);
    p.conv->set_bn_fold(s);
    p.conv->train();
    p.bn->train();
    if (s == 0) {  // merging already consumed the statistics; they never change again
      p.conv->forward_fused(x);
      CHECK(max_diff(p.bn->running_mean, rm0) == 0.0);
      continue;
    }
    p.conv->forward_fused(x);
    INFO("strategy " << s);
    if (s == 1) {
      CHECK(max_diff(p.bn->running_mean, rm0) == 0.0);
      CHECK(max_diff(p.bn->running_var, rv0) == 0.0);
    } else {
      CHECK(max_diff(p.bn->running_mean, rm0 * 0.9 + mu * 0.1) < 1e-5);
      CHECK(max_diff(p.bn->running_var, rv0 * 0.9 + var_unbiased * 0.1) < 1e-4);
    }
  }
}

TEST_CASE("BN fold: the weight quantizer sees the folded weight", "[numeric][bn_fold]") {
  const auto x = input();
  auto col = [](const at::Tensor& v) { return v.reshape({-1, 1, 1, 1}); };
  for (int s : {-1, 0, 1, 2, 3, 4}) {
    for (bool training : {false, true}) {
      Pair p = make_pair();
      const auto w = p.conv->weight.detach().clone();
      const auto g = p.bn->weight.detach().clone();
      const auto sigma_run = at::sqrt(p.bn->running_var.detach() + kEps);
      auto y = raw_conv(p, x).detach();
      const auto sigma_batch = at::sqrt(y.var({0, 2, 3}, /*unbiased=*/false) + kEps);
      auto rec = std::make_shared<Recorder>();
      p.conv->attach(rec, nullptr);
      p.conv->set_bn_fold(s);
      p.conv->train(training);
      p.bn->train(training);
      p.conv->forward_fused(x);
      INFO("strategy " << s << (training ? " training" : " inference"));
      REQUIRE(rec->seen.defined());
      at::Tensor expect;
      if (s == -1) expect = w;
      else if (s == 2 && training) expect = w * col(g / sigma_batch);
      else expect = w * col(g / sigma_run);
      CHECK(max_diff(rec->seen, expect) < 1e-5);
    }
  }
}

TEST_CASE("BN fold: with a rounding weight quantizer, 3 and 4 in training match their formulas",
          "[numeric][bn_fold]") {
  const auto x = input();
  auto col = [](const at::Tensor& v) { return v.reshape({1, -1, 1, 1}); };
  auto q = [](const at::Tensor& w) { return at::round(w / 0.05) * 0.05; };
  Pair p3 = make_pair(), p4 = make_pair();
  const auto g = p3.bn->weight.detach(), beta = p3.bn->bias.detach();
  const auto sigma_run = at::sqrt(p3.bn->running_var.detach() + kEps);
  const auto wf = p3.conv->weight.detach() * (g / sigma_run).reshape({-1, 1, 1, 1});
  auto y0 = raw_conv(p3, x).detach();
  const auto mu_b = y0.mean({0, 2, 3});
  const auto sigma_b = at::sqrt(y0.var({0, 2, 3}, false) + kEps);
  auto yq = at::conv2d(x, q(wf), {}, {2, 2}, {1, 1});
  // Strategy 3 (Krishnamoorthi 2018): conv(x, q(W g/sigma_run)) * sigma_run/sigma_b + beta - g mu_b/sigma_b.
  auto expect3 = yq * col(sigma_run / sigma_b) + col(beta - g * mu_b / sigma_b);
  // Strategy 4 (PyTorch ConvBn QAT): undo the fold scale, then BN on the batch statistics of that.
  auto y4 = yq / col(g / sigma_run);
  auto mu4 = y4.mean({0, 2, 3});
  auto var4 = (y4 - col(mu4)).pow(2).mean({0, 2, 3});
  auto expect4 = col(g) * (y4 - col(mu4)) / at::sqrt(col(var4) + kEps) + col(beta);
  for (auto* pp : {&p3, &p4}) {
    pp->conv->attach(std::make_shared<Recorder>(/*round=*/true), nullptr);
    pp->conv->train();
    pp->bn->train();
  }
  p3.conv->set_bn_fold(3);
  p4.conv->set_bn_fold(4);
  CHECK(max_diff(p3.conv->forward_fused(x), expect3) < 1e-4);
  CHECK(max_diff(p4.conv->forward_fused(x), expect4) < 1e-4);
  CHECK(max_diff(expect3, expect4) > 1e-3);  // the strategies are genuinely different
}

TEST_CASE("BN fold: gamma and beta train under 1..4 and are frozen once merged (0)", "[numeric][bn_fold]") {
  const auto x = input();
  for (int s : {0, 1, 2, 3, 4}) {
    Pair p = make_pair();
    p.conv->set_bn_fold(s);
    p.conv->train();
    p.bn->train();
    p.conv->forward_fused(x).pow(2).mean().backward();
    INFO("strategy " << s);
    REQUIRE(p.conv->weight.grad().defined());
    CHECK(p.conv->weight.grad().abs().sum().item<double>() > 0);
    if (s == 0) {
      CHECK_FALSE(p.bn->weight.requires_grad());
      CHECK_FALSE(p.bn->weight.grad().defined());
    } else {
      REQUIRE(p.bn->weight.grad().defined());
      CHECK(p.bn->weight.grad().abs().sum().item<double>() > 0);
      CHECK(p.bn->bias.grad().abs().sum().item<double>() > 0);
    }
  }
  // Strategy 1's gamma gradient equals that of conv + BN on the frozen running statistics.
  Pair a = make_pair(), b = make_pair();
  a.conv->set_bn_fold(1);
  a.conv->train();
  a.conv->forward_fused(x).pow(2).mean().backward();
  reference_running(b, x).pow(2).mean().backward();
  CHECK(max_diff(a.bn->weight.grad(), b.bn->weight.grad()) < 1e-4);
  CHECK(max_diff(a.conv->weight.grad(), b.conv->weight.grad()) < 1e-4);
}

TEST_CASE("BN fold: invalid strategies and changing a merged conv fail", "[numeric][bn_fold]") {
  Pair p = make_pair();
  CHECK_THROWS_AS(p.conv->set_bn_fold(5), qbench::Error);
  CHECK_THROWS_AS(p.conv->set_bn_fold(-2), qbench::Error);
  p.conv->set_bn_fold(0);
  CHECK_NOTHROW(p.conv->set_bn_fold(0));  // idempotent
  CHECK_THROWS_AS(p.conv->set_bn_fold(4), qbench::Error);
  // A conv without a BN partner ignores folding.
  QConv2d lone(QConv2dOptions{2, 2, 1});
  CHECK_NOTHROW(lone->set_bn_fold(3));
  CHECK(lone->bn_fold() == -1);
}

TEST_CASE("BN fold: the running-statistics fold kept between calls follows every in-place change of its inputs",
          "[numeric][bn_fold]") {
  const auto x = input();
  for (bool conv_bias : {false, true}) {
    INFO((conv_bias ? "with conv bias" : "without conv bias"));
    Pair p = make_pair(3, conv_bias);
    p.conv->set_bn_fold(1);
    p.conv->eval();
    p.bn->eval();
    at::NoGradGuard ng;
    const auto y0 = p.conv->forward_fused(x);
    CHECK(at::equal(p.conv->forward_fused(x), y0));  // a second call: the kept fold, the same bits
    CHECK(max_diff(y0, reference_running(p, x)) < 1e-4);
    // Each input changed in place (as an optimiser, a state-dict load or a calibration pass does):
    // the next call folds again and matches conv -> BN with the new values.
    std::vector<std::pair<std::string, at::Tensor>> inputs{{"weight", p.conv->weight},
                                                           {"gamma", p.bn->weight},
                                                           {"beta", p.bn->bias},
                                                           {"running mean", p.bn->running_mean},
                                                           {"running var", p.bn->running_var}};
    if (conv_bias) inputs.emplace_back("conv bias", p.conv->bias);
    for (auto& [name, t] : inputs) {
      INFO("changed: " << name);
      const auto before = p.conv->forward_fused(x);
      t.mul_(1.25).add_(0.05);
      const auto after = p.conv->forward_fused(x);
      CHECK(max_diff(after, reference_running(p, x)) < 1e-4);
      CHECK(max_diff(after, before) > 1e-3);
    }
  }
  // A move (here to double; to a GPU alike) swaps the parameters' storage without a new version:
  // the fold follows it.
  {
    Pair p = make_pair(5);
    p.conv->set_bn_fold(1);
    p.conv->eval();
    p.bn->eval();
    at::NoGradGuard ng;
    p.conv->forward_fused(x);
    p.conv->to(at::kDouble);
    p.bn->to(at::kDouble);
    const auto xd = x.to(at::kDouble);
    const auto y = p.conv->forward_fused(xd);
    CHECK(y.scalar_type() == at::kDouble);
    CHECK(max_diff(y, reference_running(p, xd)) < 1e-9);
  }
  // With gradients wanted, nothing is kept: gamma gets its gradient on every call.
  Pair p = make_pair(4);
  p.conv->set_bn_fold(1);
  p.conv->eval();
  p.bn->eval();
  for (int i = 0; i < 2; ++i) {
    p.bn->weight.mutable_grad().reset();
    p.conv->forward_fused(x).sum().backward();
    REQUIRE(p.bn->weight.grad().defined());
    CHECK(p.bn->weight.grad().abs().sum().item<double>() > 0);
  }
}
