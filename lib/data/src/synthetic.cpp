// synthetic: seeded random images generated on demand, for tests and speed runs. Each class has a
// fixed pattern (a 4x4 grid of per-channel levels, blown up to the image size); an item is its
// class's pattern plus independent unit-variance noise, so classes are learnable but not trivial
// per pixel. Item i of a split has label i % classes and is a pure function of (options, split,
// i): nothing is stored, any size streams.
#include <ATen/ATen.h>

#include <cmath>

#include "builtin.h"
#include "qbench/common/errors.h"

namespace qbench::data::detail {
namespace {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform on [-sqrt(3), sqrt(3)) (mean 0, variance 1) from 24 bits of a hash.
float unit_uniform(uint64_t h) {
  constexpr float kSqrt3 = 1.7320508075688772f;
  return (static_cast<float>(h >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * kSqrt3;
}

constexpr int64_t kGrid = 4;

class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(const config::DatasetSpec& spec, Split split)
      : c_(spec.channels), s_(spec.image_size), classes_(spec.classes),
        n_(split == Split::Train ? spec.train_size : spec.test_size),
        split_seed_(derive_seed(0, std::string("synthetic-") + split_name(split))),
        pool_(shared_pool(spec.workers)) {
    if (c_ <= 0 || s_ <= 0 || classes_ < 2 || n_ <= 0)
      throw DataError("synthetic: needs channels, image_size, train_size, test_size >= 1 and classes >= 2");
    // Class patterns depend on the shape and class count only, never on the split.
    const uint64_t pattern_seed = derive_seed(0, "synthetic-patterns");
    pattern_.resize(static_cast<std::size_t>(classes_ * c_ * kGrid * kGrid));
    for (std::size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = unit_uniform(mix64(pattern_seed + 0x9e3779b97f4a7c15ull * (i + 1)));
  }
  std::string name() const override { return "synthetic"; }
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return classes_; }
  ItemShape item_shape() const override { return {c_, s_, s_}; }
  int64_t label(int64_t index) const override { return index % classes_; }

  Batch load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const override {
    const int64_t n = static_cast<int64_t>(indices.size()), item = c_ * s_ * s_;
    for (int64_t k : indices)
      if (k < 0 || k >= n_)
        throw DataError("synthetic: item index " + std::to_string(k) + " outside 0.." + std::to_string(n_ - 1));
    Batch b;
    b.images = at::empty({n, c_, s_, s_}, at::kFloat);
    b.labels = at::empty({n}, at::kLong);
    float* dst = b.images.data_ptr<float>();
    int64_t* lbl = b.labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) lbl[i] = label(indices[static_cast<std::size_t>(i)]);
    pool_->parallel_for(n, [&](int64_t i) { generate(indices[static_cast<std::size_t>(i)], dst + i * item); });
    if (mode == Mode::Train) augment_pad_crop_flip(dst, n, c_, s_, s_, seed);
    return b;
  }

 private:
  void generate(int64_t index, float* out) const {
    const uint64_t base = item_seed(split_seed_, index);
    const float* pat = pattern_.data() + label(index) * c_ * kGrid * kGrid;
    uint64_t p = 0;
    for (int64_t c = 0; c < c_; ++c)
      for (int64_t y = 0; y < s_; ++y) {
        const float* prow = pat + (c * kGrid + y * kGrid / s_) * kGrid;
        for (int64_t x = 0; x < s_; ++x, ++p)
          out[p] = prow[x * kGrid / s_] + unit_uniform(mix64(base + 0x9e3779b97f4a7c15ull * (p + 1)));
      }
  }

  int64_t c_, s_, classes_, n_;
  uint64_t split_seed_;
  std::vector<float> pattern_;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace

void register_synthetic(Registry<DatasetEntry>& r) {
  DatasetEntry e;
  e.description =
      "seeded random images generated on demand (class pattern + unit noise, label = index % classes); options "
      "channels, image_size, classes, train_size, test_size";
  e.uses_root = false;
  e.options = {{"channels", 3}, {"image_size", 32}, {"classes", 10}, {"train_size", 2048}, {"test_size", 512}};
  e.open = [](const config::DatasetSpec& spec, Split split) -> std::shared_ptr<Dataset> {
    return std::make_shared<SyntheticDataset>(spec, split);
  };
  r.add("synthetic", std::move(e));
}

}  // namespace qbench::data::detail
