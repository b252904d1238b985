// Mixed precision's costs (issue 19), side by side in one run:
//  - the exact search (GLPK) over each zoo net's layers: one solve per budget kind and a 12-point
//    Pareto front (target: under 1 s for the largest net);
//  - the sensitivity measures on ResNet-20 over 256 calibration-sized images against one FP32
//    training epoch of the same net (60,000 images, batch 128, SGD; timed on 20 steps and scaled)
//    (target: under 2 epochs).
//   qbench_bench_mixed [--arch NAME]... [--images N] [--probes N] [--threads N]
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "qbench/mixed/allocate.h"
#include "qbench/mixed/search.h"
#include "qbench/mixed/sensitivity.h"
#include "qbench/models/models.h"
#include "qbench/quant/profile.h"

using namespace qbench;
using bench::now_ms;

int main(int argc, char** argv) {
  std::vector<std::string> archs;
  int64_t images = 256;
  int probes = 64, threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--arch") archs.push_back(next());
    else if (a == "--images") images = std::stoll(next());
    else if (a == "--probes") probes = std::stoi(next());
    else if (a == "--threads") threads = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: qbench_bench_mixed [--arch NAME]... [--images N] [--probes N] [--threads N]\n");
      return 2;
    }
  }
  if (archs.empty()) archs = {"resnet20", "resnet18", "resnet50", "mobilenetv2", "efficientnet-lite0", "regnetx-600mf"};
  at::set_num_threads(threads);
  const quant::Profile& profile = quant::profile_registry().get("academic");
  const std::vector<int> wc{2, 3, 4, 8}, ac{4, 8};
  std::printf("search (GLPK ILP, candidates w{2,3,4,8} x a{4,8}, academic profile, 1x28x28 input)\n");
  std::printf("%-12s %7s %9s %14s %14s\n", "arch", "layers", "binaries", "max solve ms", "front(12) ms");
  for (const auto& arch : archs) {
    auto model = models::random_model(arch, {1, 10, 28}, 1);
    auto s = mixed::layer_structure(*model, at::zeros({1, 1, 28, 28}), wc.size(), ac.size());
    // Sensitivities shaped like quantization error: 4x per bit, scaled per layer.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    for (auto& l : s.layers) {
      const double sw = at::rand({1}, gen).item<double>() + 0.05, sa = at::rand({1}, gen).item<double>() + 0.05;
      for (std::size_t i = 0; i < wc.size(); ++i) l.w_sens[i] = sw * std::pow(4.0, -wc[i]);
      for (std::size_t j = 0; j < ac.size(); ++j) l.a_sens[j] = sa * std::pow(4.0, -ac[j]);
    }
    auto layers = mixed::layer_choices(*model, profile, s, wc, ac, 32);
    std::vector<int> w3(layers.size()), a8(layers.size());
    for (std::size_t k = 0; k < layers.size(); ++k) {
      w3[k] = layers[k].w_bits.size() == 1 ? layers[k].w_bits[0] : 3;
      a8[k] = layers[k].a_bits.back();
    }
    const mixed::Cost at3 = mixed::cost_of(layers, w3, a8);
    std::vector<mixed::Budget> budgets(4);
    budgets[0].size_kb = at3.size_kb;
    budgets[1].avg_w_bits = 2.5;
    budgets[2].bops_ratio = 0.2;
    budgets[3].size_kb = at3.size_kb;
    budgets[3].bops_ratio = 0.25;
    budgets[3].avg_a_bits = 6;
    double worst = 0;
    int binaries = 0;
    for (const auto& l : layers) binaries += static_cast<int>(l.w_bits.size() * l.a_bits.size());
    for (const auto& b : budgets) {
      const double t0 = now_ms();
      (void)mixed::solve(layers, b);
      worst = std::max(worst, now_ms() - t0);
    }
    const double t0 = now_ms();
    (void)mixed::pareto_front(layers, "size_kb", 12);
    const double front = now_ms() - t0;
    std::printf("%-12s %7zu %9d %14.1f %14.1f\n", arch.c_str(), layers.size(), binaries, worst, front);
  }

  // Sensitivity cost against one FP32 epoch (ResNet-20, 1x28x28, 10 classes).
  auto model = models::random_model("resnet20", {1, 10, 28}, 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor x = at::randn({images, 1, 28, 28}, gen);
  at::Tensor y = at::randint(0, 10, {images}, gen);
  model->train();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  at::Tensor xb = at::randn({128, 1, 28, 28}, gen), yb = at::randint(0, 10, {128}, gen);
  for (int i = 0; i < 3; ++i) {  // warm-up
    sgd.zero_grad();
    at::cross_entropy_loss(model->forward(xb), yb).backward();
    sgd.step();
  }
  const int steps = 20;
  double t0 = now_ms();
  for (int i = 0; i < steps; ++i) {
    sgd.zero_grad();
    at::cross_entropy_loss(model->forward(xb), yb).backward();
    sgd.step();
  }
  const double epoch_s = (now_ms() - t0) / steps * (60000.0 / 128.0) / 1000.0;
  sgd.zero_grad();
  for (auto& p : model->parameters()) p.mutable_grad() = at::Tensor();
  model->eval();
  std::printf("\nsensitivity on resnet20, %lld images, %d threads; one FP32 epoch (60,000 images, batch 128): %.1f s\n",
              static_cast<long long>(images), threads, epoch_s);
  std::printf("%-10s %8s %10s %14s\n", "measure", "probes", "seconds", "/ FP32 epoch");
  for (const std::string m : {"hessian", "fisher", "loss"}) {
    mixed::SensitivityOptions opt;
    opt.measure = m;
    opt.w_bits = wc;
    opt.a_bits = ac;
    opt.probes = probes;
    opt.tolerance = 0;  // every probe: the worst case
    auto s = mixed::measure_sensitivity(*model, profile, x, y, opt);
    std::printf("%-10s %8d %10.1f %14.2f\n", m.c_str(), s.probes_used, s.seconds, s.seconds / epoch_s);
  }
  return 0;
}
