// Integer deployment benchmark (lib/deploy), measured side by side in one run: the latency of
// the lowered int8 network divided into the FP32 network's, per architecture, engine and batch,
// on 1x28x28 input with 10 classes (Fashion-MNIST's shape). Weights are random (BN statistics
// randomised), quantizers min/max-calibrated on random images. FP32, FP32 with BN folded and
// int8 forwards are interleaved within each repeat, and each column is the median over repeats,
// so load from other processes hits all three alike.
//   qbench_bench_int8 [--threads N] [--repeats R] [--batch B]... [--arch NAME]... [--engine E]...
//   qbench_bench_int8 --accuracy FASHION_MNIST_ROOT [--train-images N] [--threads N]
// The second form is the accuracy check: ResNet-8 trained briefly (1 epoch) on Fashion-MNIST,
// min/max-calibrated at w8a8 on 1024 training images under x86-onednn and qnnpack, lowered, and
// compared with its fake-quant twin on the 10,000 test images (deploy::compare), plus the
// integer and FP32 latency with train::measure_latency's method at batch 32.
// QNNPACK on x86 is not representative of ARM speed (platform.md): its times are labelled x86.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "qbench/data/dataset.h"
#include "qbench/deploy/deploy.h"
#include "qbench/models/models.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/train/train.h"
#include "bench_model.h"
#include "bench_util.h"

using namespace qbench;
using bench::median;
using bench::now_ms;

