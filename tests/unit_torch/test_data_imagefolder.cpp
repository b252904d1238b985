// The imagefolder dataset on PNG/JPEG class folders written with OpenCV: file order and labels,
// the evaluation transform's geometry and values computed by hand, the training augmentation's
// geometry, and every kind of corrupt input failing with the file named.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/data/imagefolder.h"
#include "test_util.h"
#include "unit_torch/data_util.h"

using namespace qbench::data;
namespace fs = std::filesystem;

namespace {

// RGB image whose pixel (y, x) is f(y, x).
template <typename F>
void write_rgb(const fs::path& p, int w, int h, F f, int quality = 95) {
  std::vector<uint8_t> px(static_cast<std::size_t>(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      auto [r, g, b] = f(y, x);
      uint8_t* q = px.data() + (y * w + x) * 3;
      q[0] = static_cast<uint8_t>(r);
      q[1] = static_cast<uint8_t>(g);
      q[2] = static_cast<uint8_t>(b);
    }
  write_image(p.string(), w, h, 3, px.data(), quality);
}

void write_uniform(const fs::path& p, int w, int h, int r, int g, int b) {
  write_rgb(p, w, h, [&](int, int) { return std::tuple{r, g, b}; });
}

double norm(double v, int c) { return (v / 255.0 - kImageNetMean[c]) / kImageNetStd[c]; }

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

qbench::config::DatasetSpec spec(const fs::path& root, int64_t image_size) {
  qbench::config::DatasetSpec s;
  s.name = "imagefolder";
  s.root = root.string();
  s.image_size = image_size;
  s.workers = 2;
  return s;
}

// train: cat (2 PNG), dog (1 JPEG, 1 PNG), zebra (1 PNG); val: cat, zebra.
fs::path small_folder(const std::string& name) {
  auto root = qbench::test::scratch_dir(name);
  for (const char* d : {"train/cat", "train/dog", "train/zebra", "val/cat", "val/zebra"}) fs::create_directories(root / d);
  write_uniform(root / "train/cat/b.png", 20, 20, 10, 20, 30);
  write_uniform(root / "train/cat/a.png", 20, 24, 40, 50, 60);
  write_uniform(root / "train/dog/x.JPG", 30, 20, 90, 90, 90);
  write_uniform(root / "train/dog/y.png", 20, 20, 70, 80, 90);
  write_uniform(root / "train/zebra/z.png", 20, 20, 200, 100, 0);
  write_uniform(root / "val/zebra/v1.png", 20, 20, 1, 2, 3);
  write_uniform(root / "val/cat/v2.jpeg", 20, 20, 4, 5, 6);
  std::ofstream(root / "train/cat/.DS_Store") << "hidden files are skipped";
  return root;
}

}  // namespace

TEST_CASE("imagefolder lists classes and files in sorted order and val takes the training classes", "[data][imagefolder]") {
  auto root = small_folder("if_index");
  auto train = open_dataset(spec(root, 16), Split::Train);
  REQUIRE(train->size() == 5);
  CHECK(train->num_classes() == 3);
  CHECK(all_labels(*train).equal(at::tensor({0L, 0L, 1L, 1L, 2L})));  // cat a, cat b, dog x, dog y, zebra
  auto b = train->load_batch({0, 1, 4}, Mode::Eval, 0);
  CHECK(b.images.sizes() == at::IntArrayRef({3, 3, 16, 16}));
  // Uniform images stay uniform through any resize and crop: exact RGB order and normalisation.
  for (int c = 0; c < 3; ++c) {
    CHECK(b.images[0][c].min().item<float>() == Approx(norm(std::vector<int>{40, 50, 60}[c], c)).margin(2e-6));
    CHECK(b.images[0][c].max().item<float>() == Approx(norm(std::vector<int>{40, 50, 60}[c], c)).margin(2e-6));
    CHECK(b.images[1][c].max().item<float>() == Approx(norm(std::vector<int>{10, 20, 30}[c], c)).margin(2e-6));
    CHECK(b.images[2][c].min().item<float>() == Approx(norm(std::vector<int>{200, 100, 0}[c], c)).margin(2e-6));
  }
  // val has no dog folder: labels still index the training classes (zebra = 2).
  auto val = open_dataset(spec(root, 16), Split::Test);
  REQUIRE(val->size() == 2);
  CHECK(val->num_classes() == 3);
  CHECK(all_labels(*val).equal(at::tensor({0L, 2L})));
  // A JPEG (lossy) of a uniform colour decodes within a grey level or two.
  auto v = val->load_batch({0}, Mode::Eval, 0);
  for (int c = 0; c < 3; ++c)
    CHECK(std::abs(v.images[0][c].mean().item<double>() - norm(4 + c, c)) < 2.5 / 255 / kImageNetStd[c]);
}

TEST_CASE("evaluation geometry: shorter side to S/0.875, torchvision's truncation and centre rounding", "[data][imagefolder]") {
  auto g = eval_geometry(500, 375, 224);  // short side 375 -> 256; long 256*500/375 = 341.33 -> 341
  CHECK(g.resized_w == 341);
  CHECK(g.resized_h == 256);
  CHECK(g.crop_x == 58);  // round(58.5) = 58, half to even as Python does
  CHECK(g.crop_y == 16);
  auto p = eval_geometry(18, 36, 16);  // floor(16 / 0.875) = 18: no resize needed
  CHECK(p.resized_w == 18);
  CHECK(p.resized_h == 36);
  CHECK(p.crop_x == 1);
  CHECK(p.crop_y == 10);
}

TEST_CASE("evaluation transform values, computed by hand", "[data][imagefolder]") {
  auto root = qbench::test::scratch_dir("if_eval");
  const auto ramp = (root / "ramp.png").string();
  SECTION("no resize: the centre crop of the image itself") {
    // 36x18, S = 16: resized size 36x18 (unchanged), crop at x = 10, y = 1.
    write_rgb(ramp, 36, 18, [](int y, int x) { return std::tuple{x * 7, y * 13, 100}; });
    std::vector<float> out(3 * 16 * 16);
    decode_image(ramp, Mode::Eval, 0, 16, out.data());
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        CHECK(out[0 * 256 + i * 16 + j] == Approx(norm((10 + j) * 7, 0)).margin(2e-6));
        CHECK(out[1 * 256 + i * 16 + j] == Approx(norm((1 + i) * 13, 1)).margin(2e-6));
        CHECK(out[2 * 256 + i * 16 + j] == Approx(norm(100, 2)).margin(2e-6));
      }
  }
  SECTION("an exact 2x shrink averages 2x2 blocks") {
    // 72x36 -> 36x18, then the same crop; 2x2 block means of (2x, 2y) are (4x'+1, 4y'+1).
    write_rgb(ramp, 72, 36, [](int y, int x) { return std::tuple{2 * x, 2 * y, 50}; });
    std::vector<float> out(3 * 16 * 16);
    decode_image(ramp, Mode::Eval, 0, 16, out.data());
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        CHECK(out[0 * 256 + i * 16 + j] == Approx(norm(4 * (10 + j) + 1, 0)).margin(2e-6));
        CHECK(out[1 * 256 + i * 16 + j] == Approx(norm(4 * (1 + i) + 1, 1)).margin(2e-6));
      }
  }
  SECTION("grey images become three equal channels") {
    std::vector<uint8_t> grey(18 * 36);
    for (int y = 0; y < 36; ++y)
      for (int x = 0; x < 18; ++x) grey[static_cast<std::size_t>(y * 18 + x)] = static_cast<uint8_t>(y * 5 + x);
    const auto g = (root / "grey.png").string();
    write_image(g, 18, 36, 1, grey.data());
    std::vector<float> out(3 * 16 * 16);
    decode_image(g, Mode::Eval, 0, 16, out.data());  // 18x36: crop at x = 1, y = 10
    for (int c = 0; c < 3; ++c) CHECK(out[c * 256 + 3 * 16 + 4] == Approx(norm((10 + 3) * 5 + 1 + 4, c)).margin(2e-6));
  }
}

