// Data-free calibration images (ZeroQ, DSG). See datafree.h for the methods and papers.
#include "qbench/ptq/datafree.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"

namespace qbench::ptq {
namespace {

/// ZeroQ's epsilon under the square root of the input's per-image variance.
constexpr double kInputEps = 1e-6;

/// A conv whose output is a BN input.
struct Tap {
  std::string name;
  quant::QConv2dImpl* conv;
  torch::nn::BatchNorm2dImpl* bn;
  quant::Act act;
};

std::vector<Tap> find_taps(quant::QuantModel& model) {
  std::vector<Tap> taps;
  for (const auto& r : model.quant_layers()) {
    if (!r.bn) continue;
    auto* conv = dynamic_cast<quant::QConv2dImpl*>(r.layer);
    if (!conv) continue;
    if (conv->deployed())
      throw Error("data-free calibration: layer " + r.name + " is deployed (integer lowering); use the FP32 model");
    if (conv->bn_fold() == 0)
      throw Error("data-free calibration: layer " + r.name +
                  " has its BatchNorm merged (bn_fold 0); its BN input statistics are gone");
    taps.push_back({r.name, conv, r.bn, r.act});
  }
  if (taps.empty()) throw Error("data-free calibration: the model declares no conv with a BatchNorm partner");
  return taps;
}

/// Clears the deploy hooks this file installs, however the forward pass ends.
class TapGuard {
 public:
  explicit TapGuard(const std::vector<Tap>& taps) : taps_(taps) {}
  ~TapGuard() {
    for (const auto& t : taps_) t.conv->set_deploy(nullptr);
  }
  TapGuard(const TapGuard&) = delete;
  TapGuard& operator=(const TapGuard&) = delete;

 private:
  const std::vector<Tap>& taps_;
};

/// Eval mode and frozen parameters for the synthesis; restores every module's mode and every
/// parameter's requires_grad flag on the way out (normal or exceptional).
class FrozenEvalGuard {
 public:
  explicit FrozenEvalGuard(quant::QuantModel& m) : model_(m), model_training_(m.is_training()) {
    for (const auto& mod : m.modules(/*include_self=*/false)) modes_.emplace_back(mod, mod->is_training());
    for (auto& p : m.parameters()) {
      flags_.emplace_back(p, p.requires_grad());
      p.requires_grad_(false);
    }
    m.eval();
  }
  ~FrozenEvalGuard() {
    for (auto& [p, f] : flags_) p.requires_grad_(f);
    // Module::train recurses into children, so restore parents first and children after
    // (modules() lists them depth-first, parents before their children).
    model_.train(model_training_);
    for (auto& [mod, t] : modes_) mod->train(t);
  }
  FrozenEvalGuard(const FrozenEvalGuard&) = delete;
  FrozenEvalGuard& operator=(const FrozenEvalGuard&) = delete;

 private:
  quant::QuantModel& model_;
  bool model_training_;
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes_;
  std::vector<std::pair<at::Tensor, bool>> flags_;
};

at::Generator make_gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

/// sum over entries of (target - stat)^2 / N: ZeroQ's own_loss (||A - B||^2 / B.size(0)).
at::Tensor own_loss(const at::Tensor& target, const at::Tensor& stat) {
  return (stat - target.unsqueeze(0)).pow(2).sum() / static_cast<double>(stat.size(0));
}

/// torch.optim.lr_scheduler.ReduceLROnPlateau with the reference code's settings (mode min,
/// factor 0.1, relative threshold 1e-4, min_lr 1e-4, no cooldown).
class Plateau {
 public:
  Plateau(double lr, int64_t patience) : lr_(lr), patience_(patience) {}
  /// Returns the learning rate for the next step.
  double step(double loss) {
    if (loss < best_ * (1.0 - 1e-4)) {
      best_ = loss;
      bad_ = 0;
    } else if (++bad_ > patience_) {
      lr_ = std::max(lr_ * 0.1, 1e-4);
      bad_ = 0;
    }
    return lr_;
  }

