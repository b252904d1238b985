// IDX reader and dataset loader on files the test writes in the exact on-disk format.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/data/idx.h"
#include "test_util.h"
#include "unit_torch/data_util.h"

using namespace qbench::data;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> ramp(std::size_t n) {
  std::vector<uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 7) % 256);
  return v;
}
void write_raw(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
// A tiny MNIST-style split: n images of 28x28 whose pixel (0,0) encodes the label.
void write_split(const fs::path& dir, const std::string& prefix, int n, bool gz) {
  std::vector<uint8_t> img(static_cast<std::size_t>(n) * 28 * 28, 0), lbl(n);
  for (int i = 0; i < n; ++i) {
    lbl[i] = static_cast<uint8_t>(i % 10);
    img[static_cast<std::size_t>(i) * 784] = static_cast<uint8_t>(25 * (i % 10));
  }
  const std::string ext = gz ? ".gz" : "";
  write_idx((dir / (prefix + "-images-idx3-ubyte" + ext)).string(), {n, 28, 28}, img);
  write_idx((dir / (prefix + "-labels-idx1-ubyte" + ext)).string(), {n}, lbl);
}
}  // namespace

TEST_CASE("IDX round trip, gzip and plain", "[data][idx]") {
  auto dir = qbench::test::scratch_dir("idx_roundtrip");
  auto bytes = ramp(5 * 4 * 3);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    auto p = (dir / name).string();
    write_idx(p, {5, 4, 3}, bytes);
    auto arr = read_idx(p);
    CHECK(arr.dims == std::vector<int64_t>{5, 4, 3});
    CHECK(arr.bytes == bytes);
  }
  // The .gz file really is gzip (magic 1f 8b), so the reader inflated it.
  std::ifstream f(dir / "a.idx.gz", std::ios::binary);
  unsigned char m[2];
  f.read(reinterpret_cast<char*>(m), 2);
  CHECK(m[0] == 0x1f);
  CHECK(m[1] == 0x8b);
}

