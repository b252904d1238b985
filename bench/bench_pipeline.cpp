// Pipeline benchmark: for each small architecture, images/s of an FP32 training step, of FP32
// inference and of fake-quantized (w8a8 minmax, academic) inference, measured side by side in
// one run on synthetic input of the dataset's shape, plus the ratios between them.
//   qbench_bench_pipeline [--threads N] [--batch B] [--steps S] [--arch NAME ...]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/quant/profile.h"
#include "qbench/train/train.h"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
template <typename F>
double per_call_s(F&& f, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) f();
  double t0 = now_s();
  for (int i = 0; i < reps; ++i) f();
  return (now_s() - t0) / reps;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, batch = 128, steps = 20;
  std::vector<std::string> archs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (a == "--arch" && i + 1 < argc) archs.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--batch B] [--steps S] [--arch NAME ...]\n", argv[0]);
      return 2;
    }
  }
  if (archs.empty()) archs = {"resnet8", "resnet20"};
  at::set_num_threads(threads);
  std::printf("threads %d, batch %d, %d timed steps, 28x28x1 input\n", threads, batch, steps);
  std::printf("%-10s %12s %12s %14s %10s %10s\n", "arch", "train img/s", "fp32 img/s", "fakeq img/s", "train/inf",
              "fq/fp32");
  for (const auto& arch : archs) {
    at::manual_seed(0);
    auto model = qbench::models::make_model(arch, {1, 10, 28});
    auto x = at::randn({batch, 1, 28, 28});
    auto y = at::randint(0, 10, {batch}, at::kLong);
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
    model->train();
    const double t_train = per_call_s(
        [&] {
          opt.zero_grad();
          auto loss = qbench::train::smoothed_cross_entropy(model->forward(x), y, 0.1);
          loss.backward();
          opt.step();
        },
        3, steps);
    model->eval();
    torch::NoGradGuard ng;
    const double t_inf = per_call_s([&] { model->forward(x); }, 3, steps);
    qbench::quant::AlgorithmContext ctx;
    ctx.profile = &qbench::quant::profile_registry().get("academic");
    ctx.w_bits = ctx.a_bits = 8;
    ctx.calib_images = x;
    qbench::ptq::MinMaxCalibration().apply(*model, ctx);
    const double t_fq = per_call_s([&] { model->forward(x); }, 3, steps);
    std::printf("%-10s %12.0f %12.0f %14.0f %10.2f %10.2f\n", arch.c_str(), batch / t_train, batch / t_inf,
                batch / t_fq, t_train / t_inf, t_fq / t_inf);
  }
  return 0;
}