TEST_CASE("training geometry follows RandomResizedCrop's scale and ratio ranges", "[data][imagefolder]") {
  int flips = 0, small = 0, large = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    auto g = train_geometry(500, 375, seed);
    REQUIRE(g.x >= 0);
    REQUIRE(g.y >= 0);
    REQUIRE(g.x + g.w <= 500);
    REQUIRE(g.y + g.h <= 375);
    const double frac = static_cast<double>(g.w * g.h) / (500.0 * 375.0);
    const double ratio = static_cast<double>(g.w) / g.h;
    // Rounding the sides to whole pixels moves the area and ratio a little off the drawn values.
    CHECK(frac >= 0.079);
    CHECK(frac <= 1.0);
    CHECK(ratio >= 0.74);
    CHECK(ratio <= 1.345);
    flips += g.flip;
    small += frac < 0.15;
    large += frac > 0.85;
    auto again = train_geometry(500, 375, seed);
    REQUIRE((again.x == g.x && again.y == g.y && again.w == g.w && again.h == g.h && again.flip == g.flip));
  }
  CHECK(flips > 900);
  CHECK(flips < 1100);
  CHECK(small > 50);  // the whole scale range is drawn
  CHECK(large > 50);
  // A 1000x10 strip: no draw fits, so the fallback centre-crops at ratio 4/3: 13x10 at (493, 0).
  auto f = train_geometry(1000, 10, 7);
  CHECK(f.w == 13);
  CHECK(f.h == 10);
  CHECK(f.x == 493);
  CHECK(f.y == 0);
}