 private:
  double lr_;
  int64_t patience_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t bad_ = 0;
};

}  // namespace

std::pair<at::Tensor, at::Tensor> per_image_stats(const at::Tensor& x, double eps) {
  auto flat = x.flatten(2);  // N x C x HW
  auto mean = flat.mean(2);
  // Unbiased, as torch.var in the reference code; a 1x1 map has no spatial spread at all.
  auto var = flat.size(2) > 1 ? flat.var(2, /*unbiased=*/true) : at::zeros_like(mean);
  return {mean, (var + eps).sqrt()};
}

std::vector<BnLayerStats> bn_input_statistics(quant::QuantModel& model, const at::Tensor& images) {
  const auto taps = find_taps(model);
  std::vector<BnLayerStats> out(taps.size());
  TapGuard guard(taps);
  for (std::size_t i = 0; i < taps.size(); ++i) {
    const Tap& t = taps[i];
    t.conv->set_deploy([&t, &out, i](const at::Tensor& x) {
      // The BN input is the conv alone (QConv2dImpl::forward); the rest of the fused layer runs
      // as the architecture would run it unfolded in eval mode (running statistics).
      auto y = t.conv->forward(x);
      const double eps = t.bn->options.eps();
      auto& s = out[i];
      s.name = t.name;
      std::tie(s.mean, s.std) = per_image_stats(y, eps);
      s.run_mean = t.bn->running_mean.detach().to(y.scalar_type());
      s.run_std = (t.bn->running_var.detach() + eps).sqrt().to(y.scalar_type());
      s.spatial = y.size(2) * y.size(3);
      return quant::apply_act(t.bn->forward(y), t.act);
    });
  }
  model.forward(images);
  for (const auto& s : out)
    if (!s.mean.defined())
      throw Error("data-free calibration: a conv with a BatchNorm partner was not called by the forward pass");
  return out;
}

at::Tensor zeroq_loss(const std::vector<BnLayerStats>& layers, const at::Tensor& images) {
  at::Tensor loss = at::zeros({}, images.options());
  for (const auto& s : layers) loss = loss + own_loss(s.run_mean, s.mean) + own_loss(s.run_std, s.std);
  auto [in_mean, in_std] = per_image_stats(images, kInputEps);
  return loss + own_loss(at::zeros({in_mean.size(1)}, in_mean.options()), in_mean) +
         own_loss(at::ones({in_std.size(1)}, in_std.options()), in_std);
}

at::Tensor slack_alignment(const at::Tensor& stat, const at::Tensor& target, double margin) {
  return at::relu((stat - target.unsqueeze(0)).abs() - margin).pow(2).sum(1);
}

/// DSG's loss on a batch: per image j, with k_j its enhanced layer (LSE) and delta/gamma the
/// layer margins (SDA),
///   L_j = sum_l (1 + [l = k_j]) * ( sum_c max(|mu_jlc - mu_lc| - delta_l, 0)^2
///                                  + sum_c max(|sigma_jlc - sigma_lc| - gamma_l, 0)^2 )
///       + ||mu_j(input) - 0||^2 + ||sigma_j(input) - 1||^2
/// and the batch loss is (1/N) sum_j L_j. The slack term is the paper's slack distribution
/// alignment (Sec. 3.2: the ZeroQ statistic distance with a margin, so statistics inside the band
/// cost nothing and samples may spread within it); the (1 + one-hot) weight is its layerwise
/// sample enhancement (Sec. 3.3: each sample reinforces one BN layer, so samples differ in which
/// layer's statistics they follow most closely). The official code (htqin/DSG, distill_data.py,
/// main_loss) doubles the enhanced sample's deviation instead (x4 on its squared loss) and puts no
/// margin on the input term, as here.
at::Tensor dsg_loss(const std::vector<BnLayerStats>& layers, const at::Tensor& images, const SlackMargins& m,
                    const at::Tensor& enhanced_layer /* N, int64 */) {
  const int64_t n = images.size(0);
  at::Tensor per_image = at::zeros({n}, images.options());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& s = layers[l];
    auto term = slack_alignment(s.mean, s.run_mean, m.delta[l]) + slack_alignment(s.std, s.run_std, m.gamma[l]);
    auto w = 1.0 + enhanced_layer.eq(static_cast<int64_t>(l)).to(term.scalar_type());
    per_image = per_image + w * term;
  }
  auto [in_mean, in_std] = per_image_stats(images, kInputEps);
  per_image = per_image + in_mean.pow(2).sum(1) + (in_std - 1.0).pow(2).sum(1);
  return per_image.sum() / static_cast<double>(n);
}

