// CIFAR-10 / CIFAR-100 binary batches written by the test in the exact on-disk format.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "test_util.h"
#include "unit_torch/data_util.h"

using namespace qbench::data;
namespace fs = std::filesystem;

namespace {

// Pixel value of record r, channel c, row y, column x: a pattern that is easy to recompute.
uint8_t pixel(int r, int c, int y, int x) { return static_cast<uint8_t>((r * 31 + c * 70 + y * 5 + x) % 256); }

// Records of `label_bytes` label bytes then 1024 R, 1024 G, 1024 B bytes (32x32 row-major).
std::vector<uint8_t> records(int first, int n, const std::vector<std::vector<uint8_t>>& labels) {
  std::vector<uint8_t> out;
  for (int i = 0; i < n; ++i) {
    const int r = first + i;
    for (uint8_t l : labels[static_cast<std::size_t>(i)]) out.push_back(l);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) out.push_back(pixel(r, c, y, x));
  }
  return out;
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// CIFAR-10: five training batches of 2 records each (labels r % 10) and a test batch of 3.
fs::path write_cifar10(const std::string& name) {
  auto root = qbench::test::scratch_dir(name);
  auto dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    const int first = (b - 1) * 2;
    write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"),
                records(first, 2, {{uint8_t(first % 10)}, {uint8_t((first + 1) % 10)}}));
  }
  write_bytes(dir / "test_batch.bin", records(100, 3, {{9}, {0}, {4}}));
  return root;
}

const double kMean10[3] = {0.4914, 0.4822, 0.4465}, kStd10[3] = {0.2470, 0.2435, 0.2616};

}  // namespace

TEST_CASE("CIFAR-10 binary batches: order, labels, channel layout and normalisation", "[data][cifar]") {
  auto root = write_cifar10("cifar10");
  auto train = open_dataset({"cifar10", root.string()}, Split::Train);
  REQUIRE(train->size() == 10);
  CHECK(train->num_classes() == 10);
  CHECK(train->item_shape().channels == 3);
  CHECK(train->item_shape().height == 32);
  CHECK(train->item_shape().width == 32);
  for (int r = 0; r < 10; ++r) CHECK(train->label(r) == r % 10);  // batches 1..5 in order
  auto b = train->load_batch({7, 0}, Mode::Eval, 0);
  for (int c = 0; c < 3; ++c)
    for (auto [y, x] : {std::pair{0, 0}, {3, 17}, {31, 31}}) {
      const double expect = (pixel(7, c, y, x) / 255.0 - kMean10[c]) / kStd10[c];
      CHECK(b.images[0][c][y][x].item<float>() == Approx(expect).epsilon(1e-5));
    }
  CHECK(b.labels[0].item<int64_t>() == 7);
  auto test = open_dataset({"cifar10", root.string()}, Split::Test);
  REQUIRE(test->size() == 3);
  CHECK(all_labels(*test).equal(at::tensor({9L, 0L, 4L})));
  CHECK(test->load_batch({2}, Mode::Eval, 0).images[0][1][2][3].item<float>() ==
        Approx((pixel(102, 1, 2, 3) / 255.0 - kMean10[1]) / kStd10[1]).epsilon(1e-5));
  // The root may also be the batches folder itself.
  CHECK(open_dataset({"cifar10", (root / "cifar-10-batches-bin").string()}, Split::Test)->size() == 3);
}

TEST_CASE("CIFAR-100 uses the fine label of its two label bytes", "[data][cifar]") {
  auto root = qbench::test::scratch_dir("cifar100");
  auto dir = root / "cifar-100-binary";
  fs::create_directories(dir);
  write_bytes(dir / "train.bin", records(0, 3, {{3, 99}, {19, 0}, {0, 42}}));
  write_bytes(dir / "test.bin", records(50, 1, {{7, 57}}));
  auto train = open_dataset({"cifar100", root.string()}, Split::Train);
  REQUIRE(train->size() == 3);
  CHECK(train->num_classes() == 100);
  CHECK(all_labels(*train).equal(at::tensor({99L, 0L, 42L})));
  auto b = train->load_batch({1}, Mode::Eval, 0);
  CHECK(b.images[0][2][31][0].item<float>() == Approx((pixel(1, 2, 31, 0) / 255.0 - 0.4409) / 0.2762).epsilon(1e-5));
  CHECK(open_dataset({"cifar100", root.string()}, Split::Test)->label(0) == 57);
}

TEST_CASE("corrupt CIFAR files fail with the file named", "[data][cifar][corrupt]") {
  auto root = write_cifar10("cifar10_bad");
  auto dir = root / "cifar-10-batches-bin";
  const auto batch3 = (dir / "data_batch_3.bin").string();
  auto expect = [&](const std::string& file, const std::string& needle) {
    qbench::test::expect_data_error([&] { open_dataset({"cifar10", root.string()}, Split::Train); }, file, needle);
  };
  SECTION("truncated record") {
    auto full = records(4, 2, {{4}, {5}});
    full.resize(full.size() - 100);
    write_bytes(batch3, full);
    expect(batch3, "not a whole number of 3073-byte records");
  }
  SECTION("empty file") {
    write_bytes(batch3, {});
    expect(batch3, "empty cifar10 batch file");
  }
  SECTION("label out of range") {
    write_bytes(batch3, records(4, 2, {{4}, {10}}));
    expect(batch3, "record 1 has label 10 outside 0..9");
  }
  SECTION("missing batch") {
    fs::remove(batch3);
    expect(batch3, "missing cifar10 batch file");
  }
  SECTION("no folder") {
    fs::remove_all(dir);
    expect((root / "cifar-10-batches-bin").string(), "no such folder");
  }
  SECTION("CIFAR-100 fine label out of range") {
    auto d100 = root / "cifar-100-binary";
    fs::create_directories(d100);
    write_bytes(d100 / "train.bin", records(0, 2, {{1, 2}, {3, 100}}));
    CHECK_THROWS_WITH(open_dataset({"cifar100", root.string()}, Split::Train),
                      Catch::Contains((d100 / "train.bin").string()) && Catch::Contains("label 100 outside 0..99"));
  }
}
