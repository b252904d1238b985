#pragma once
// Datasets behind one registry, all with the same interface (Dataset): size, classes, labels and
// `load_batch(indices, mode, seed)`, which returns N x C x H x W float images (normalised) and N
// int64 labels. In-memory sets (IDX, CIFAR) copy rows out of one tensor; streaming sets
// (imagefolder, synthetic) decode or generate each item on demand, in parallel. Shuffles and
// subsets are seeded and identical on every machine.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qbench/common/registry.h"
#include "qbench/config/matrix.h"

namespace qbench::data {

enum class Split { Train, Test };
const char* split_name(Split s);

/// Train: with the dataset's training augmentation, drawn from the batch seed. Eval: the fixed
/// evaluation transform (e.g. resize + centre crop), seed unused.
enum class Mode { Train, Eval };

struct Batch {
  at::Tensor images;  ///< B x C x H x W, float32, contiguous
  at::Tensor labels;  ///< B, int64
};

struct ItemShape {
  int64_t channels = 0, height = 0, width = 0;
};

class Dataset : public std::enable_shared_from_this<Dataset> {
 public:
  virtual ~Dataset() = default;
  virtual std::string name() const = 0;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  /// Shape of one loaded item (the same in both modes).
  virtual ItemShape item_shape() const = 0;
  virtual int64_t label(int64_t index) const = 0;
  /// The items at `indices` (each in 0..size()-1), in that order. The result depends only on the
  /// arguments (never on timing or thread count), so a seed reproduces a batch exactly. Thread-safe.
  /// Throws DataError naming the file of an item that cannot be read.
  virtual Batch load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const = 0;
  /// True when every item is already in memory, so loading is a copy that needs no background thread.
  virtual bool in_memory() const { return false; }
};
using DatasetPtr = std::shared_ptr<const Dataset>;

/// All labels in index order (N int64).
at::Tensor all_labels(const Dataset& ds);

/// The classic in-memory form: every image as one tensor.
struct TensorDataset {
  std::string name;
  at::Tensor images;  ///< N x C x H x W, float32, normalised with the dataset's mean/std
  at::Tensor labels;  ///< N, int64
  int64_t num_classes = 0;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// A TensorDataset behind the Dataset interface. Train mode applies the tensor augmentation
/// (augment_pad_crop_flip with the batch seed), exactly as the training loop always did.
class InMemoryDataset : public Dataset {
 public:
  explicit InMemoryDataset(TensorDataset data);
  std::string name() const override { return data_.name; }
  int64_t size() const override { return data_.size(); }
  int64_t num_classes() const override { return data_.num_classes; }
  ItemShape item_shape() const override;
  int64_t label(int64_t index) const override;
  Batch load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const override;
  bool in_memory() const override { return true; }
  const TensorDataset& tensors() const { return data_; }

 private:
  TensorDataset data_;
};

/// Training augmentation of small images, in place on a contiguous float batch (B x C x H x W):
/// per image, in order, a random crop after padding by `pad` pixels (pad value = the batch
/// minimum, i.e. the background) and a horizontal flip with p = 0.5, all drawn from one
/// mt19937_64(seed): dy = rng() % (2 pad + 1), dx likewise, flip = rng() & 1.
void augment_pad_crop_flip(float* batch, int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed, int64_t pad = 2);

/// What a structural check (validate_dataset) found in one split.
struct SplitSummary {
  int64_t items = 0;                ///< images in the split
  int64_t classes = 0;              ///< classes of the dataset (for a test split, the training split's)
  ItemShape shape;                  ///< of one loaded item
  std::vector<std::string> files;   ///< every file that was checked (none for generated data)
};

/// How a registered dataset is opened. `spec` carries the resolved root and every option the
/// entry declares (defaults filled in by open_dataset).
struct DatasetEntry {
  std::string description;
  std::string default_root;  ///< where the Debian package puts it ("" when none)
  bool uses_root = true;     ///< false: generated, no files (root ignored)
  /// DatasetSpec option keys (config::dataset_option_fields) this dataset reads -> default.
  std::map<std::string, int64_t> options;
  std::function<std::shared_ptr<Dataset>(const config::DatasetSpec& spec, Split split)> open;
  /// The structural check of a split's files, in milliseconds and without decoding or holding the
  /// data: headers, sizes, counts and label range (IDX, CIFAR), the folder scan and each file's
  /// size and magic bytes (imagefolder). Throws DataError naming the file and what is wrong.
  /// Unset: opening the split is the check.
  std::function<SplitSummary(const config::DatasetSpec& spec, Split split)> validate;
};

Registry<DatasetEntry>& dataset_registry();  ///< filled on first use by register_builtin_datasets

/// Opens a split. An empty spec.root means the entry's default_root; options left at 0 take the
/// entry's defaults. Throws DataError for a missing folder or file, UnknownNameError for a name.
DatasetPtr open_dataset(const config::DatasetSpec& spec, Split split);

/// Checks a split before any work reads it (the entry's `validate`, after the same root
/// resolution and missing-folder check as open_dataset). Throws DataError naming the file or
/// folder and what is wrong, UnknownNameError for a name. What it cannot see (bytes that only a
/// decoder rejects, a gzip stream damaged inside with its length intact) still fails when the
/// split is read, with the file named.
SplitSummary validate_dataset(const config::DatasetSpec& spec, Split split);

/// `spec` with every option the dataset declares set (0 -> its default) and the others zeroed.
config::DatasetSpec with_defaults(const config::DatasetSpec& spec);

/// Loads a split into memory (a copy of the whole split in eval mode for streaming datasets).
TensorDataset load_dataset(const std::string& name, const std::string& root, Split split);

/// A permutation of 0..n-1 from a seeded mt19937_64 Fisher-Yates shuffle: identical on every
/// machine and LibTorch version for the same (n, seed).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

/// The first `count` items of seeded_permutation(n, seed) (all of them when count <= 0 or >= n).
TensorDataset seeded_subset(const TensorDataset& ds, int64_t count, uint64_t seed);

/// The same selection as a view of any dataset (its items keep their order in the permutation).
/// `ds` must be owned by a shared_ptr; the view keeps it alive. Returns `ds` itself when the
/// subset would be everything.
DatasetPtr seeded_subset(const Dataset& ds, int64_t count, uint64_t seed);

/// A view of `ds` holding the items at `indices`, in that order.
DatasetPtr index_subset(const Dataset& ds, std::vector<int64_t> indices);

/// Every item of `ds` in index order, in one batch (calibration sets, latency inputs).
Batch load_all(const Dataset& ds, Mode mode = Mode::Eval, uint64_t seed = 0);

/// Mixes a base seed with a purpose tag, so shuffles for different purposes are independent.
uint64_t derive_seed(uint64_t seed, const std::string& purpose);

/// Mixes a seed with an item index (splitmix64), for per-item augmentation draws.
uint64_t item_seed(uint64_t seed, int64_t index);

}  // namespace qbench::data