// How the margins are set. DSG relaxes each layer's alignment by constants delta_l (mean) and
// gamma_l (std) taken as the epsilon-quantile of the per-channel deviation |statistic - running
// statistic| (the official code loads them per layer from precomputed percentile files, m.npy and
// n.npy, whose generation it does not publish). We compute that deviation without data: a feature
// map that really follows the BN's N(mu_c, sigma_c^2), observed on one image's H x W positions,
// has per-image statistics that miss the running ones by sampling alone,
//   mean:  mu_hat - mu_c        ~ sigma_c * Z / sqrt(S)                        (Z ~ N(0, 1))
//   std:   sqrt(var_hat + eps)  with var_hat ~ sigma_c^2 * chi2(S - 1) / (S - 1)
// (S = H * W, unbiased variance as in per_image_stats). delta_l and gamma_l are the q-quantiles of
// those deviations pooled over the layer's channels (K draws each): a synthetic image whose
// statistics are as close as a typical real image's would be costs nothing, which is the
// diversity the slack is meant to allow. At S = 1 the std term gets a margin covering the whole
// deviation, since one pixel has no spread.
SlackMargins dsg_margins(const std::vector<BnLayerStats>& layers, double q, uint64_t seed) {
  if (!(q > 0.0 && q < 1.0)) throw Error("dsg: margin quantile must be in (0, 1)");
  auto gen = make_gen(seed);
  SlackMargins m;
  for (const auto& s : layers) {
    const auto sigma = s.run_std.detach().to(at::kCPU, at::kDouble);
    const int64_t c = sigma.size(0);
    const int64_t k = std::max<int64_t>(64, (8192 + c - 1) / c);
    const double sf = static_cast<double>(s.spatial);
    // sigma is sqrt(running_var + eps); treating it as the feature's std drops eps against the
    // variance, which is negligible for the margin.
    auto z = at::randn({c, k}, gen, at::TensorOptions().dtype(at::kDouble));
    auto dmean = (z * sigma.unsqueeze(1) / std::sqrt(sf)).abs();
    at::Tensor dstd;
    if (s.spatial > 1) {
      auto alpha = at::full({c, k}, (sf - 1.0) / 2.0, at::TensorOptions().dtype(at::kDouble));
      auto chi2 = 2.0 * at::_standard_gamma(alpha, gen);
      auto ratio = chi2 / (sf - 1.0);  // var_hat / sigma^2
      dstd = (sigma.unsqueeze(1) * (ratio.sqrt() - 1.0)).abs();
    } else {
      dstd = sigma.unsqueeze(1).expand({c, k}).clone();
    }
    m.delta.push_back(at::quantile(dmean.flatten(), q).item<double>());
    m.gamma.push_back(at::quantile(dstd.flatten(), q).item<double>());
  }
  return m;
}

