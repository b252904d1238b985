// The synthetic dataset, the decoding thread pool and the background batch loader: the loader
// must hand out exactly the batches synchronous loading gives, in order, with a bounded queue,
// and surface a loading error at the batch that caused it.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/data/imagefolder.h"
#include "qbench/data/loader.h"
#include "qbench/data/thread_pool.h"
#include "qbench/models/models.h"
#include "qbench/train/train.h"
#include "test_util.h"

using namespace qbench;
using namespace qbench::data;
namespace fs = std::filesystem;

namespace {

config::DatasetSpec synthetic(int64_t channels, int64_t size, int64_t classes, int64_t train, int64_t test,
                              int workers = 2) {
  config::DatasetSpec s;
  s.name = "synthetic";
  s.channels = channels;
  s.image_size = size;
  s.classes = classes;
  s.train_size = train;
  s.test_size = test;
  s.workers = workers;
  return s;
}

// Loads every request of `plan` synchronously.
std::vector<Batch> direct(const Dataset& ds, const std::vector<BatchRequest>& plan) {
  std::vector<Batch> out;
  for (const auto& r : plan) out.push_back(ds.load_batch(r.indices, r.mode, r.seed));
  return out;
}

void check_same(BatchLoader& loader, const std::vector<Batch>& expect) {
  for (std::size_t k = 0; k < expect.size(); ++k) {
    auto b = loader.next();
    REQUIRE(b.has_value());
    REQUIRE(at::equal(b->images, expect[k].images));
    REQUIRE(at::equal(b->labels, expect[k].labels));
  }
  CHECK_FALSE(loader.next().has_value());
}

std::vector<BatchRequest> shuffled_plan(int64_t n, int64_t bs, Mode mode, uint64_t seed) {
  return plan_batches(seeded_permutation(n, seed), bs, mode, [seed](int64_t b) { return derive_seed(seed, std::to_string(b)); });
}

// A dataset that counts load_batch calls and fails on the batch whose seed is `fail_seed`.
class ProbeDataset : public Dataset {
 public:
  std::string name() const override { return "probe"; }
  int64_t size() const override { return 100; }
  int64_t num_classes() const override { return 2; }
  ItemShape item_shape() const override { return {1, 1, 1}; }
  int64_t label(int64_t i) const override { return i % 2; }
  Batch load_batch(const std::vector<int64_t>& idx, Mode, uint64_t seed) const override {
    ++calls;
    if (seed == fail_seed) throw DataError("/data/probe/item" + std::to_string(idx.at(0)) + ".png: cannot decode image");
    Batch b;
    b.images = at::tensor(idx, at::kLong).to(at::kFloat).reshape({-1, 1, 1, 1});
    b.labels = at::tensor(idx, at::kLong).remainder(2);
    return b;
  }
  mutable std::atomic<int> calls{0};
  uint64_t fail_seed = UINT64_MAX;
};

}  // namespace

TEST_CASE("synthetic data is a pure function of its options, split and index", "[data][synthetic]") {
  auto a = open_dataset(synthetic(3, 12, 4, 40, 20, 1), Split::Train);
  auto b = open_dataset(synthetic(3, 12, 4, 40, 20, 3), Split::Train);  // other worker count
  REQUIRE(a->size() == 40);
  CHECK(open_dataset(synthetic(3, 12, 4, 40, 20), Split::Test)->size() == 20);
  CHECK(a->num_classes() == 4);
  CHECK(a->item_shape().channels == 3);
  CHECK(a->item_shape().height == 12);
  CHECK(a->label(13) == 1);  // index % classes
  auto x = load_all(*a), y = load_all(*b);
  CHECK(x.images.sizes() == at::IntArrayRef({40, 3, 12, 12}));
  CHECK(at::equal(x.images, y.images));
  CHECK(at::equal(x.labels, at::arange(40, at::kLong).remainder(4)));
  // An item does not depend on the batch it is loaded in.
  CHECK(at::equal(a->load_batch({17, 3}, Mode::Eval, 0).images[0], x.images[17]));
  // Roughly zero-mean, unit-variance noise around patterns of unit variance.
  CHECK(std::abs(x.images.mean().item<double>()) < 0.2);
  CHECK(x.images.std().item<double>() == Approx(std::sqrt(2.0)).margin(0.2));
  // Train and test items differ; train mode is the tensor augmentation of the eval items.
  auto t = load_all(*open_dataset(synthetic(3, 12, 4, 40, 20), Split::Test));
  CHECK_FALSE(at::equal(t.images[0], x.images[0]));
  auto aug = a->load_batch({5, 6, 7}, Mode::Train, 11);
  auto ref = a->load_batch({5, 6, 7}, Mode::Eval, 0).images.clone();
  augment_pad_crop_flip(ref.data_ptr<float>(), 3, 3, 12, 12, 11);
  CHECK(at::equal(aug.images, ref));
  CHECK_THROWS_AS(a->load_batch({40}, Mode::Eval, 0), DataError);
}

