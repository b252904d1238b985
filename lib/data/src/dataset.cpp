#include "qbench/data/dataset.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "builtin.h"
#include "qbench/common/errors.h"

namespace qbench::data {
namespace fs = std::filesystem;

const char* split_name(Split s) { return s == Split::Train ? "train" : "test"; }

at::Tensor all_labels(const Dataset& ds) {
  const int64_t n = ds.size();
  auto out = at::empty({n}, at::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = ds.label(i);
  return out;
}

// ---- tensor augmentation -----------------------------------------------------------------------

void augment_pad_crop_flip(float* batch, int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed, int64_t pad) {
  if (n <= 0) return;
  const int64_t plane = h * w, item = c * plane;
  // The pad value is the batch minimum (NaN if the batch holds one, as a tensor min would give).
  float lo = std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t i = 0; i < n * item; ++i) {
    if (std::isnan(batch[i])) nan = true;
    lo = std::min(lo, batch[i]);
  }
  if (nan) lo = std::numeric_limits<float>::quiet_NaN();
  std::mt19937_64 rng(seed);
  std::vector<float> src(static_cast<std::size_t>(item));
  for (int64_t b = 0; b < n; ++b) {
    const int64_t dy = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * pad + 1));
    const int64_t dx = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * pad + 1));
    const bool flip = (rng() & 1) != 0;
    float* img = batch + b * item;
    std::memcpy(src.data(), img, sizeof(float) * static_cast<std::size_t>(item));
    // Output pixel (y, x) reads padded pixel (y + dy, x' + dx), x' = w-1-x when flipped; padded
    // pixel (py, px) is source (py - pad, px - pad) or the pad value outside the image.
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y) {
        const int64_t sy = y + dy - pad;
        float* out = img + ch * plane + y * w;
        if (sy < 0 || sy >= h) {
          std::fill(out, out + w, lo);
          continue;
        }
        const float* row = src.data() + ch * plane + sy * w;
        for (int64_t x = 0; x < w; ++x) {
          const int64_t sx = (flip ? w - 1 - x : x) + dx - pad;
          out[x] = (sx < 0 || sx >= w) ? lo : row[sx];
        }
      }
  }
}

// ---- in-memory datasets ------------------------------------------------------------------------

InMemoryDataset::InMemoryDataset(TensorDataset data) : data_(std::move(data)) {
  if (data_.images.defined()) data_.images = data_.images.to(at::kFloat).contiguous();
  if (data_.labels.defined()) data_.labels = data_.labels.to(at::kLong).contiguous();
}

ItemShape InMemoryDataset::item_shape() const {
  return {data_.images.size(1), data_.images.size(2), data_.images.size(3)};
}

int64_t InMemoryDataset::label(int64_t index) const { return data_.labels.data_ptr<int64_t>()[index]; }

Batch InMemoryDataset::load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const {
  const int64_t n = static_cast<int64_t>(indices.size()), size = data_.size();
  const auto s = item_shape();
  const int64_t item = s.channels * s.height * s.width;
  Batch b;
  b.images = at::empty({n, s.channels, s.height, s.width}, at::kFloat);
  b.labels = at::empty({n}, at::kLong);
  const float* src = data_.images.data_ptr<float>();
  const int64_t* lsrc = data_.labels.data_ptr<int64_t>();
  float* dst = b.images.data_ptr<float>();
  int64_t* ldst = b.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = indices[static_cast<std::size_t>(i)];
    if (k < 0 || k >= size)
      throw DataError(data_.name + ": item index " + std::to_string(k) + " outside 0.." + std::to_string(size - 1));
    std::memcpy(dst + i * item, src + k * item, sizeof(float) * static_cast<std::size_t>(item));
    ldst[i] = lsrc[k];
  }
  if (mode == Mode::Train) augment_pad_crop_flip(dst, n, s.channels, s.height, s.width, seed);
  return b;
}

// ---- views -------------------------------------------------------------------------------------

namespace {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> indices) : base_(std::move(base)), idx_(std::move(indices)) {
    for (int64_t k : idx_)
      if (k < 0 || k >= base_->size())
        throw DataError(base_->name() + ": subset index " + std::to_string(k) + " outside 0.." +
                        std::to_string(base_->size() - 1));
  }
  std::string name() const override { return base_->name(); }
  int64_t size() const override { return static_cast<int64_t>(idx_.size()); }
  int64_t num_classes() const override { return base_->num_classes(); }
  ItemShape item_shape() const override { return base_->item_shape(); }
  int64_t label(int64_t index) const override { return base_->label(idx_.at(static_cast<std::size_t>(index))); }
  Batch load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const override {
    std::vector<int64_t> mapped(indices.size());
    for (std::size_t i = 0; i < indices.size(); ++i) {
      const int64_t k = indices[i];
      if (k < 0 || k >= size())
        throw DataError(name() + ": item index " + std::to_string(k) + " outside 0.." + std::to_string(size() - 1));
      mapped[i] = idx_[static_cast<std::size_t>(k)];
    }
    return base_->load_batch(mapped, mode, seed);
  }
  bool in_memory() const override { return base_->in_memory(); }

 private:
  DatasetPtr base_;
  std::vector<int64_t> idx_;
};

}  // namespace

