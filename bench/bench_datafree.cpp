// Data-free calibration (ZeroQ, DSG; lib/ptq/datafree.h): what synthesising 32 images costs at the
// reference settings (500 steps, lr 0.5) on the quick-start input (1 x 28 x 28), and, given a
// trained checkpoint, the top-1 of minmax PTQ calibrated on real images against ZeroQ's and DSG's.
//   qbench_bench_datafree                         cost per 32 images on resnet8 and resnet20
//   qbench_bench_datafree --accuracy WEIGHTS [--arch resnet20] [--data DIR] [--images 64] [--test N]
//       WEIGHTS: a safetensors checkpoint trained on Fashion-MNIST (e.g. a cached quick-start
//       baseline under results/cache/baselines/).
// (These were hidden Catch2 cases that CI never ran; a benchmark is where they belong.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/utils.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "qbench/common/memory.h"
#include "qbench/data/dataset.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/ptq/datafree.h"
#include "qbench/ptq/ptq.h"
#include "qbench/quant/profile.h"

using namespace qbench;

namespace {

config::CalibrationRecipe reference_settings() {
  config::CalibrationRecipe p;  // ZeroQ's code: 500 steps, Adam lr 0.5, batches of 32
  return p;
}

/// A zoo model whose BatchNorms hold the running statistics of a few random batches.
std::shared_ptr<quant::QuantModel> model_with_stats(const std::string& arch) {
  at::manual_seed(11);
  auto m = models::make_model(arch, {1, 10, 28});
  m->train();
  {
    torch::NoGradGuard ng;
    for (int i = 0; i < 8; ++i) m->forward(at::randn({64, 1, 28, 28}));
  }
  m->eval();
  return m;
}

int cost() {
  for (const std::string arch : {"resnet8", "resnet20"}) {
    auto m = model_with_stats(arch);
    for (const std::string method : {"zeroq", "dsg"}) {
      const std::clock_t c0 = std::clock();
      auto r = ptq::synthesize_calibration(*m, method, reference_settings(), 32, {1, 28, 28}, 0, {});
      const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      std::printf("%-8s %-5s  %.1f s wall, %.1f s CPU / 32 images  BN loss %.4g -> %.4g\n", arch.c_str(),
                  method.c_str(), r.seconds, cpu, r.initial_bn_loss, r.final_bn_loss);
      std::fflush(stdout);
    }
  }
  return 0;
}

int accuracy(const std::string& weights, const std::string& arch, const std::string& root, int64_t n_calib,
             int64_t n_test) {
  auto test = data::load_dataset("fashion-mnist", root, data::Split::Test);
  if (n_test > 0) test = data::seeded_subset(test, n_test, 1);
  const auto train = data::load_dataset("fashion-mnist", root, data::Split::Train);
  auto load = [&] {
    auto m = models::make_model(arch, {1, 10, 28});
    models::import_weights(*m, weights);
    m->eval();
    return m;
  };
  auto top1 = [&](quant::QuantModel& m) {
    torch::NoGradGuard ng;
    int64_t right = 0;
    for (int64_t s = 0; s < test.size(); s += 500) {
      const int64_t len = std::min<int64_t>(500, test.size() - s);
      right += m.forward(test.images.narrow(0, s, len)).argmax(1).eq(test.labels.narrow(0, s, len)).sum().item<int64_t>();
    }
    return 100.0 * static_cast<double>(right) / static_cast<double>(test.size());
  };
  auto fp32 = load();
  std::printf("%s: FP32 top-1 %.2f%% on %lld test images; %lld calibration images\n", arch.c_str(), top1(*fp32),
              static_cast<long long>(test.size()), static_cast<long long>(n_calib));
  std::map<std::string, at::Tensor> sources;
  sources["data"] = data::seeded_subset(train, n_calib, 0).images;
  for (const std::string method : {"zeroq", "dsg"}) {
    auto r = ptq::synthesize_calibration(*fp32, method, reference_settings(), n_calib, {1, 28, 28}, 0, {});
    std::printf("  %-5s synthesis %.1f s (%.1f s / 32 images), BN loss %.4g -> %.4g\n", method.c_str(), r.seconds,
                r.seconds * 32.0 / static_cast<double>(n_calib), r.initial_bn_loss, r.final_bn_loss);
    sources[method] = r.images;
  }
  const auto& profile = quant::profile_registry().get("academic");
  for (const auto& [wb, ab] : std::vector<std::pair<int, int>>{{8, 8}, {4, 4}})
    for (const std::string src : {"data", "zeroq", "dsg"}) {
      auto m = load();
      if (profile.bn_fold >= 0) quant::apply_bn_fold(*m, profile.bn_fold);
      quant::AlgorithmContext ctx;
      ctx.profile = &profile;
      ctx.w_bits = wb;
      ctx.a_bits = ab;
      ctx.calib_images = sources[src];
      ctx.calib_batch_size = 256;
      ptq::MinMaxCalibration().apply(*m, ctx);
      std::printf("  w%da%d minmax calibrated on %-5s: top-1 %.2f%%\n", wb, ab, src.c_str(), top1(*m));
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tune_allocator();
  at::set_num_threads(1);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return cost();
  if (args[0] != "--accuracy" || args.size() < 2) {
    std::fprintf(stderr, "usage: %s [--accuracy WEIGHTS [--arch A] [--data DIR] [--images N] [--test N]]\n", argv[0]);
    return 2;
  }
  std::string arch = "resnet20", root = "/usr/share/datasets/fashion-mnist";
  int64_t images = 64, test = 0;
  for (std::size_t i = 2; i + 1 < args.size(); i += 2) {
    if (args[i] == "--arch") arch = args[i + 1];
    else if (args[i] == "--data") root = args[i + 1];
    else if (args[i] == "--images") images = std::stoll(args[i + 1]);
    else if (args[i] == "--test") test = std::stoll(args[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", args[i].c_str());
      return 2;
    }
  }
  return accuracy(args[1], arch, root, images, test);
}