TEST_CASE("synthetic classes are learnable: nearest class mean beats chance by far", "[data][synthetic]") {
  auto train = load_all(*open_dataset(synthetic(1, 16, 10, 500, 200), Split::Train));
  auto test = load_all(*open_dataset(synthetic(1, 16, 10, 500, 200), Split::Test));
  auto means = at::zeros({10, 256});
  auto flat = train.images.reshape({500, 256});
  for (int64_t c = 0; c < 10; ++c) means[c] = flat.index_select(0, train.labels.eq(c).nonzero().squeeze(1)).mean(0);
  auto d = at::cdist(test.images.reshape({200, 256}), means);
  const double acc = std::get<1>(d.min(1)).eq(test.labels).to(at::kFloat).mean().item<double>();
  CHECK(acc > 0.9);  // chance is 0.1
}

TEST_CASE("the thread pool runs every index once and reports the lowest failing index", "[data][loader]") {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(1000, [&](int64_t i) { ++hits[static_cast<std::size_t>(i)]; });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  // Several callers at once share the pool.
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] { pool.parallel_for(500, [&](int64_t i) { total += i; }); });
  for (auto& t : callers) t.join();
  CHECK(total.load() == 4 * (499 * 500 / 2));
  for (int rep = 0; rep < 20; ++rep) {
    try {
      pool.parallel_for(64, [](int64_t i) {
        if (i == 40 || i == 17 || i == 63) throw DataError("item " + std::to_string(i));
      });
      FAIL("no error");
    } catch (const DataError& e) {
      REQUIRE(std::string(e.what()) == "item 17");
    }
  }
}

TEST_CASE("the background loader returns the batches synchronous loading returns", "[data][loader]") {
  SECTION("synthetic, train mode, shuffled") {
    auto ds = open_dataset(synthetic(3, 16, 5, 70, 10), Split::Train);
    auto plan = shuffled_plan(70, 16, Mode::Train, 4);
    REQUIRE(plan.size() == 5);
    CHECK(plan.back().indices.size() == 6);
    auto expect = direct(*ds, plan);
    BatchLoader loader(*ds, plan, {3});
    CHECK(loader.background());
    check_same(loader, expect);
  }
  SECTION("imagefolder, train and eval modes, several worker counts") {
    auto root = qbench::test::scratch_dir("loader_if");
    for (int c = 0; c < 3; ++c) {
      fs::create_directories(root / "train" / ("c" + std::to_string(c)));
      for (int i = 0; i < 5; ++i) {
        std::vector<uint8_t> px(40 * 30 * 3);
        for (std::size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((k * (c + 3) + i * 17) % 251);
        write_image((root / "train" / ("c" + std::to_string(c)) / (std::to_string(i) + ".jpg")).string(), 40, 30, 3,
                    px.data());
      }
    }
    config::DatasetSpec s;
    s.name = "imagefolder";
    s.root = root.string();
    s.image_size = 24;
    s.workers = 1;
    auto one = open_dataset(s, Split::Train);
    s.workers = 4;
    auto four = open_dataset(s, Split::Train);
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      auto plan = shuffled_plan(15, 4, mode, 9);
      auto expect = direct(*one, plan);
      BatchLoader loader(*four, plan, {2});
      check_same(loader, expect);
    }
  }
  SECTION("in-memory data loads synchronously unless forced, with the same batches") {
    TensorDataset t;
    t.name = "t";
    t.images = at::randn({50, 1, 6, 6});
    t.labels = at::randint(0, 3, {50}, at::kLong);
    t.num_classes = 3;
    InMemoryDataset ds(t);
    auto plan = shuffled_plan(50, 8, Mode::Train, 2);
    auto expect = direct(ds, plan);
    BatchLoader sync(ds, plan);
    CHECK_FALSE(sync.background());
    check_same(sync, expect);
    LoaderOptions forced;
    forced.force_background = true;
    BatchLoader bg(ds, plan, forced);
    CHECK(bg.background());
    check_same(bg, expect);
  }
}

TEST_CASE("the loader stays within its prefetch bound and surfaces errors at their batch", "[data][loader]") {
  ProbeDataset ds;
  std::vector<int64_t> order(100);
  for (int64_t i = 0; i < 100; ++i) order[static_cast<std::size_t>(i)] = i;
  auto plan = plan_batches(order, 10, Mode::Eval, [](int64_t b) { return static_cast<uint64_t>(b); });
  {
    BatchLoader loader(ds, plan, {2});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(ds.calls.load() == 2);  // loaded ahead, then waits for the consumer
    for (int k = 1; k <= 3; ++k) {
      auto b = loader.next();
      REQUIRE(b);
      CHECK(b->images[0].item<float>() == 10 * (k - 1));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(ds.calls.load() == k + 2);
    }
  }  // destroyed with batches outstanding: returns without loading the rest
  CHECK(ds.calls.load() == 5);

  ds.calls = 0;
  ds.fail_seed = 3;
  BatchLoader loader(ds, plan, {4});
  for (int k = 0; k < 3; ++k) REQUIRE(loader.next());
  CHECK_THROWS_WITH(loader.next(), "/data/probe/item30.png: cannot decode image");
  CHECK_THROWS_AS(loader.next(), DataError);  // stays failed
  CHECK(ds.calls.load() == 4);                // nothing after the failing batch was loaded
}

