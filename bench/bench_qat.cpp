// QAT benchmark, measured side by side in one run:
//  1. one training step of each method at w4a4 divided by the same FP32 step (same model, batch,
//     data), each against its target (issue 21: LSQ <= 1.15x, DSQ <= 1.35x; 1.3x for the others,
//     issue 3's);
//  2. fake-quant forward+backward throughput (GB/s of input) for each method's activation
//     quantizer, for the LibTorch built-ins (at::_fake_quantize_learnable_per_tensor_affine,
//     LSQ's own built-in, and at::fake_quantize_per_tensor_affine) and for a plain tensor copy
//     (the memory-bandwidth limit).
//   qbench_bench_qat [--threads N] [--batch B] [--steps S] [--arch NAME] [--method A,B,...|all]
// The default methods are lsq,dsq: the two with their own targets.
#include <ATen/ATen.h>
#include <torch/optim/sgd.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

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

// The step-ratio target of a method (issue 21 for LSQ and DSQ, issue 3 for the rest).
double target_ratio(const std::string& method) {
  if (method == "lsq") return 1.15;
  if (method == "dsq") return 1.35;
  return 1.3;
}

std::vector<std::string> split_methods(const std::string& list) {
  if (list == "all") return qbench::qat::qat_method_registry().names();
  std::vector<std::string> out;
  std::string cur;
  for (char c : list + ",") {
    if (c != ',') {
      cur += c;
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, batch = 128, steps = 10;
  std::string arch = "resnet20", method_list = "lsq,dsq", profile;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (a == "--arch" && i + 1 < argc) arch = argv[++i];
    else if (a == "--method" && i + 1 < argc) method_list = argv[++i];
    else if (a == "--profile" && i + 1 < argc) profile = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--batch B] [--steps S] [--arch NAME] [--method A,B,...|all] [--profile PREFIX]\n", argv[0]);
      return 2;
    }
  }
  // What `qbench run` does first (apps/qbench): keep freed activations in the heap.
  const std::string alloc = qbench::tune_allocator();
  at::set_num_threads(threads);
  at::manual_seed(0);
  auto x = at::randn({batch, 1, 28, 28});
  const auto& prof = qbench::quant::profile_registry().get("academic");
  auto y = at::randint(0, 10, {batch}, at::kLong);
  const std::vector<std::string> methods = split_methods(method_list);
  for (const auto& m : methods) qbench::qat::qat_method_registry().get(m);  // unknown names fail here
  auto fp32 = qbench::models::make_model(arch, {1, 10, 28});
  fp32->train();
  torch::optim::SGD opt_fp32(fp32->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  struct Quantized {
    std::string method;
    std::shared_ptr<qbench::quant::QuantModel> model;
    std::unique_ptr<torch::optim::SGD> opt;
    double t = 1e30;
  };
  std::vector<Quantized> qs;
  for (const auto& m : methods) {
    auto model = qbench::models::make_model(arch, {1, 10, 28});
    qbench::qat::attach_qat_quantizers(*model, qbench::qat::qat_method_registry().get(m), prof, 4, 4);
    qbench::qat::init_quantizers(*model, x, batch);
    model->train();
    auto opt = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                   torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
    qs.push_back({m, model, std::move(opt)});
  }
  auto step = [&](qbench::quant::QuantModel& m, torch::optim::SGD& opt) {
    opt.zero_grad();
    qbench::train::smoothed_cross_entropy(m.forward(x), y, 0.1).backward();
    opt.step();
  };
  if (!profile.empty()) {
    // Chrome traces of 3 steps each (PREFIX-fp32.json, PREFIX-<method>.json): where the time goes.
    auto trace = [&](qbench::quant::QuantModel& m, torch::optim::SGD& opt, const std::string& name) {
      const std::string file = profile + "-" + name + ".json";
      torch::autograd::profiler::RecordProfile guard(file);
      for (int i = 0; i < 3; ++i) step(m, opt);
      std::fprintf(stderr, "wrote %s\n", file.c_str());
    };
    trace(*fp32, opt_fp32, "fp32");
    for (auto& q : qs) trace(*q.model, *q.opt, q.method);
  }
  // One SGD step of each model, timed in alternating blocks (fp32, each method, fp32, ...) so that
  // all see the same machine; each keeps its best block.
  double t_fp32 = 1e30;
  for (int i = 0; i < 2; ++i) {  // warm-up
    step(*fp32, opt_fp32);
    for (auto& q : qs) step(*q.model, *q.opt);
  }
  for (int block = 0; block < 4; ++block) {
    t_fp32 = std::min(t_fp32, per_call_s([&] { step(*fp32, opt_fp32); }, 0, steps, 1));
    for (auto& q : qs) q.t = std::min(q.t, per_call_s([&] { step(*q.model, *q.opt); }, 0, steps, 1));
  }
  std::printf("training step, %s, batch %d, %d threads, allocator %s:\n", arch.c_str(), batch, threads,
              alloc.c_str());
  std::printf("  fp32          %8.2f ms\n", t_fp32 * 1e3);
  for (const auto& q : qs) {
    const double r = q.t / t_fp32, target = target_ratio(q.method);
    std::printf("  %-6s w4a4   %8.2f ms   ratio %.2fx (target <= %.2fx: %s)\n", q.method.c_str(), q.t * 1e3, r, target,
                r <= target ? "met" : "NOT met");
  }

  // Fake-quant kernels on an activation-sized tensor (batch x 16 x 28 x 28).
  auto a = at::randn({batch, 16, 28, 28}).abs_().requires_grad_(true);
  const double bytes = static_cast<double>(a.numel()) * 4;
  auto scale = at::tensor({0.1f}).requires_grad_(true);
  auto zp = at::tensor({0.0f});
  auto gout = at::ones_like(a);
  auto run_fb = [&](auto&& fn) {
    return per_call_s(
        [&] {
          auto out = fn();
          out.backward(gout);
        },
        2, steps);
  };
  const double g = 1.0 / std::sqrt(static_cast<double>(a.numel() / batch) * 15.0);
  const double t_learn = run_fb([&] { return at::_fake_quantize_learnable_per_tensor_affine(a, scale, zp, 0, 15, g); });
  const double t_fixed = run_fb([&] { return at::fake_quantize_per_tensor_affine(a, 0.1, 0, 0, 15); });
  const double t_copy = per_call_s([&] { auto c = a.detach().clone(); (void)c; }, 2, steps);
  std::printf("fake-quant forward+backward on %lld floats (%.1f MB), GB/s of input:\n",
              static_cast<long long>(a.numel()), bytes / 1e6);
  for (const auto& m : methods) {
    auto q = qbench::qat::qat_method_registry().get(m).make_activation([] {
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
    const double t_ours = run_fb([&] { return q->forward(a); });
    std::printf("  qbench %-6s %8.2f GB/s  (%.2fx the built-in learnable, %.0f%% of a copy)\n", m.c_str(),
                bytes / t_ours / 1e9, t_learn / t_ours, 100.0 * t_copy / t_ours);
  }
  std::printf("  at::_fake_quantize_learnable_per_tensor_affine %8.2f GB/s\n", bytes / t_learn / 1e9);
  std::printf("  at::fake_quantize_per_tensor_affine (fixed)    %8.2f GB/s\n", bytes / t_fixed / 1e9);
  std::printf("  plain copy (bandwidth limit)                   %8.2f GB/s\n", bytes / t_copy / 1e9);
  return 0;
}