Synthesis synthesize_calibration(quant::QuantModel& fp32_model, const std::string& method,
                                 const config::CalibrationRecipe& p, int64_t n, std::vector<int64_t> item_shape,
                                 uint64_t seed, std::function<void(double, const std::string&)> progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool dsg = method == "dsg";
  if (!dsg && method != "zeroq")
    throw Error("data-free calibration: unknown method '" + method + "' (zeroq | dsg)");
  if (item_shape.size() != 3 || std::any_of(item_shape.begin(), item_shape.end(), [](int64_t d) { return d <= 0; }))
    throw Error("data-free calibration: item shape must be C, H, W (all positive)");
  if (n < 0) throw Error("data-free calibration: negative image count");
  if (p.iters < 0 || !(p.lr > 0.0) || p.batch_size < 1)
    throw Error("data-free calibration: needs iters >= 0, lr > 0, batch_size >= 1");

  FrozenEvalGuard frozen(fp32_model);
  torch::AutoGradMode grad_on(true);
  const auto params = fp32_model.parameters();
  const auto device = params.empty() ? at::Device(at::kCPU) : params.front().device();

  auto gen = make_gen(seed);
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), item_shape.begin(), item_shape.end());
  // ZeroQ: the distilled data start as N(0, 1) in the model's input space.
  auto images = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)).to(device);

  Synthesis r;
  if (n == 0) {
    r.images = images;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  SlackMargins margins;
  at::Tensor enhanced;  // n: the layer each image emphasises (dsg)
  if (dsg) {
    std::vector<BnLayerStats> probe;
    {
      torch::NoGradGuard ng;
      probe = bn_input_statistics(fp32_model, images.narrow(0, 0, 1));
    }
    margins = dsg_margins(probe, kDsgMarginQuantile, seed ^ 0x9E3779B97F4A7C15ULL);
    // Balanced assignment: concatenated random permutations of the layers, so every layer is
    // enhanced by about n / L images and which image gets which is seeded.
    const int64_t nl = static_cast<int64_t>(probe.size());
    std::vector<at::Tensor> perms;
    for (int64_t have = 0; have < n; have += nl) perms.push_back(at::randperm(nl, gen, at::TensorOptions().dtype(at::kLong)));
    enhanced = at::cat(perms).narrow(0, 0, n).to(device);
  }

  const int64_t bs = p.batch_size, nb = (n + bs - 1) / bs;
  const int64_t patience = std::max<int64_t>(1, p.iters / 5);  // ZeroQ: 100 of 500 steps
  const int64_t report_every = std::max<int64_t>(1, p.iters / 20);
  const double total_steps = static_cast<double>(std::max<int64_t>(1, nb * p.iters));
  double init_sum = 0, final_sum = 0;
  std::vector<at::Tensor> done;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t start = b * bs, len = std::min(bs, n - start);
    auto x = images.narrow(0, start, len).clone();
    x.set_requires_grad(true);
    auto enh = dsg ? enhanced.narrow(0, start, len) : at::Tensor();
    torch::optim::Adam opt(std::vector<at::Tensor>{x}, torch::optim::AdamOptions(p.lr));
    Plateau plateau(p.lr, patience);
    const std::string label = method + " batch " + std::to_string(b + 1) + "/" + std::to_string(nb);
    for (int64_t it = 0; it < p.iters; ++it) {
      check_interrupt();
      opt.zero_grad();
      auto stats = bn_input_statistics(fp32_model, x);
      auto loss = dsg ? dsg_loss(stats, x, margins, enh) : zeroq_loss(stats, x);
      if (it == 0) {
        torch::NoGradGuard ng;
        init_sum += (dsg ? zeroq_loss(stats, x) : loss).item<double>() * static_cast<double>(len);
      }
      loss.backward();
      opt.step();
      const double lr = plateau.step(loss.item<double>());
      static_cast<torch::optim::AdamOptions&>(opt.param_groups().front().options()).lr(lr);
      ++r.iters;
      if (progress && ((it + 1) % report_every == 0 || it + 1 == p.iters))
        progress(static_cast<double>(b * p.iters + it + 1) / total_steps, label);
    }
    {
      torch::NoGradGuard ng;
      auto xd = x.detach();
      auto final_loss = zeroq_loss(bn_input_statistics(fp32_model, xd), xd).item<double>();
      final_sum += final_loss * static_cast<double>(len);
      if (p.iters == 0) init_sum += final_loss * static_cast<double>(len);
      done.push_back(xd);
    }
    if (progress && p.iters == 0) progress(static_cast<double>(b + 1) / nb, label);
  }
  r.images = at::cat(done);
  r.initial_bn_loss = init_sum / static_cast<double>(n);
  r.final_bn_loss = final_sum / static_cast<double>(n);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qbench::ptq
