// ONNX Runtime deployment benchmark (issue 17's speed criterion), measured side by side in one
// run: ResNet-20 (or --arch) on 1x28x28 input with 10 classes, random weights (BN statistics randomised),
// min/max quantizers calibrated at w8a8 on random images. ONNX Runtime (onnxruntime-node, full
// graph optimizations) runs the QDQ export of the network calibrated under ort-cpu and the FP32
// export of the same network; LibTorch runs the same weights calibrated under x86-onednn and
// lowered to its int8 operators (lib/deploy), and the FP32 network with BN folded. In each round,
// per batch, one Node process times the two ORT models alternating run by run
// (exporter::time_ort_models), then the two LibTorch networks alternate likewise in this process,
// so the four engines' samples spread over the same period and load from other processes hits them
// alike; each column is the median over all rounds' runs. Also printed: the int8 coverage of the
// graph ORT optimized (convs/matmuls that run as integer kernels) and each int8 network's logit
// cosine to its fake-quant simulation.
//   qbench_bench_ort [--threads N] [--rounds R] [--reps K] [--batch B]... [--arch A]... [--input C,H,W]
// --arch takes zoo architectures (default: resnet20, then resnet18, whose 64-512-channel convs give
// the integer kernels more arithmetic per byte moved than ResNet-20's 16-64); --input the image
// shape (default 1,28,28).
// Target (issue 17): ORT int8 at least 3x faster than ORT FP32 at batch 32 on an AVX-512 VNNI CPU.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "qbench/deploy/deploy.h"
#include "qbench/export/onnx_export.h"
#include "qbench/export/ort.h"
#include "qbench/models/models.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "bench_model.h"
#include "bench_util.h"

using namespace qbench;
using bench::median;
namespace fs = std::filesystem;

namespace {

/// The network timed: a zoo architecture at an input shape (default 1x28x28, 10 classes).
struct Net {
  std::string arch;
  models::ModelSpec spec;
  /// `n` images of the network's input shape, in [-0.8, 2.2] (squared uniform), contiguous.
  at::Tensor images(int64_t n) const {
    return (at::rand({n, spec.in_channels, spec.image_size, spec.image_size}).pow(2) * 3.0 - 0.8).contiguous();
  }
};

/// The network with the same random weights on every call (seeded), BN statistics randomised.
std::shared_ptr<quant::QuantModel> build(const Net& net) { return bench::random_model(net.arch, net.spec); }

/// build() with BN folded as the profile says and min/max quantizers calibrated at w8a8.
std::shared_ptr<quant::QuantModel> calibrated(const Net& net, const std::string& profile, const at::Tensor& calib) {
  return bench::calibrated(build(net), quant::profile_registry().get(profile), calib);
}

int bench_net(const Net& net, int threads, int rounds, int reps, const std::vector<int64_t>& batches);

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, rounds = 5, reps = 10;
  std::vector<int64_t> batches;
  std::vector<std::string> archs;
  models::ModelSpec spec;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batches.push_back(std::atoll(argv[++i]));
    else if (a == "--arch" && i + 1 < argc) archs.push_back(argv[++i]);
    else if (a == "--input" && i + 1 < argc) {
      int c = 0, h = 0, w = 0;
      if (std::sscanf(argv[++i], "%d,%d,%d", &c, &h, &w) != 3 || c < 1 || h < 1 || h != w) {
        std::fprintf(stderr, "--input takes C,H,W with H = W, e.g. 3,32,32\n");
        return 2;
      }
      spec.in_channels = c;
      spec.image_size = h;
    }
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--rounds R] [--reps K] [--batch B]... [--arch A]... [--input C,H,W]\n", argv[0]);
      return 2;
    }
  }
  if (batches.empty()) batches = {1, 32};
  if (archs.empty()) archs = {"resnet20", "resnet18"};
  if (const std::string why = exporter::ort_unavailable_reason(); !why.empty()) {
    std::fprintf(stderr, "ONNX Runtime is not available: %s\n", why.c_str());
    return 1;
  }
  at::set_num_threads(threads);
  for (const auto& arch : archs)
    if (const int rc = bench_net({arch, spec}, threads, rounds, reps, batches); rc != 0) return rc;
  return 0;
}

