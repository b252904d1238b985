// The structural check of every dataset (data::validate_dataset) on fixtures written in the exact
// on-disk formats: what it accepts, what it reports (the file and what is wrong) for each kind of
// damage, and what it deliberately leaves to the decoder.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/data/idx.h"
#include "qbench/data/imagefolder.h"
#include "test_util.h"
#include "unit_torch/data_util.h"

using namespace qbench::data;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Big-endian IDX header of ubyte data: 00 00 08 <ndims> then each dimension in 4 bytes.
std::vector<uint8_t> idx_header(const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> h = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<uint8_t>((d >> s) & 0xff));
  return h;
}

// An MNIST-style root: n train and m test images of 28x28, labels i % 10.
fs::path mnist_root(const std::string& name, int n, int m, bool gz) {
  auto dir = qbench::test::scratch_dir(name);
  const std::string ext = gz ? ".gz" : "";
  for (auto [prefix, count] : {std::pair<const char*, int>{"train", n}, {"t10k", m}}) {
    std::vector<uint8_t> img(static_cast<std::size_t>(count) * 784, 7), lbl(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) lbl[static_cast<std::size_t>(i)] = static_cast<uint8_t>(i % 10);
    write_idx((dir / (std::string(prefix) + "-images-idx3-ubyte" + ext)).string(), {count, 28, 28}, img);
    write_idx((dir / (std::string(prefix) + "-labels-idx1-ubyte" + ext)).string(), {count}, lbl);
  }
  return dir;
}

qbench::config::DatasetSpec spec_of(const std::string& name, const fs::path& root) {
  qbench::config::DatasetSpec s;
  s.name = name;
  s.root = root.string();
  return s;
}