namespace {

struct Arch {
  std::string name;
  models::ModelSpec spec;
};

std::shared_ptr<quant::QuantModel> build(const Arch& a) { return bench::random_model(a.name, a.spec); }

void calibrate(quant::QuantModel& q, const at::Tensor& calib) {
  at::NoGradGuard ng;
  quant::set_observing(q, true);
  for (int64_t s = 0; s < calib.size(0); s += 256) q.forward(calib.narrow(0, s, std::min<int64_t>(256, calib.size(0) - s)));
  quant::set_observing(q, false);
  quant::compute_all_qparams(q);
  quant::set_quantizing(q, true);
}

int accuracy(const std::string& root, int64_t train_images) {
  auto train = data::seeded_subset(data::load_dataset("fashion-mnist", root, data::Split::Train), train_images, 0);
  auto test = std::make_shared<data::InMemoryDataset>(data::load_dataset("fashion-mnist", root, data::Split::Test));
  const auto calib = data::seeded_subset(train, 1024, 1).images;
  at::manual_seed(0);
  auto fp32 = models::make_model("resnet8", {1, 10, 28});
  config::TrainRecipe r;
  r.epochs = 1;
  const double t0 = now_ms();
  train::train_fp32(*fp32, train, r, 0);
  std::printf("resnet8: trained 1 epoch on %lld images in %.0f s\n", static_cast<long long>(train.size()),
              (now_ms() - t0) / 1000);
  const auto base = train::evaluate(*fp32, *test, 500);
  std::printf("  fp32 top-1 %.2f%%\n", base.top1);
  const auto batch = test->tensors().images.narrow(0, 0, 32).contiguous();
  for (const char* pname : {"x86-onednn", "qnnpack"}) {
    const auto& prof = quant::profile_registry().get(pname);
    if (!deploy::engine_available(prof.spec.engine)) continue;
    at::manual_seed(0);
    auto q = models::make_model("resnet8", {1, 10, 28});
    {
      at::NoGradGuard ng;
      auto src = fp32->named_parameters(), dst = q->named_parameters();
      for (auto& p : src) dst[p.key()].copy_(p.value());
      auto sb = fp32->named_buffers(), db = q->named_buffers();
      for (auto& b : sb) db[b.key()].copy_(b.value());
    }
    q->eval();
    quant::apply_bn_fold(*q, prof.bn_fold);
    quant::prepare_model(*q, prof, {});
    calibrate(*q, calib);
    auto low = deploy::lower(*q, prof, calib);
    const auto a = deploy::compare(*q, *low, *test, 500);
    std::printf("  %-10s w8a8: sim top-1 %.2f%%  int8 top-1 %.2f%%  agreement %.2f%%  logit cosine %.6f  SQNR %.1f dB (%lld images)\n",
                pname, a.sim_top1, a.deploy_top1, a.agreement, a.logit_cosine, a.sqnr_db,
                static_cast<long long>(a.images));
    for (const auto& row : a.layers)
      std::printf("    %-24s sqnr %6.1f dB  max err %.2f steps  op alone %.2f steps  mismatch %.3f%%\n", row.name.c_str(),
                  row.values.at("sqnr_db"), row.values.count("max_err_steps") ? row.values.at("max_err_steps") : 0.0,
                  row.values.count("op_max_err_steps") ? row.values.at("op_max_err_steps") : 0.0,
                  row.values.count("mismatch_pct") ? row.values.at("mismatch_pct") : 0.0);
    // Latency, train::measure_latency's method; FP32 and int8 alternate in blocks of 5 repeats.
    std::vector<double> lf, li;
    for (int k = 0; k < 6; ++k) {
      lf.push_back(train::measure_latency(*fp32, batch, 2, 5).p50_ms);
      li.push_back(deploy::measure_latency(*low, batch, 2, 5).p50_ms);
    }
    std::printf("  %-10s batch 32 latency p50: fp32 %.2f ms, int8 %.2f ms, fp32/int8 %.2fx\n", pname, median(lf),
                median(li), median(lf) / median(li));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 15;
  std::vector<int64_t> batches;
  std::vector<std::string> arch_names, engines;
  std::string accuracy_root;
  int64_t train_images = 20000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batches.push_back(std::atoll(argv[++i]));
    else if (a == "--arch" && i + 1 < argc) arch_names.push_back(argv[++i]);
    else if (a == "--engine" && i + 1 < argc) engines.push_back(argv[++i]);
    else if (a == "--accuracy" && i + 1 < argc) accuracy_root = argv[++i];
    else if (a == "--train-images" && i + 1 < argc) train_images = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--repeats R] [--batch B]... [--arch NAME]... [--engine onednn|qnnpack]...\n"
                   "       %s --accuracy FASHION_MNIST_ROOT [--train-images N] [--threads N]\n",
                   argv[0], argv[0]);
      return 2;
    }
  }
  if (batches.empty()) batches = {32, 1};
  if (engines.empty()) engines = {"onednn", "qnnpack"};
  at::set_num_threads(threads);
  if (!accuracy_root.empty()) return accuracy(accuracy_root, train_images);

  std::vector<Arch> archs;
  auto spec = [](double width) {
    models::ModelSpec s;
    s.in_channels = 1;
    s.num_classes = 10;
    s.image_size = 28;
    s.width = width;
    s.stem = models::Stem::Small;
    return s;
  };
  const std::vector<Arch> all = {{"resnet8", spec(1.0)}, {"resnet20", spec(1.0)}, {"resnet18", spec(0.25)},
                                 {"mobilenetv2", spec(0.5)}};
  for (const auto& a : all)
    if (arch_names.empty() || std::find(arch_names.begin(), arch_names.end(), a.name) != arch_names.end())
      archs.push_back(a);

  std::printf("int8 deployment vs FP32, 1x28x28 input, %d thread(s), median of %d interleaved repeats\n", threads,
              repeats);
  std::printf("%-22s %-8s %5s %10s %12s %9s %9s %14s %8s\n", "arch", "engine", "batch", "fp32 ms", "fp32-fold ms",
              "int8 ms", "fp32/int8", "fold/int8", "cosine");
  const auto calib = (at::rand({64, 1, 28, 28}).pow(2) * 3.0 - 0.8).contiguous();
  for (const auto& a : archs) {
    auto fp32 = build(a);
    auto folded = build(a);
    quant::apply_bn_fold(*folded, 0);
    for (const auto& engine : engines) {
      if (!deploy::engine_available(engine)) {
        std::printf("%-22s %-8s engine absent\n", a.name.c_str(), engine.c_str());
        continue;
      }
      const auto& prof = quant::profile_registry().get(engine == "onednn" ? "x86-onednn" : "qnnpack");
      auto q = bench::calibrated(build(a), prof, calib);
      at::Tensor sim;
      {
        at::NoGradGuard ng;
        sim = q->forward(calib);
      }
      auto low = deploy::lower(*q, prof, calib);
      auto dep = low->forward(calib);
      const double cosine = bench::logit_cosine(sim, dep);
      for (int64_t b : batches) {
        auto x = (at::rand({b, 1, 28, 28}).pow(2) * 3.0 - 0.8).contiguous();
        at::NoGradGuard ng;
        auto run_fp32 = [&] { return fp32->forward(x); };
        auto run_fold = [&] { return folded->forward(x); };
        auto run_int8 = [&] { return low->forward(x); };
        for (int w = 0; w < 5; ++w) {
          run_fp32();
          run_fold();
          run_int8();
        }
        std::vector<double> tf, tff, ti;
        for (int r = 0; r < repeats; ++r) {
          tf.push_back(bench::call_ms(run_fp32));
          tff.push_back(bench::call_ms(run_fold));
          ti.push_back(bench::call_ms(run_int8));
        }
        const double mf = median(tf), mff = median(tff), mi = median(ti);
        const std::string label = a.name + (a.spec.width != 1.0 ? " w" + std::to_string(a.spec.width).substr(0, 4) : "");
        std::printf("%-22s %-8s %5lld %10.2f %12.2f %9.2f %8.2fx %13.2fx %8.5f%s\n", label.c_str(), engine.c_str(),
                    static_cast<long long>(b), mf, mff, mi, mf / mi, mff / mi, cosine,
                    engine == "qnnpack" ? "  (x86 QNNPACK: not ARM speed)" : "");
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