TEST_CASE("IDX reader rejects corrupt files with the file name in the error", "[data][idx]") {
  auto dir = qbench::test::scratch_dir("idx_corrupt");
  auto good = (dir / "good.idx").string();
  write_idx(good, {10, 4}, ramp(40));
  std::ifstream in(good, std::ios::binary);
  std::vector<uint8_t> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& name, const std::string& needle) {
    auto p = dir / name;
    write_raw(p, bytes);
    qbench::test::expect_data_error([&] { read_idx(p.string()); }, p.string(), needle);
  };
  SECTION("truncated payload") { expect_error({raw.begin(), raw.end() - 5}, "trunc.idx", "truncated IDX payload"); }
  SECTION("truncated header") { expect_error({raw.begin(), raw.begin() + 6}, "hdr.idx", "truncated IDX header"); }
  SECTION("bad magic") {
    auto b = raw;
    b[0] = 0x42;
    expect_error(b, "magic.idx", "bad IDX magic");
  }
  SECTION("unsupported element type") {
    auto b = raw;
    b[2] = 0x0D;  // float
    expect_error(b, "type.idx", "unsupported IDX element type");
  }
  SECTION("trailing bytes") {
    auto b = raw;
    b.push_back(1);
    expect_error(b, "long.idx", "longer than its header");
  }
  SECTION("missing file") { CHECK_THROWS_AS(read_idx((dir / "nope.idx").string()), qbench::DataError); }
  SECTION("truncated gzip stream") {
    auto gz = (dir / "t.idx.gz").string();
    write_idx(gz, {200, 28}, ramp(200 * 28));
    std::ifstream g(gz, std::ios::binary);
    std::vector<uint8_t> z((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
    z.resize(z.size() / 2);
    auto p = dir / "half.idx.gz";
    write_raw(p, z);
    CHECK_THROWS_AS(read_idx(p.string()), qbench::DataError);
  }
}

TEST_CASE("MNIST-family loader reads generated splits and normalises", "[data]") {
  auto dir = qbench::test::scratch_dir("fmnist");
  write_split(dir, "train", 30, true);
  write_split(dir, "t10k", 20, false);  // plain IDX works too
  auto train = load_dataset("fashion-mnist", dir.string(), Split::Train);
  auto test = load_dataset("fashion-mnist", dir.string(), Split::Test);
  CHECK(train.size() == 30);
  CHECK(test.size() == 20);
  CHECK(train.images.sizes() == at::IntArrayRef({30, 1, 28, 28}));
  CHECK(train.labels[13].item<int64_t>() == 3);
  // pixel (0,0) = 25 * label; normalised with Fashion-MNIST's mean 0.2860 and std 0.3530.
  CHECK(train.images[13][0][0][0].item<float>() == Approx((75.0 / 255.0 - 0.2860) / 0.3530).epsilon(1e-5));
  CHECK(train.images[13][0][5][5].item<float>() == Approx((0.0 - 0.2860) / 0.3530).epsilon(1e-5));
}

TEST_CASE("loader errors: missing folder, missing file, count mismatch, bad label", "[data]") {
  auto dir = qbench::test::scratch_dir("fmnist_bad");
  CHECK_THROWS_AS(load_dataset("fashion-mnist", (dir / "absent").string(), Split::Train), qbench::DataError);
  CHECK_THROWS_AS(load_dataset("fashion-mnist", dir.string(), Split::Train), qbench::DataError);
  write_idx((dir / "train-images-idx3-ubyte.gz").string(), {3, 28, 28}, std::vector<uint8_t>(3 * 784));
  write_idx((dir / "train-labels-idx1-ubyte.gz").string(), {4}, {0, 1, 2, 3});
  CHECK_THROWS_WITH(load_dataset("fashion-mnist", dir.string(), Split::Train), Catch::Contains("labels"));
  write_idx((dir / "train-labels-idx1-ubyte.gz").string(), {3}, {0, 1, 12});
  CHECK_THROWS_WITH(load_dataset("fashion-mnist", dir.string(), Split::Train), Catch::Contains("outside 0..9"));
  CHECK_THROWS_AS(load_dataset("fashon-mnist", dir.string(), Split::Train), qbench::UnknownNameError);
}

TEST_CASE("seeded permutations and subsets are deterministic and seed-dependent", "[data]") {
  auto a = seeded_permutation(1000, 7), b = seeded_permutation(1000, 7), c = seeded_permutation(1000, 8);
  CHECK(a == b);
  CHECK(a != c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(sorted[i] == i);
  // Every ordering of 3 items shows up across seeds (the shuffle is not stuck on a few).
  std::set<std::vector<int64_t>> seen;
  for (uint64_t s = 0; s < 200; ++s) seen.insert(seeded_permutation(3, s));
  CHECK(seen.size() == 6);
  TensorDataset ds;
  ds.images = at::arange(50, at::kFloat).reshape({50, 1, 1, 1});
  ds.labels = at::arange(50, at::kLong);
  auto s1 = seeded_subset(ds, 10, 3), s2 = seeded_subset(ds, 10, 3);
  CHECK(at::equal(s1.labels, s2.labels));
  CHECK(s1.size() == 10);
  CHECK(at::equal(s1.images.flatten(), s1.labels.to(at::kFloat)));  // images follow their labels
  CHECK(seeded_subset(ds, 0, 3).size() == 50);
  CHECK(derive_seed(1, "a") != derive_seed(1, "b"));
  CHECK(derive_seed(1, "a") == derive_seed(1, "a"));
}

TEST_CASE("MNIST loader reads plain IDX files and names the missing one", "[data]") {
  auto dir = qbench::test::scratch_dir("mnist_plain");
  write_split(dir, "train", 12, false);
  auto ds = open_dataset({"mnist", dir.string()}, Split::Train);
  REQUIRE(ds->size() == 12);
  CHECK(ds->num_classes() == 10);
  CHECK(ds->item_shape().channels == 1);
  CHECK(ds->item_shape().height == 28);
  CHECK(ds->label(7) == 7);
  auto b = ds->load_batch({7, 2}, Mode::Eval, 0);
  // MNIST's own mean/std: 0.1307, 0.3081; pixel (0,0) = 25 * label.
  CHECK(b.images[0][0][0][0].item<float>() == Approx((175.0 / 255.0 - 0.1307) / 0.3081).epsilon(1e-5));
  CHECK(b.images[1][0][0][0].item<float>() == Approx((50.0 / 255.0 - 0.1307) / 0.3081).epsilon(1e-5));
  CHECK(b.labels[0].item<int64_t>() == 7);
  // The test split is absent: the error names the file it looked for.
  CHECK_THROWS_WITH(open_dataset({"mnist", dir.string()}, Split::Test),
                    Catch::Contains((dir / "t10k-images-idx3-ubyte").string()));
}

TEST_CASE("an IDX file with a wrong magic number fails the dataset with the file named", "[data][idx]") {
  auto dir = qbench::test::scratch_dir("fmnist_magic");
  write_split(dir, "train", 5, false);
  const auto p = dir / "train-labels-idx1-ubyte";
  std::ifstream in(p, std::ios::binary);
  std::vector<uint8_t> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  raw[2] = 0x09;  // type code 0x09 (signed byte) instead of 0x08
  write_raw(p, raw);
  CHECK_THROWS_WITH(open_dataset({"fashion-mnist", dir.string()}, Split::Train),
                    Catch::Contains(p.string()) && Catch::Contains("unsupported IDX element type"));
  raw[2] = 0x08;
  raw[0] = 0x1f;  // neither IDX nor gzip
  write_raw(p, raw);
  CHECK_THROWS_WITH(open_dataset({"fashion-mnist", dir.string()}, Split::Train),
                    Catch::Contains(p.string()) && Catch::Contains("bad IDX magic"));
}

TEST_CASE("the tensor augmentation equals the LibTorch formulation it replaced", "[data][augment]") {
  // The reference: pad with the batch minimum, crop at (dy, dx), flip, drawn in this order.
  auto reference = [](const at::Tensor& images, uint64_t seed) {
    const int64_t n = images.size(0), h = images.size(2), w = images.size(3), pad = 2;
    std::mt19937_64 rng(seed);
    auto padded = at::constant_pad_nd(images, {pad, pad, pad, pad}, images.min().item<double>());
    auto out = at::empty_like(images);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t dy = static_cast<int64_t>(rng() % (2 * pad + 1)), dx = static_cast<int64_t>(rng() % (2 * pad + 1));
      auto crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
      if (rng() & 1) crop = crop.flip({2});
      out[i].copy_(crop);
    }
    return out;
  };
  at::manual_seed(5);
  auto x = at::randn({9, 3, 7, 5});
  for (uint64_t seed : {0ull, 1ull, 12345ull}) {
    auto got = x.clone();
    augment_pad_crop_flip(got.data_ptr<float>(), 9, 3, 7, 5, seed);
    CHECK(at::equal(got, reference(x, seed)));
  }
  // In-memory datasets apply it in train mode, to the gathered rows.
  TensorDataset t;
  t.name = "t";
  t.images = x;
  t.labels = at::arange(9, at::kLong);
  t.num_classes = 9;
  InMemoryDataset ds(t);
  std::vector<int64_t> idx = {4, 0, 8, 8};
  auto rows = x.index_select(0, at::tensor(idx, at::kLong));
  CHECK(at::equal(ds.load_batch(idx, Mode::Eval, 3).images, rows));
  CHECK(at::equal(ds.load_batch(idx, Mode::Train, 3).images, reference(rows, 3)));
  CHECK(at::equal(ds.load_batch(idx, Mode::Train, 3).labels, at::tensor(idx, at::kLong)));
  CHECK_THROWS_AS(ds.load_batch({9}, Mode::Eval, 0), qbench::DataError);
}

TEST_CASE("subsets of any dataset are views with the TensorDataset subset's selection", "[data]") {
  TensorDataset t;
  t.name = "t";
  t.images = at::arange(40, at::kFloat).reshape({40, 1, 1, 1});
  t.labels = at::arange(40, at::kLong);
  t.num_classes = 40;
  auto ds = std::make_shared<InMemoryDataset>(t);
  auto view = seeded_subset(*ds, 10, 77);
  auto copy = seeded_subset(t, 10, 77);
  REQUIRE(view->size() == 10);
  CHECK(at::equal(load_all(*view).images, copy.images));
  CHECK(at::equal(load_all(*view).labels, copy.labels));
  CHECK(at::equal(all_labels(*view), copy.labels));
  CHECK(seeded_subset(*ds, 0, 77).get() == ds.get());   // everything: the dataset itself
  CHECK(seeded_subset(*ds, 40, 77).get() == ds.get());
  // A subset of a subset maps through both.
  auto inner = index_subset(*view, {9, 0});
  CHECK(inner->label(0) == copy.labels[9].item<int64_t>());
  CHECK(inner->label(1) == copy.labels[0].item<int64_t>());
  CHECK_THROWS_AS(index_subset(*ds, {40}), qbench::DataError);
  CHECK_THROWS_AS(view->load_batch({10}, Mode::Eval, 0), qbench::DataError);
}

TEST_CASE("every dataset is registered with its options", "[data]") {
  for (const char* n : {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "synthetic"})
    CHECK(dataset_registry().contains(n));
  CHECK(dataset_registry().get("imagefolder").options == std::map<std::string, int64_t>{{"image_size", 224}});
  CHECK(dataset_registry().get("cifar10").options.empty());
  CHECK(dataset_registry().get("synthetic").options.at("classes") == 10);
  // with_defaults fills declared options and zeroes the rest.
  qbench::config::DatasetSpec s;
  s.name = "imagefolder";
  s.classes = 5;
  auto d = with_defaults(s);
  CHECK(d.image_size == 224);
  CHECK(d.classes == 0);
}
