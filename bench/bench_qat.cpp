// QAT benchmark, measured side by side in one run:
//  1. one training step of LSQ w4a4 divided by the same FP32 step (same model, batch, data);
//  2. fake-quant forward+backward throughput (GB/s of input) for qbench's LSQ quantizer, for the
//     LibTorch built-ins (at::_fake_quantize_learnable_per_tensor_affine, LSQ's own built-in, and
//     at::fake_quantize_per_tensor_affine) and for a plain tensor copy (the memory-bandwidth
//     limit).
//   qbench_bench_qat [--threads N] [--batch B] [--steps S] [--arch NAME] [--method NAME]
#include <ATen/ATen.h>
#include <torch/optim/sgd.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "qbench/common/memory.h"
#include "qbench/models/models.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/profile.h"
#include "qbench/qat/method.h"
#include "qbench/train/train.h"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// Seconds per call of f: the best of `blocks` blocks of `reps` calls, the least disturbed
// estimate on a shared machine.
template <typename F>
double per_call_s(F&& f, int warmup, int reps, int blocks = 3) {
  for (int i = 0; i < warmup; ++i) f();
  double best = 1e30;
  for (int block = 0; block < blocks; ++block) {
    double t0 = now_s();
    for (int i = 0; i < reps; ++i) f();
    best = std::min(best, (now_s() - t0) / reps);
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, batch = 128, steps = 10;
  std::string arch = "resnet20", method = "lsq", profile;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (a == "--arch" && i + 1 < argc) arch = argv[++i];
    else if (a == "--method" && i + 1 < argc) method = argv[++i];
    else if (a == "--profile" && i + 1 < argc) profile = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--batch B] [--steps S] [--arch NAME] [--method NAME] [--profile PREFIX]\n", argv[0]);
      return 2;
    }
  }
  // What `qbench run` does first (apps/qbench): keep freed activations in the heap.
  const std::string alloc = qbench::tune_allocator();
  at::set_num_threads(threads);
  at::manual_seed(0);
  auto x = at::randn({batch, 1, 28, 28});
  auto y = at::randint(0, 10, {batch}, at::kLong);
  auto fp32 = qbench::models::make_model(arch, {1, 10, 28});
  auto quantized = qbench::models::make_model(arch, {1, 10, 28});
  const auto& prof = qbench::quant::profile_registry().get("academic");
  qbench::qat::attach_qat_quantizers(*quantized, qbench::qat::qat_method_registry().get(method), prof, 4, 4);
  qbench::qat::init_quantizers(*quantized, x, batch);
  if (!profile.empty()) {
    // Chrome traces of 3 steps each (PREFIX-fp32.json, PREFIX-<method>.json): where the time goes.
    for (auto* m : {fp32.get(), quantized.get()}) {
      torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
      m->train();
      const std::string file = profile + (m == fp32.get() ? "-fp32" : "-" + method) + ".json";
      torch::autograd::profiler::RecordProfile guard(file);
      for (int i = 0; i < 3; ++i) {
        opt.zero_grad();
        qbench::train::smoothed_cross_entropy(m->forward(x), y, 0.1).backward();
        opt.step();
      }
      std::fprintf(stderr, "wrote %s\n", file.c_str());
    }
  }
  // One SGD step of each model, timed in alternating blocks (fp32, quantized, fp32, ...) so that
  // both see the same machine; each keeps its best block.
  torch::optim::SGD opt_fp32(fp32->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  torch::optim::SGD opt_q(quantized->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  fp32->train();
  quantized->train();
  auto step = [&](qbench::quant::QuantModel& m, torch::optim::SGD& opt) {
    opt.zero_grad();
    qbench::train::smoothed_cross_entropy(m.forward(x), y, 0.1).backward();
    opt.step();
  };
  double t_fp32 = 1e30, t_q = 1e30;
  for (int i = 0; i < 2; ++i) step(*fp32, opt_fp32), step(*quantized, opt_q);  // warm-up
  for (int block = 0; block < 4; ++block) {
    t_fp32 = std::min(t_fp32, per_call_s([&] { step(*fp32, opt_fp32); }, 0, steps, 1));
    t_q = std::min(t_q, per_call_s([&] { step(*quantized, opt_q); }, 0, steps, 1));
  }
  std::printf("training step, %s, batch %d, %d threads, allocator %s:\n", arch.c_str(), batch, threads,
              alloc.c_str());
  std::printf("  fp32 %.2f ms   %s w4a4 %.2f ms   ratio %.2fx (target <= 1.3x)\n", t_fp32 * 1e3, method.c_str(),
              t_q * 1e3, t_q / t_fp32);

  // Fake-quant kernels on an activation-sized tensor (batch x 16 x 28 x 28).
  auto a = at::randn({batch, 16, 28, 28}).abs_().requires_grad_(true);
  const double bytes = static_cast<double>(a.numel()) * 4;
  auto scale = at::tensor({0.1f}).requires_grad_(true);
  auto zp = at::tensor({0.0f});
  auto gout = at::ones_like(a);
  auto q = qbench::qat::qat_method_registry().get(method).make_activation([] {
    qbench::quant::QuantScheme s;
    s.bits = 4;
    s.signedness = qbench::quant::Signedness::Auto;
    return s;
  }());
  {
    torch::NoGradGuard ng;
    q->set_observing(true);
    q->forward(a);
    q->set_observing(false);
  }
  q->compute_qparams();
  q->set_quantizing(true);
  const double g = 1.0 / std::sqrt(static_cast<double>(a.numel() / batch) * 15.0);
  auto run_fb = [&](auto&& fn) {
    return per_call_s(
        [&] {
          auto out = fn();
          out.backward(gout);
        },
        2, steps);
  };
  const double t_ours = run_fb([&] { return q->forward(a); });
  const double t_learn = run_fb([&] { return at::_fake_quantize_learnable_per_tensor_affine(a, scale, zp, 0, 15, g); });
  const double t_fixed = run_fb([&] { return at::fake_quantize_per_tensor_affine(a, 0.1, 0, 0, 15); });
  const double t_copy = per_call_s([&] { auto c = a.detach().clone(); (void)c; }, 2, steps);
  std::printf("fake-quant forward+backward on %lld floats (%.1f MB), GB/s of input:\n",
              static_cast<long long>(a.numel()), bytes / 1e6);
  std::printf("  qbench %-6s %8.2f GB/s  (%.2fx the built-in learnable)\n", method.c_str(), bytes / t_ours / 1e9,
              t_learn / t_ours);
  std::printf("  at::_fake_quantize_learnable_per_tensor_affine %8.2f GB/s\n", bytes / t_learn / 1e9);
  std::printf("  at::fake_quantize_per_tensor_affine (fixed)    %8.2f GB/s\n", bytes / t_fixed / 1e9);
  std::printf("  plain copy (bandwidth limit)                   %8.2f GB/s  (qbench at %.0f%% of it)\n",
              bytes / t_copy / 1e9, 100.0 * t_copy / t_ours);
  return 0;
}
