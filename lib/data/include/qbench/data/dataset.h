#pragma once
// Datasets as in-memory tensors with a registry of loaders, deterministic seeded shuffles and
// subsets. Every dataset has the same interface: images N x C x H x W float (normalised),
// labels N int64.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qbench/common/registry.h"

namespace qbench::data {

enum class Split { Train, Test };
const char* split_name(Split s);

struct TensorDataset {
  std::string name;
  at::Tensor images;  ///< N x C x H x W, float32, normalised with the dataset's mean/std
  at::Tensor labels;  ///< N, int64
  int64_t num_classes = 0;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct DatasetEntry {
  std::string description;
  int64_t num_classes;
  int64_t channels, height, width;
  std::string default_root;  ///< where the Debian package puts it ("" when none)
  std::function<TensorDataset(const std::string& root, Split split)> load;
};

Registry<DatasetEntry>& dataset_registry();  ///< filled on first use by register_builtin_datasets

/// Loads a split, resolving an empty root to the entry's default_root.
TensorDataset load_dataset(const std::string& name, const std::string& root, Split split);

/// A permutation of 0..n-1 from a seeded mt19937_64 Fisher-Yates shuffle: identical on every
/// machine and LibTorch version for the same (n, seed).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

/// The first `count` items of seeded_permutation(n, seed) (all of them when count <= 0 or >= n).
TensorDataset seeded_subset(const TensorDataset& ds, int64_t count, uint64_t seed);

/// Mixes a base seed with a purpose tag, so shuffles for different purposes are independent.
uint64_t derive_seed(uint64_t seed, const std::string& purpose);

}  // namespace qbench::data
