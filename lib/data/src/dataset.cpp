#include "qbench/data/dataset.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <random>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/data/idx.h"

namespace qbench::data {
namespace fs = std::filesystem;

const char* split_name(Split s) { return s == Split::Train ? "train" : "test"; }

namespace {

// Finds `<root>/<stem>` or `<root>/<stem>.gz`.
std::string find_idx_file(const std::string& root, const std::string& stem) {
  for (const auto& name : {stem + ".gz", stem}) {
    fs::path p = fs::path(root) / name;
    if (fs::exists(p)) return p.string();
  }
  throw DataError(root + ": no " + stem + "[.gz] in this folder (set dataset.root in the matrix or --data-root)");
}

// MNIST-family loader: images idx3 (N x 28 x 28), labels idx1 (N), normalised with the
// training split's mean/std so train and test share one transform.
TensorDataset load_mnist_like(const std::string& name, const std::string& root, Split split, double mean,
                              double stdev) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const std::string img_path = find_idx_file(root, prefix + "-images-idx3-ubyte");
  const std::string lbl_path = find_idx_file(root, prefix + "-labels-idx1-ubyte");
  IdxArray img = read_idx(img_path);
  IdxArray lbl = read_idx(lbl_path);
  if (img.dims.size() != 3) throw DataError(img_path + ": expected a 3-d image array, got " + std::to_string(img.dims.size()) + "-d");
  if (lbl.dims.size() != 1) throw DataError(lbl_path + ": expected a 1-d label array, got " + std::to_string(lbl.dims.size()) + "-d");
  if (img.dims[0] != lbl.dims[0])
    throw DataError(img_path + ": " + std::to_string(img.dims[0]) + " images but " + lbl_path + " has " +
                    std::to_string(lbl.dims[0]) + " labels");
  for (uint8_t l : lbl.bytes)
    if (l >= 10) throw DataError(lbl_path + ": label " + std::to_string(l) + " outside 0..9");
  const int64_t n = img.dims[0], h = img.dims[1], w = img.dims[2];
  TensorDataset ds;
  ds.name = name;
  ds.num_classes = 10;
  auto u8 = at::from_blob(img.bytes.data(), {n, 1, h, w}, at::kByte);
  ds.images = u8.to(at::kFloat).div_(255.0).sub_(mean).div_(stdev).contiguous();
  ds.labels = at::from_blob(lbl.bytes.data(), {n}, at::kByte).to(at::kLong).clone();
  return ds;
}

void register_builtin_datasets(Registry<DatasetEntry>& r) {
  r.add("fashion-mnist",
        {"Fashion-MNIST (Zalando): 60k/10k 28x28 grey clothing images, 10 classes; IDX, gzip or plain", 10, 1, 28,
         28, "/usr/share/datasets/fashion-mnist",
         [](const std::string& root, Split s) { return load_mnist_like("fashion-mnist", root, s, 0.2860, 0.3530); }});
  r.add("mnist",
        {"MNIST handwritten digits: 60k/10k 28x28 grey, 10 classes; IDX, gzip or plain", 10, 1, 28, 28, "",
         [](const std::string& root, Split s) { return load_mnist_like("mnist", root, s, 0.1307, 0.3081); }});
}

}  // namespace

Registry<DatasetEntry>& dataset_registry() {
  static Registry<DatasetEntry> reg = [] {
    Registry<DatasetEntry> r("dataset");
    register_builtin_datasets(r);
    return r;
  }();
  return reg;
}

TensorDataset load_dataset(const std::string& name, const std::string& root, Split split) {
  const auto& e = dataset_registry().get(name);
  std::string dir = root.empty() ? e.default_root : root;
  if (dir.empty()) throw DataError("dataset '" + name + "' has no default location: set dataset.root or --data-root");
  if (!fs::is_directory(dir)) throw DataError(dir + ": dataset folder for '" + name + "' does not exist");
  return e.load(dir, split);
}

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  // Fisher-Yates with our own bounded draw: std::uniform_int_distribution is not specified
  // bit-for-bit across standard libraries, this is.
  for (int64_t i = n - 1; i > 0; --i) {
    uint64_t bound = static_cast<uint64_t>(i) + 1, limit = UINT64_MAX - UINT64_MAX % bound, x;
    do x = rng(); while (x >= limit);
    std::swap(p[i], p[static_cast<int64_t>(x % bound)]);
  }
  return p;
}

TensorDataset seeded_subset(const TensorDataset& ds, int64_t count, uint64_t seed) {
  const int64_t n = ds.size();
  if (count <= 0 || count >= n) return ds;
  auto perm = seeded_permutation(n, seed);
  perm.resize(static_cast<std::size_t>(count));
  auto idx = at::tensor(perm, at::kLong);
  TensorDataset out = ds;
  out.images = ds.images.index_select(0, idx).contiguous();
  out.labels = ds.labels.index_select(0, idx).contiguous();
  return out;
}

uint64_t derive_seed(uint64_t seed, const std::string& purpose) {
  // FNV-1a over the purpose tag, mixed with the seed by splitmix64: stable and cheap.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : purpose) h = (h ^ c) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace qbench::data
