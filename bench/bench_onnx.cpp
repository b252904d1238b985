// The ONNX executor's cost next to the hand-written zoo network: ResNet-20 (lib/models) against the
// same structure exported by PyTorch (tests/onnx/make_opset_fixtures.py -> resnet20.onnx) and
// imported, with the same weights: FP32 inference in eval mode at batch 1 and 32, and a training
// step (forward, backward, SGD step) at batch 128, the two nets timed in alternating blocks in one
// run (so machine noise hits both). Prints the median times and the ratios (target <= 1.05).
//
// usage: /usr/bin/python3 tests/onnx/make_opset_fixtures.py /tmp/fx
//        qbench_bench_onnx /tmp/fx/resnet20.onnx [repeats] [threads]
#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "qbench/common/memory.h"
#include "qbench/models/models.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"

namespace {

// With one thread the work runs on the calling thread, so its CPU time is what the forward cost,
// whatever else the (shared) machine runs; with more threads the wall clock is all there is.
bool g_cpu_clock = false;

double now_ms() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double time_ms(qbench::quant::QuantModel& m, const at::Tensor& x, int n) {
  const double t0 = now_ms();
  for (int i = 0; i < n; ++i) m.forward(x);
  return (now_ms() - t0) / n;
}

double train_ms(qbench::quant::QuantModel& m, torch::optim::SGD& opt, const at::Tensor& x, const at::Tensor& y, int n) {
  const double t0 = now_ms();
  for (int i = 0; i < n; ++i) {
    opt.zero_grad();
    auto loss = at::cross_entropy_loss(m.forward(x), y);
    loss.backward();
    opt.step();
  }
  return (now_ms() - t0) / n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s resnet20.onnx [repeats]\n", argv[0]);
    return 2;
  }
  const std::string alloc = qbench::tune_allocator();  // as qbench's main does, before any tensor
  const int repeats = argc > 2 ? std::stoi(argv[2]) : 15;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  at::set_num_threads(threads);
  g_cpu_clock = threads == 1;
  qbench::onnx::ImportOptions opt;
  opt.input_shape = {1, 28, 28};
  auto onnx_model = qbench::onnx::make_model(qbench::onnx::import_file(argv[1], opt), true);
  auto zoo = qbench::models::make_model("resnet20", {1, 10, 28});
  onnx_model->eval();
  zoo->eval();
  // The same weights in both (the layers come in the same order with the same shapes), so that the
  // values, not only the structure, match: activations of other magnitudes (denormals) would time
  // differently.
  {
    at::NoGradGuard ng;
    const auto a = zoo->quant_layers(), b = onnx_model->quant_layers();
    if (a.size() != b.size()) {
      std::fprintf(stderr, "layer counts differ\n");
      return 1;
    }
    for (size_t i = 0; i < a.size(); ++i) {
      b[i].layer->weight_tensor().copy_(a[i].layer->weight_tensor());
      auto* ca = dynamic_cast<qbench::quant::QLinearImpl*>(a[i].layer);
      auto* cb = dynamic_cast<qbench::quant::QLinearImpl*>(b[i].layer);
      if (ca && cb) cb->bias.copy_(ca->bias);
      if (a[i].bn && b[i].bn) {
        b[i].bn->weight.copy_(a[i].bn->weight);
        b[i].bn->bias.copy_(a[i].bn->bias);
        b[i].bn->running_mean.copy_(a[i].bn->running_mean);
        b[i].bn->running_var.copy_(a[i].bn->running_var);
      }
    }
    const auto x = at::randn({8, 1, 28, 28});
    std::printf("same weights: max |zoo - onnx| logits = %.3g\n", (zoo->forward(x) - onnx_model->forward(x)).abs().max().item<double>());
  }
  std::printf("allocator: %s\n", alloc.c_str());
  std::printf("ResNet-20, 28x28, FP32 eval, %d threads (%s): %zu ONNX steps, %zu zoo layers / %zu ONNX layers\n",
              threads, g_cpu_clock ? "thread CPU time" : "wall clock", onnx_model->steps().size(), zoo->quant_layers().size(), onnx_model->quant_layers().size());
  for (int64_t batch : {1, 32}) {
    at::NoGradGuard ng;
    const auto x = at::randn({batch, 1, 28, 28});
    const int per_block = batch == 1 ? 50 : 5;
    time_ms(*zoo, x, per_block);
    time_ms(*onnx_model, x, per_block);
    std::vector<double> tz, to;
    for (int r = 0; r < repeats; ++r) {
      tz.push_back(time_ms(*zoo, x, per_block));
      to.push_back(time_ms(*onnx_model, x, per_block));
    }
    const double mz = median(tz), mo = median(to);
    std::printf("inference batch %3lld: zoo %.3f ms  onnx %.3f ms  ratio onnx/zoo %.3f\n", static_cast<long long>(batch),
                mz, mo, mo / mz);
  }
  {
    // A training step in train mode (batch statistics, gradients into every parameter).
    zoo->train();
    onnx_model->train();
    torch::optim::SGD oz(zoo->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    torch::optim::SGD oo(onnx_model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    const auto x = at::randn({128, 1, 28, 28});
    const auto y = at::randint(0, 10, {128}, at::kLong);
    const int per_block = 2;
    train_ms(*zoo, oz, x, y, per_block);
    train_ms(*onnx_model, oo, x, y, per_block);
    std::vector<double> tz, to;
    for (int r = 0; r < repeats; ++r) {
      tz.push_back(train_ms(*zoo, oz, x, y, per_block));
      to.push_back(train_ms(*onnx_model, oo, x, y, per_block));
    }
    const double mz = median(tz), mo = median(to);
    std::printf("training step batch 128: zoo %.2f ms  onnx %.2f ms  ratio onnx/zoo %.3f\n", mz, mo, mo / mz);
  }
  return 0;
}
