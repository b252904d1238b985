// The cost of reconstruction PTQ against QAT, measured side by side in one run on the same model,
// data and thread count: wall time of `qdrop` (MSE calibration + block reconstruction with the
// given iterations per unit, 1024 calibration images) divided by the wall time of one epoch of
// LSQ QAT with the aligned QAT recipe (qat defaults of the matrix: batch 128, lr 0.01, cosine,
// label smoothing 0.1, augmentation; 256 initialisation images) over `--train` images. The data
// is synthetic with Fashion-MNIST's shape (1x28x28, 10 classes); the FP32 start is a short
// training of the same network, shared by both. BRECQ's paper reports its PTQ 240x faster than
// QAT on ImageNet (20,000 iterations per block against 100+ epochs of 1.28M images).
//   qbench_bench_ptq_cost [--threads N] [--arch NAME] [--iters I] [--train N] [--bits W A]
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/models/models.h"
#include "qbench/ptq/recon.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/profile.h"
#include "qbench/qat/method.h"
#include "qbench/train/train.h"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Ten classes of noisy class templates, so training has something to learn.
qbench::data::TensorDataset synthetic(int64_t n, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  auto templates = at::randn({10, 1, 28, 28});
  auto labels = at::randint(0, 10, {n}, at::kLong);
  auto images = templates.index_select(0, labels) + 0.8 * at::randn({n, 1, 28, 28});
  return {"synthetic-fmnist-shape", images, labels, 10};
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 1, w_bits = 4, a_bits = 4;
  int64_t iters = 1000, train_n = 20000;
  std::string arch = "resnet8";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--arch" && i + 1 < argc) arch = argv[++i];
    else if (a == "--iters" && i + 1 < argc) iters = std::atoll(argv[++i]);
    else if (a == "--train" && i + 1 < argc) train_n = std::atoll(argv[++i]);
    else if (a == "--bits" && i + 2 < argc) {
      w_bits = std::atoi(argv[++i]);
      a_bits = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--arch NAME] [--iters I] [--train N] [--bits W A]\n", argv[0]);
      return 2;
    }
  }
  at::set_num_threads(threads);
  using namespace qbench;
  const auto data = synthetic(train_n, 0);
  const auto& prof = quant::profile_registry().get("academic");

  // The FP32 start both methods share: a short training (1 epoch, the FP32 recipe), BN merged.
  at::manual_seed(0);
  auto fp32 = models::make_model(arch, {1, 10, 28});
  config::TrainRecipe fp_recipe;
  fp_recipe.epochs = 1;
  train::train_fp32(*fp32, data, fp_recipe, 0);
  fp32->eval();
  auto fresh = [&] {
    auto m = models::make_model(arch, {1, 10, 28});
    torch::NoGradGuard ng;
    auto src_p = fp32->named_parameters(), src_b = fp32->named_buffers();
    for (auto& p : m->named_parameters()) p.value().copy_(src_p[p.key()]);
    for (auto& b : m->named_buffers()) b.value().copy_(src_b[b.key()]);
    m->eval();
    return m;
  };

  // qdrop: MSE calibration + reconstruction of every unit.
  auto q = fresh();
  quant::apply_bn_fold(*q, 0);
  quant::AlgorithmContext ctx;
  ctx.profile = &prof;
  ctx.w_bits = w_bits;
  ctx.a_bits = a_bits;
  ctx.calib_images = data.images.narrow(0, 0, std::min<int64_t>(1024, train_n));
  ctx.calib_batch_size = 256;
  ptq::ReconParams recon = ptq::recon_options().defaults();
  recon.iters = iters;
  ctx.settings = ptq::recon_options().to_json(recon);
  double t0 = now_s();
  ptq::ReconAlgorithm(ptq::ReconMode::QDrop).apply(*q, ctx);
  const double t_qdrop = now_s() - t0;
  int64_t units = 0;
  for (const auto& d : ctx.details) units += d.section == "recon_units" && d.values.count("initial_loss");

  // LSQ QAT: attach, initialise on 256 images, one epoch of the aligned QAT recipe.
  auto l = fresh();
  const config::QatRecipe qr;
  t0 = now_s();
  qat::attach_qat_quantizers(*l, qat::qat_method_registry().get("lsq"), prof, w_bits, a_bits);
  qat::init_quantizers(*l, data.images.narrow(0, 0, std::min<int64_t>(qr.init_images, train_n)), 256);
  train::TrainHooks hooks;
  hooks.tag = "qat-lsq";
  train::train_model(*l, data, qr.train, 0, hooks);
  const double t_lsq = now_s() - t0;

  std::printf("%s w%da%d, %d thread(s), synthetic 1x28x28 data\n", arch.c_str(), w_bits, a_bits, threads);
  std::printf("  qdrop: %lld units x %lld iters (batch %d), 1024 calibration images: %.1f s\n",
              static_cast<long long>(units), static_cast<long long>(iters), recon.batch_size, t_qdrop);
  std::printf("  lsq QAT: 1 epoch of %lld images (batch %d): %.1f s\n", static_cast<long long>(train_n),
              qr.train.batch_size, t_lsq);
  std::printf("  ratio qdrop / lsq-epoch: %.2f\n", t_qdrop / t_lsq);
  return 0;
}
