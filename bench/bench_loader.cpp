// Loader benchmark: is data loading the bottleneck? For each workload, images/s of the loader
// alone (a training epoch's plan: shuffled, augmented batches through the background BatchLoader),
// of a training step alone (forward + backward + SGD step on a batch already in memory), and of
// training fed by the loader (what a run sees), measured side by side in one process.
//   qbench_bench_loader [--threads N] [--workers W] [--steps S] [--images N] [--dir DIR]
//                       [--small-arch NAME] [--large-arch NAME] [--skip-large]
// Workloads: fashion-mnist (the Debian package's files; synthetic 1x28x28 when absent) with the
// small arch at batch 128; an image folder of generated 500x375 JPEGs (written to --dir, default
// a temp folder, reused when present) decoded at 224 with the large arch (resnet18) at batch 32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "qbench/data/dataset.h"
#include "qbench/data/imagefolder.h"
#include "qbench/data/loader.h"
#include "qbench/models/models.h"
#include "qbench/train/train.h"

namespace fs = std::filesystem;
using namespace qbench;

namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<data::BatchRequest> epoch_plan(const data::Dataset& ds, int64_t batch, int64_t steps, data::Mode mode) {
  auto perm = data::seeded_permutation(ds.size(), 1);
  auto plan = data::plan_batches(perm, batch, mode, [](int64_t b) { return data::derive_seed(7, std::to_string(b)); });
  if (static_cast<int64_t>(plan.size()) > steps) plan.resize(static_cast<std::size_t>(steps));
  return plan;
}

int64_t images_in(const std::vector<data::BatchRequest>& plan) {
  int64_t n = 0;
  for (const auto& r : plan) n += static_cast<int64_t>(r.indices.size());
  return n;
}

// Images/s of the loader alone over `plan`.
double loader_rate(const data::Dataset& ds, const std::vector<data::BatchRequest>& plan) {
  data::LoaderOptions o;
  o.force_background = true;
  const double t0 = now_s();
  data::BatchLoader loader(ds, plan, o);
  while (loader.next()) {
  }
  return images_in(plan) / (now_s() - t0);
}

struct TrainRates {
  double step_only = 0, fed = 0, wait_fraction = 0;
};

// Training step alone (one batch reused) and training fed by the loader over `plan`.
TrainRates train_rates(const data::Dataset& ds, const std::string& arch, const std::vector<data::BatchRequest>& plan) {
  const auto shape = ds.item_shape();
  models::ModelSpec spec;
  spec.in_channels = shape.channels;
  spec.num_classes = ds.num_classes();
  spec.image_size = shape.height;
  spec.stem = models::resolve_stem("auto", shape.height);
  at::manual_seed(0);
  auto model = models::make_model(arch, spec);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  model->train();
  auto step = [&](const data::Batch& b) {
    opt.zero_grad();
    auto loss = train::smoothed_cross_entropy(model->forward(b.images), b.labels, 0.1);
    loss.backward();
    opt.step();
  };
  const auto first = ds.load_batch(plan[0].indices, plan[0].mode, plan[0].seed);
  step(first);  // warm-up
  TrainRates r;
  const int reps = static_cast<int>(plan.size());
  double t0 = now_s();
  for (int i = 0; i < reps; ++i) step(first);
  r.step_only = static_cast<double>(first.labels.size(0)) * reps / (now_s() - t0);
  double waited = 0;
  t0 = now_s();
  data::LoaderOptions o;
  o.force_background = true;
  data::BatchLoader loader(ds, plan, o);
  for (;;) {
    const double w0 = now_s();
    auto b = loader.next();
    waited += now_s() - w0;
    if (!b) break;
    step(*b);
  }
  const double total = now_s() - t0;
  r.fed = images_in(plan) / total;
  r.wait_fraction = waited / total;
  return r;
}

void report(const char* workload, const char* arch, int64_t batch, double loader_train, double loader_eval,
            const TrainRates& t) {
  std::printf("%-34s %-16s %5lld %12.0f %12.0f %12.1f %12.1f %9.1f%% %9.1fx\n", workload, arch,
              static_cast<long long>(batch), loader_train, loader_eval, t.step_only, t.fed, 100 * t.wait_fraction,
              loader_train / t.step_only);
  std::fflush(stdout);
}