namespace {

int bench_net(const Net& net, int threads, int rounds, int reps, const std::vector<int64_t>& batches) {
  const auto& spec = net.spec;
  const auto calib = net.images(64);

  // ORT: the ort-cpu network as QDQ and as FP32 (the same network, quantizers ignored).
  std::string tmpl = (fs::temp_directory_path() / "qbench-bench-ort-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::fprintf(stderr, "cannot create a scratch folder in %s\n", fs::temp_directory_path().c_str());
    return 1;
  }
  const fs::path dir = tmpl;
  const std::string int8_path = (dir / (net.arch + ".qdq.onnx")).string(), fp32_path = (dir / (net.arch + ".fp32.onnx")).string();
  auto ort_model = calibrated(net, "ort-cpu", calib);
  exporter::ExportOptions eo;
  eo.sample_shape = {spec.in_channels, spec.image_size, spec.image_size};
  eo.format = exporter::Format::Qdq;
  exporter::export_onnx(*ort_model, int8_path, eo);
  eo.format = exporter::Format::Fp32;
  exporter::export_onnx(*ort_model, fp32_path, eo);
  exporter::OrtRequest req;
  req.model = int8_path;
  req.images = calib;
  req.threads = threads;
  req.optimized_model = (dir / (net.arch + ".qdq.optimized.onnx")).string();
  const auto check = exporter::run_ort(req);
  at::Tensor ort_sim;
  {
    at::NoGradGuard ng;
    ort_sim = ort_model->forward(calib);
  }

  // LibTorch: the same weights under x86-onednn, lowered; FP32 with BN folded.
  auto fp32 = build(net);
  quant::apply_bn_fold(*fp32, 0);
  auto onednn = calibrated(net, "x86-onednn", calib);
  at::Tensor lt_sim;
  {
    at::NoGradGuard ng;
    lt_sim = onednn->forward(calib);
  }
  auto low = deploy::lower(*onednn, quant::profile_registry().get("x86-onednn"), calib);

  const auto& c = check.census;
  std::printf("%s, %lldx%lldx%lld, %d thread(s): ONNX Runtime %s (onnxruntime-node) vs LibTorch, "
              "median of %d rounds x %d interleaved runs\n",
              net.arch.c_str(), static_cast<long long>(spec.in_channels), static_cast<long long>(spec.image_size),
              static_cast<long long>(spec.image_size), threads, check.version.c_str(), rounds, reps);
  std::printf("ORT int8 graph as optimized: %d of %d convs/matmuls as integer kernels (%.1f%% int8 coverage)\n",
              c.int8_compute, c.int8_compute + c.float_compute, c.int8_coverage());
  std::string ops;
  for (const auto& [op, n] : c.ops) ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
  std::printf("  its operators: %s\n", ops.c_str());
  std::printf("logit cosine to the fake-quant simulation (64 images): ORT int8 (ort-cpu) %.5f, "
              "LibTorch int8 (x86-onednn) %.5f\n",
              bench::logit_cosine(check.logits, ort_sim), bench::logit_cosine(low->forward(calib), lt_sim));
  std::printf("%5s %11s %11s %10s %8s %10s %10s %10s %15s\n", "batch", "ort-int8 ms", "ort-fp32 ms", "ort f/i8",
              "(target)", "lt-int8 ms", "lt-fp32 ms", "lt f/i8", "lt-i8/ort-i8");
  for (int64_t b : batches) {
    const auto x = net.images(b);
    at::NoGradGuard ng;
    auto run_int8 = [&] { return low->forward(x); };
    auto run_fp32 = [&] { return fp32->forward(x); };
    for (int w = 0; w < 5; ++w) {
      run_int8();
      run_fp32();
    }
    std::vector<double> oi, of, li, lf;
    for (int r = 0; r < rounds; ++r) {
      const auto o = exporter::time_ort_models({int8_path, fp32_path}, x, threads, 5, reps, 1);
      oi.insert(oi.end(), o[0].times_ms.begin(), o[0].times_ms.end());
      of.insert(of.end(), o[1].times_ms.begin(), o[1].times_ms.end());
      for (int k = 0; k < reps; ++k) {
        li.push_back(bench::call_ms(run_int8));
        lf.push_back(bench::call_ms(run_fp32));
      }
    }
    const double moi = median(oi), mof = median(of), mli = median(li), mlf = median(lf);
    std::printf("%5lld %11.3f %11.3f %9.2fx %8s %10.3f %10.3f %9.2fx %14.2fx\n", static_cast<long long>(b), moi, mof,
                mof / moi, b == 32 ? ">= 3x" : "", mli, mlf, mlf / mli, mli / moi);
    std::fflush(stdout);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

}  // namespace