DatasetPtr index_subset(const Dataset& ds, std::vector<int64_t> indices) {
  return std::make_shared<SubsetDataset>(ds.shared_from_this(), std::move(indices));
}

DatasetPtr seeded_subset(const Dataset& ds, int64_t count, uint64_t seed) {
  const int64_t n = ds.size();
  if (count <= 0 || count >= n) return ds.shared_from_this();
  auto perm = seeded_permutation(n, seed);
  perm.resize(static_cast<std::size_t>(count));
  return index_subset(ds, std::move(perm));
}

Batch load_all(const Dataset& ds, Mode mode, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<std::size_t>(ds.size()));
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  return ds.load_batch(idx, mode, seed);
}

// ---- registry ----------------------------------------------------------------------------------

namespace detail {

std::shared_ptr<ThreadPool> shared_pool(int workers) {
  static std::mutex mu;
  static std::map<int, std::weak_ptr<ThreadPool>> pools;
  const int n = resolve_workers(workers);
  std::lock_guard<std::mutex> lk(mu);
  auto p = pools[n].lock();
  if (!p) {
    p = std::make_shared<ThreadPool>(n);
    pools[n] = p;
  }
  return p;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw DataError(path + ": read error");
  return bytes;
}

}  // namespace detail

namespace detail {
// Generated from the qbench_registry_entry(datasets ...) lines of lib/data/CMakeLists.txt.
void fill_datasets(Registry<DatasetEntry>& r);
}  // namespace detail

Registry<DatasetEntry>& dataset_registry() {
  static Registry<DatasetEntry> reg("dataset", detail::fill_datasets);
  return reg;
}

config::DatasetSpec with_defaults(const config::DatasetSpec& spec) {
  const auto& e = dataset_registry().get(spec.name);
  config::DatasetSpec s = spec;
  for (const auto& f : config::dataset_option_fields()) {
    auto def = e.options.find(f.key);
    if (def == e.options.end())
      s.*f.field = 0;
    else if (s.*f.field == 0)
      s.*f.field = def->second;
  }
  return s;
}

namespace {

// The spec an entry opens: options defaulted, root resolved and present.
config::DatasetSpec resolved_spec(const config::DatasetSpec& spec, const DatasetEntry& e) {
  config::DatasetSpec s = with_defaults(spec);
  if (e.uses_root) {
    if (s.root.empty()) s.root = e.default_root;
    if (s.root.empty())
      throw DataError("dataset '" + s.name + "' has no default location: set dataset.root or --data-root");
    if (!fs::is_directory(s.root)) throw DataError(s.root + ": dataset folder for '" + s.name + "' does not exist");
  }
  return s;
}

}  // namespace

DatasetPtr open_dataset(const config::DatasetSpec& spec, Split split) {
  const auto& e = dataset_registry().get(spec.name);
  return e.open(resolved_spec(spec, e), split);
}

SplitSummary validate_dataset(const config::DatasetSpec& spec, Split split) {
  const auto& e = dataset_registry().get(spec.name);
  const config::DatasetSpec s = resolved_spec(spec, e);
  if (e.validate) return e.validate(s, split);
  auto ds = e.open(s, split);
  SplitSummary out;
  out.items = ds->size();
  out.classes = ds->num_classes();
  out.shape = ds->item_shape();
  return out;
}

TensorDataset load_dataset(const std::string& name, const std::string& root, Split split) {
  config::DatasetSpec spec;
  spec.name = name;
  spec.root = root;
  auto ds = open_dataset(spec, split);
  if (auto* mem = dynamic_cast<const InMemoryDataset*>(ds.get())) return mem->tensors();
  TensorDataset t;
  t.name = ds->name();
  t.num_classes = ds->num_classes();
  auto b = load_all(*ds);
  t.images = b.images;
  t.labels = b.labels;
  return t;
}

// ---- seeds and shuffles ------------------------------------------------------------------------

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

uint64_t item_seed(uint64_t seed, int64_t index) {
  uint64_t z = seed ^ (0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(index) + 1));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace qbench::data