TEST_CASE("a corrupt image fails training through the loader with the file named", "[data][loader][corrupt]") {
  auto root = qbench::test::scratch_dir("loader_corrupt");
  for (int c = 0; c < 2; ++c) {
    fs::create_directories(root / "train" / std::to_string(c));
    for (int i = 0; i < 6; ++i) {
      std::vector<uint8_t> px(16 * 16 * 3, static_cast<uint8_t>(c * 200 + i));
      write_image((root / "train" / std::to_string(c) / (std::to_string(i) + ".png")).string(), 16, 16, 3, px.data());
    }
  }
  const auto bad = root / "train" / "1" / "3.png";
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << "not a png";
  config::DatasetSpec s;
  s.name = "imagefolder";
  s.root = root.string();
  s.image_size = 16;
  auto ds = open_dataset(s, Split::Train);
  auto model = models::make_model("resnet8-w0.5", {3, 2, 16});
  config::TrainRecipe r;
  r.epochs = 1;
  r.batch_size = 4;
  CHECK_THROWS_WITH(train::train_fp32(*model, *ds, r, 0), Catch::Contains(bad.string()) && Catch::Contains("cannot decode"));
}

TEST_CASE("training and evaluation run end to end on an image folder", "[data][loader][imagefolder]") {
  // Two classes a small net separates at once: reddish vs bluish noise images.
  auto root = qbench::test::scratch_dir("loader_train");
  for (const char* split : {"train", "val"})
    for (int c = 0; c < 2; ++c) {
      fs::create_directories(root / split / (c ? "blue" : "red"));
      for (int i = 0; i < (std::string(split) == "train" ? 24 : 8); ++i) {
        std::vector<uint8_t> px(20 * 20 * 3);
        for (std::size_t k = 0; k < px.size(); ++k) {
          const int ch = static_cast<int>(k % 3), noise = static_cast<int>((k * 2654435761u + i * 97) % 80);
          px[k] = static_cast<uint8_t>((ch == (c ? 2 : 0) ? 150 : 40) + noise);
        }
        write_image((root / split / (c ? "blue" : "red") / (std::to_string(i) + ".png")).string(), 20, 20, 3,
                    px.data());
      }
    }
  config::DatasetSpec s;
  s.name = "imagefolder";
  s.root = root.string();
  s.image_size = 16;
  auto train = open_dataset(s, Split::Train);
  auto val = open_dataset(s, Split::Test);
  at::manual_seed(0);
  auto model = models::make_model("resnet8-w0.5", {3, 2, 16});
  config::TrainRecipe r;
  r.epochs = 3;
  r.batch_size = 8;
  r.lr = 0.05;
  r.warmup_epochs = 0;
  train::train_fp32(*model, *train, r, 0);
  auto ev = train::evaluate(*model, *val, 5);
  CHECK(ev.images == 16);
  CHECK(ev.top1 > 80.0);  // chance is 50%
}

TEST_CASE("batch plans cut an order into consecutive batches with per-batch seeds", "[data][loader]") {
  auto plan = plan_batches({5, 3, 9, 1, 0, 7, 2}, 3, Mode::Train, [](int64_t b) { return 100 + static_cast<uint64_t>(b); });
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].indices == std::vector<int64_t>{5, 3, 9});
  CHECK(plan[1].indices == std::vector<int64_t>{1, 0, 7});
  CHECK(plan[2].indices == std::vector<int64_t>{2});
  CHECK(plan[2].seed == 102);
  CHECK(plan[1].mode == Mode::Train);
  auto seq = plan_sequential(5, 2);
  REQUIRE(seq.size() == 3);
  CHECK(seq[2].indices == std::vector<int64_t>{4});
  CHECK(seq[0].mode == Mode::Eval);
  CHECK(plan_sequential(0, 4).empty());
}

TEST_CASE("training on a subset view gives the weights training on the copied subset gives", "[data][loader]") {
  at::manual_seed(2);
  TensorDataset t;
  t.name = "t";
  t.images = at::randn({200, 1, 12, 12});
  t.labels = at::randint(0, 4, {200}, at::kLong);
  t.num_classes = 4;
  auto full = std::make_shared<InMemoryDataset>(t);
  auto view = seeded_subset(*full, 96, 5);
  auto copy = seeded_subset(t, 96, 5);
  config::TrainRecipe r;
  r.epochs = 2;
  r.batch_size = 32;
  r.augment = true;
  at::manual_seed(1);
  auto a = models::make_model("resnet8-w0.5", {1, 4, 12});
  train::train_fp32(*a, *view, r, 3);
  at::manual_seed(1);
  auto b = models::make_model("resnet8-w0.5", {1, 4, 12});
  train::train_fp32(*b, copy, r, 3);
  auto pa = a->parameters(), pb = b->parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) REQUIRE(at::equal(pa[i], pb[i]));
}