// A 500x375 JPEG with smooth class-dependent gradients plus texture (a realistic decode cost).
void write_jpegs(const fs::path& root, int64_t images, int classes) {
  std::vector<uint8_t> px(500 * 375 * 3);
  for (int64_t i = 0; i < images; ++i) {
    const int c = static_cast<int>(i % classes);
    const fs::path dir = root / "train" / ("class" + std::to_string(c));
    fs::create_directories(dir);
    for (int y = 0; y < 375; ++y)
      for (int x = 0; x < 500; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          // Unsigned arithmetic: the hash wraps by design (signed overflow would be undefined).
          const uint32_t h = (static_cast<uint32_t>(x) * 73856093u) ^ (static_cast<uint32_t>(y) * 19349663u) ^
                             (static_cast<uint32_t>(i) * 83492791u) ^ static_cast<uint32_t>(ch);
          px[(static_cast<std::size_t>(y) * 500 + x) * 3 + ch] =
              static_cast<uint8_t>((x * (ch + 1) + y * (c + 1) + static_cast<int>(i) * 13) / 4 + (h % 48));
        }
    data::write_image((dir / (std::to_string(i) + ".jpg")).string(), 500, 375, 3, px.data(), 90);
  }
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2, workers = 0;
  int64_t steps = 20, images = 640;
  std::string dir, small_arch = "resnet20", large_arch = "resnet18";
  bool skip_large = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--workers" && i + 1 < argc) workers = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::atoll(argv[++i]);
    else if (a == "--images" && i + 1 < argc) images = std::atoll(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--small-arch" && i + 1 < argc) small_arch = argv[++i];
    else if (a == "--large-arch" && i + 1 < argc) large_arch = argv[++i];
    else if (a == "--skip-large") skip_large = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--workers W] [--steps S] [--images N] [--dir DIR] [--small-arch NAME] "
                   "[--large-arch NAME] [--skip-large]\n",
                   argv[0]);
      return 2;
    }
  }
  at::set_num_threads(threads);
  std::printf("intra-op threads %d, decode workers %d (0 = one per core, %u cores), %lld steps per figure\n", threads,
              workers, std::thread::hardware_concurrency(), static_cast<long long>(steps));
  std::printf("%-34s %-16s %5s %12s %12s %12s %12s %10s %10s\n", "workload", "arch", "batch", "load train/s",
              "load eval/s", "step img/s", "fed img/s", "waiting", "load/step");

  // Small images held in memory.
  config::DatasetSpec fm;
  fm.name = "fashion-mnist";
  fm.workers = workers;
  data::DatasetPtr small;
  const char* small_name = "fashion-mnist (in memory)";
  try {
    small = data::open_dataset(fm, data::Split::Train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion-mnist unavailable (%s): using synthetic 1x28x28\n", e.what());
    fm.name = "synthetic";
    fm.channels = 1;
    fm.image_size = 28;
    fm.train_size = 60000;
    small = data::open_dataset(fm, data::Split::Train);
    small_name = "synthetic 1x28x28 (generated)";
  }
  {
    auto plan = epoch_plan(*small, 128, steps, data::Mode::Train);
    auto eval = epoch_plan(*small, 128, steps, data::Mode::Eval);
    report(small_name, small_arch.c_str(), 128, loader_rate(*small, plan), loader_rate(*small, eval),
           train_rates(*small, small_arch, plan));
  }
  config::DatasetSpec syn;
  syn.name = "synthetic";
  syn.channels = 3;
  syn.image_size = 32;
  syn.train_size = 50000;
  syn.workers = workers;
  {
    auto ds = data::open_dataset(syn, data::Split::Train);
    auto plan = epoch_plan(*ds, 128, steps, data::Mode::Train);
    auto eval = epoch_plan(*ds, 128, steps, data::Mode::Eval);
    report("synthetic 3x32x32 (generated)", small_arch.c_str(), 128, loader_rate(*ds, plan), loader_rate(*ds, eval),
           train_rates(*ds, small_arch, plan));
  }
  if (skip_large) return 0;
  if (!models::arch_registry().contains(large_arch)) {
    std::fprintf(stderr, "arch '%s' is not registered; pass --large-arch NAME\n", large_arch.c_str());
    return 2;
  }
  const fs::path root = dir.empty() ? fs::temp_directory_path() / "qbench_bench_loader_jpegs" : fs::path(dir);
  const int classes = 10;
  if (!fs::exists(root / "train")) {
    std::fprintf(stderr, "writing %lld 500x375 JPEGs under %s ...\n", static_cast<long long>(images), root.c_str());
    write_jpegs(root, images, classes);
  }
  config::DatasetSpec inet;
  inet.name = "imagefolder";
  inet.root = root.string();
  inet.image_size = 224;
  inet.workers = workers;
  auto ds = data::open_dataset(inet, data::Split::Train);
  const int64_t batch = 32, large_steps = std::max<int64_t>(2, std::min<int64_t>(steps, ds->size() / batch));
  auto plan = epoch_plan(*ds, batch, large_steps, data::Mode::Train);
  auto eval = epoch_plan(*ds, batch, large_steps, data::Mode::Eval);
  const double lt = loader_rate(*ds, plan), le = loader_rate(*ds, eval);
  report("imagefolder 500x375 JPEG -> 224", large_arch.c_str(), batch, lt, le, train_rates(*ds, large_arch, plan));
  return 0;
}