TEST_CASE("training transform is seeded per item, flips with the geometry and keeps uniform colours exact", "[data][imagefolder]") {
  auto root = qbench::test::scratch_dir("if_train");
  const auto ramp = (root / "ramp.png").string();
  write_rgb(ramp, 64, 48, [](int, int x) { return std::tuple{x * 4, 128, 0}; });  // red grows to the right
  std::vector<float> a(3 * 24 * 24), b(3 * 24 * 24);
  int flipped = 0, straight = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    decode_image(ramp, Mode::Train, seed, 24, a.data());
    decode_image(ramp, Mode::Train, seed, 24, b.data());
    REQUIRE(a == b);
    const auto g = train_geometry(64, 48, seed);
    // Red of the first vs last column of row 12: decreasing exactly when the geometry flips.
    const float left = a[12 * 24 + 0], right = a[12 * 24 + 23];
    if (g.flip) {
      CHECK(left > right);
      ++flipped;
    } else {
      CHECK(left < right);
      ++straight;
    }
    for (int i = 0; i < 24 * 24; ++i) REQUIRE(a[24 * 24 + i] == Approx(norm(128, 1)).margin(2e-6));
  }
  CHECK(flipped > 5);
  CHECK(straight > 5);
  // Through the dataset: the batch seed and the item's index give the item seed.
  auto folder = small_folder("if_train_ds");
  auto ds = open_dataset(spec(folder, 16), Split::Train);
  auto x1 = ds->load_batch({2, 3}, Mode::Train, 99), x2 = ds->load_batch({2, 3}, Mode::Train, 99);
  CHECK(at::equal(x1.images, x2.images));
  std::vector<float> one(3 * 16 * 16);
  decode_image((folder / "train/dog/y.png").string(), Mode::Train, item_seed(99, 3), 16, one.data());
  CHECK(at::equal(x1.images[1].flatten(), at::from_blob(one.data(), {3 * 16 * 16}, at::kFloat)));
}

TEST_CASE("corrupt image folders fail with the file or folder named", "[data][imagefolder][corrupt]") {
  auto root = small_folder("if_corrupt");
  auto open_train = [&] { open_dataset(spec(root, 16), Split::Train); };
  auto load_all_train = [&] { load_all(*open_dataset(spec(root, 16), Split::Train)); };
  SECTION("truncated PNG") {
    const auto p = root / "train/dog/y.png";
    auto bytes = read_bytes(p);
    bytes.resize(bytes.size() / 2);
    write_bytes(p, bytes);
    qbench::test::expect_data_error(load_all_train, p.string(), "truncated PNG");
  }
  SECTION("truncated JPEG") {
    const auto p = root / "train/dog/x.JPG";
    write_rgb(p, 64, 64, [](int y, int x) { return std::tuple{x * 3, y * 3, (x * y) % 256}; });
    auto bytes = read_bytes(p);
    bytes.resize(bytes.size() * 2 / 3);
    write_bytes(p, bytes);
    qbench::test::expect_data_error(load_all_train, p.string(), "truncated JPEG");
  }
  SECTION("garbage with an image extension") {
    const auto p = root / "train/zebra/z.png";
    write_bytes(p, std::vector<uint8_t>(500, 0x5A));
    qbench::test::expect_data_error(load_all_train, p.string(), "cannot decode image");
  }
  SECTION("empty file") {
    const auto p = root / "train/cat/a.png";
    write_bytes(p, {});
    qbench::test::expect_data_error(load_all_train, p.string(), "empty image file");
  }
  SECTION("empty class folder") {
    fs::create_directories(root / "train/empty");
    qbench::test::expect_data_error(open_train, (root / "train/empty").string(), "empty class folder");
  }
  SECTION("a file that is not an image") {
    std::ofstream(root / "train/cat/notes.txt") << "x";
    qbench::test::expect_data_error(open_train, (root / "train/cat/notes.txt").string(), "not an image file");
  }
  SECTION("a file where class folders belong") {
    std::ofstream(root / "train/labels.csv") << "x";
    qbench::test::expect_data_error(open_train, (root / "train/labels.csv").string(), "class folders are expected");
  }
  SECTION("a validation class the training split lacks") {
    fs::create_directories(root / "val/yak");
    write_uniform(root / "val/yak/1.png", 8, 8, 1, 1, 1);
    qbench::test::expect_data_error([&] { open_dataset(spec(root, 16), Split::Test); }, (root / "val/yak").string(),
                 "not a class of the training split");
  }
  SECTION("no val folder") {
    fs::remove_all(root / "val");
    qbench::test::expect_data_error([&] { open_dataset(spec(root, 16), Split::Test); }, (root / "val").string(), "no such folder");
  }
  SECTION("no class folders") {
    fs::remove_all(root / "train");
    fs::create_directories(root / "train");
    qbench::test::expect_data_error(open_train, (root / "train").string(), "no class folders");
  }
}