// gzip of `bytes` as one member.
std::vector<uint8_t> gzip(const std::vector<uint8_t>& bytes) {
  uLongf n = compressBound(static_cast<uLong>(bytes.size())) + 64;
  std::vector<uint8_t> out(n);
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  z.next_in = const_cast<Bytef*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

TEST_CASE("validate_dataset accepts whole IDX splits and summarises them without loading", "[data][validate]") {
  for (bool gz : {false, true}) {
    INFO("gzip " << gz);
    auto root = mnist_root(gz ? "val_idx_gz" : "val_idx", 30, 12, gz);
    auto tr = validate_dataset(spec_of("fashion-mnist", root), Split::Train);
    CHECK(tr.items == 30);
    CHECK(tr.classes == 10);
    CHECK(tr.shape.channels == 1);
    CHECK(tr.shape.height == 28);
    CHECK(tr.shape.width == 28);
    REQUIRE(tr.files.size() == 2);
    CHECK_THAT(tr.files[0], Catch::EndsWith(gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte"));
    CHECK(validate_dataset(spec_of("mnist", root), Split::Test).items == 12);
  }
}

TEST_CASE("validate_dataset names the IDX file and the damage", "[data][validate][idx]") {
  auto root = mnist_root("val_idx_bad", 20, 10, false);
  const auto img = root / "train-images-idx3-ubyte";
  const auto lbl = root / "train-labels-idx1-ubyte";
  auto check_train = [&] { validate_dataset(spec_of("fashion-mnist", root), Split::Train); };
  auto bytes = slurp(img);
  SECTION("truncated payload") {
    bytes.resize(bytes.size() - 100);
    spit(img, bytes);
    qbench::test::expect_data_error(check_train, img.string(), "truncated IDX payload: header says 15680 bytes, file has 15580");
  }
  SECTION("trailing bytes") {
    bytes.push_back(0);
    spit(img, bytes);
    qbench::test::expect_data_error(check_train, img.string(), "longer than its header says");
  }
  SECTION("an impossible dimension: zero, or beyond 2^28") {
    auto b = idx_header({20, 0, 28});
    spit(img, b);
    qbench::test::expect_data_error(check_train, img.string(), "implausible IDX dimension 0");
    b = idx_header({20, 28, 0x80000000u});
    spit(img, b);
    qbench::test::expect_data_error(check_train, img.string(), "implausible IDX dimension 2147483648");
  }
  SECTION("bad magic") {
    bytes[0] = 0x1f;
    bytes[1] = 0x00;
    spit(img, bytes);
    qbench::test::expect_data_error(check_train, img.string(), "bad IDX magic number");
  }
  SECTION("images that are not 3-d") {
    auto b = idx_header({20, 784});
    b.resize(b.size() + 20 * 784);
    spit(img, b);
    qbench::test::expect_data_error(check_train, img.string(), "expected a 3-d image array");
  }
  SECTION("counts that disagree") {
    write_idx(lbl.string(), {19}, std::vector<uint8_t>(19, 1));
    qbench::test::expect_data_error(check_train, img.string(), "20 images but");
  }
  SECTION("a label outside 0..9") {
    std::vector<uint8_t> l(20, 3);
    l[17] = 10;
    write_idx(lbl.string(), {20}, l);
    qbench::test::expect_data_error(check_train, lbl.string(), "label 10 of item 17 outside 0..9");
  }
  SECTION("a missing file") {
    fs::remove(lbl);
    qbench::test::expect_data_error(check_train, lbl.string(), "no such file");
  }
  SECTION("a missing root") {
    qbench::test::expect_data_error([&] { validate_dataset(spec_of("fashion-mnist", root / "nope"), Split::Train); },
                 (root / "nope").string(), "does not exist");
  }
}

TEST_CASE("validate_dataset on gzip IDX: the trailer's length, a truncated stream, several members", "[data][validate][idx]") {
  auto dir = qbench::test::scratch_dir("val_idx_gzip");
  std::vector<uint8_t> raw = idx_header({40, 28, 28});
  for (int i = 0; i < 40 * 784; ++i) raw.push_back(static_cast<uint8_t>((i * 13) % 251));
  const auto p = dir / "a.idx.gz";
  auto z = gzip(raw);
  spit(p, z);
  CHECK(check_idx(p.string()).payload_bytes == 40 * 784);
  CHECK(check_idx(p.string()).gzip);
  SECTION("truncated gzip file") {
    z.resize(z.size() * 2 / 3);
    spit(p, z);
    qbench::test::expect_data_error([&] { check_idx(p.string()); }, p.string(), "truncated or damaged gzip file");
  }
  SECTION("a whole gzip stream of a truncated IDX file") {
    auto short_raw = raw;
    short_raw.resize(raw.size() - 784);
    spit(p, gzip(short_raw));
    qbench::test::expect_data_error([&] { check_idx(p.string()); }, p.string(), "truncated IDX payload");
  }
  SECTION("two gzip members (the trailer holds only the last one's length) read right") {
    const std::vector<uint8_t> a(raw.begin(), raw.begin() + 5000), b(raw.begin() + 5000, raw.end());
    auto two = gzip(a);
    const auto second = gzip(b);
    two.insert(two.end(), second.begin(), second.end());
    spit(p, two);
    CHECK(check_idx(p.string()).payload_bytes == 40 * 784);
    CHECK(read_idx(p.string()).bytes == std::vector<uint8_t>(raw.begin() + 16, raw.end()));  // after 4 + 3 x 4 header bytes
  }
}

TEST_CASE("validate_dataset on CIFAR batches: whole records and labels in range", "[data][validate][cifar]") {
  auto root = qbench::test::scratch_dir("val_cifar");
  const auto dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  auto batch = [](int records, uint8_t label) {
    std::vector<uint8_t> b;
    for (int r = 0; r < records; ++r) {
      b.push_back(static_cast<uint8_t>((label + r) % 10));
      b.insert(b.end(), 3072, static_cast<uint8_t>(r));
    }
    return b;
  };
  for (int i = 1; i <= 5; ++i) spit(dir / ("data_batch_" + std::to_string(i) + ".bin"), batch(3, 0));
  spit(dir / "test_batch.bin", batch(4, 5));
  auto train = validate_dataset(spec_of("cifar10", root), Split::Train);
  CHECK(train.items == 15);
  CHECK(train.files.size() == 5);
  CHECK(train.shape.channels == 3);
  CHECK(validate_dataset(spec_of("cifar10", root), Split::Test).items == 4);
  auto check_train = [&] { validate_dataset(spec_of("cifar10", root), Split::Train); };
  SECTION("a batch of the wrong length") {
    auto b = batch(3, 0);
    b.resize(b.size() - 1);
    spit(dir / "data_batch_4.bin", b);
    qbench::test::expect_data_error(check_train, (dir / "data_batch_4.bin").string(), "9218 bytes is not a whole number of 3073-byte records");
  }
  SECTION("a label out of range in the last record") {
    auto b = batch(3, 0);
    b[2 * 3073] = 10;
    spit(dir / "data_batch_2.bin", b);
    qbench::test::expect_data_error(check_train, (dir / "data_batch_2.bin").string(), "record 2 has label 10 outside 0..9");
  }
  SECTION("an empty or missing batch") {
    spit(dir / "data_batch_1.bin", {});
    qbench::test::expect_data_error(check_train, (dir / "data_batch_1.bin").string(), "empty cifar10 batch file");
    fs::remove(dir / "data_batch_5.bin");
    spit(dir / "data_batch_1.bin", batch(3, 0));
    qbench::test::expect_data_error(check_train, (dir / "data_batch_5.bin").string(), "missing cifar10 batch file");
  }
}

TEST_CASE("validate_dataset on image folders: structure, sizes and magic bytes, no decoding", "[data][validate][imagefolder]") {
  auto root = qbench::test::scratch_dir("val_if");
  auto png = [](const fs::path& p, int v) {
    std::vector<uint8_t> px(8 * 8 * 3, static_cast<uint8_t>(v));
    write_image(p.string(), 8, 8, 3, px.data());
  };
  for (const char* d : {"train/a", "train/b", "val/a", "val/b"}) fs::create_directories(root / d);
  png(root / "train/a/1.png", 10);
  png(root / "train/a/2.jpg", 20);
  png(root / "train/b/1.bmp", 30);
  png(root / "val/a/1.png", 40);
  png(root / "val/b/1.ppm", 50);
  qbench::config::DatasetSpec s = spec_of("imagefolder", root);
  s.image_size = 8;
  auto tr = validate_dataset(s, Split::Train);
  CHECK(tr.items == 3);
  CHECK(tr.classes == 2);
  CHECK(tr.shape.height == 8);
  CHECK(validate_dataset(s, Split::Test).items == 2);
  auto check_train = [&] { validate_dataset(s, Split::Train); };
  SECTION("an empty class") {
    fs::create_directories(root / "train/c");
    qbench::test::expect_data_error(check_train, (root / "train/c").string(), "empty class folder");
  }
  SECTION("a zero-byte image") {
    spit(root / "train/b/1.bmp", {});
    qbench::test::expect_data_error(check_train, (root / "train/b/1.bmp").string(), "empty image file (0 bytes)");
  }
  SECTION("bytes that are no image format") {
    spit(root / "train/a/2.jpg", {'<', 'h', 't', 'm', 'l', '>'});
    qbench::test::expect_data_error(check_train, (root / "train/a/2.jpg").string(), "not an image file: its first bytes (3c 68 74 6d 6c 3e)");
  }
  SECTION("a validation class the training split lacks") {
    fs::create_directories(root / "val/z");
    png(root / "val/z/1.png", 1);
    qbench::test::expect_data_error([&] { validate_dataset(s, Split::Test); }, (root / "val/z").string(), "not a class of the training split");
  }
  SECTION("a truncated PNG keeps its magic: the check passes, decoding names the file") {
    auto b = slurp(root / "train/a/1.png");
    b.resize(b.size() / 2);
    spit(root / "train/a/1.png", b);
    CHECK_NOTHROW(check_train());
    qbench::test::expect_data_error([&] { load_all(*open_dataset(s, Split::Train)); }, (root / "train/a/1.png").string(), "truncated PNG");
  }
}

TEST_CASE("image_format knows the magic bytes of every format decode_image reads", "[data][validate][imagefolder]") {
  auto fmt = [](std::vector<uint8_t> b) { return image_format(b.data(), b.size()); };
  CHECK(fmt({0xFF, 0xD8, 0xFF, 0xE0}) == "JPEG");
  CHECK(fmt({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}) == "PNG");
  CHECK(fmt({'B', 'M', 0, 0}) == "BMP");
  CHECK(fmt({'P', '6', '\n'}) == "PPM/PGM/PBM");
  CHECK(fmt({'P', '2'}) == "PPM/PGM/PBM");
  CHECK(fmt({'I', 'I', '*', 0}) == "TIFF");
  CHECK(fmt({'M', 'M', 0, '*'}) == "TIFF");
  CHECK(fmt({'R', 'I', 'F', 'F', 1, 2, 3, 4, 'W', 'E', 'B', 'P'}) == "WebP");
  CHECK(fmt({'R', 'I', 'F', 'F', 1, 2, 3, 4, 'W', 'A', 'V', 'E'}).empty());
  CHECK(fmt({0xFF, 0xD8}).empty());
  CHECK(fmt({'P', '7'}).empty());
  CHECK(fmt({}).empty());
}

TEST_CASE("validate_dataset on synthetic data opens it (no files)", "[data][validate]") {
  qbench::config::DatasetSpec s;
  s.name = "synthetic";
  s.image_size = 12;
  s.classes = 3;
  auto r = validate_dataset(s, Split::Test);
  CHECK(r.items == 512);  // the declared default test_size
  CHECK(r.classes == 3);
  CHECK(r.shape.height == 12);
  CHECK(r.files.empty());
}
