// fashion-mnist and mnist: IDX files, gzip-compressed or plain, held in memory.
#include <ATen/ATen.h>

#include <filesystem>

#include "builtin.h"
#include "qbench/common/errors.h"
#include "qbench/data/idx.h"

namespace qbench::data::detail {
namespace {
namespace fs = std::filesystem;

// Finds `<root>/<stem>.gz` or `<root>/<stem>` (the gzip file first when both exist).
std::string find_idx_file(const std::string& root, const std::string& stem) {
  for (const auto& name : {stem + ".gz", stem}) {
    fs::path p = fs::path(root) / name;
    if (fs::exists(p)) return p.string();
  }
  throw DataError((fs::path(root) / stem).string() +
                  "[.gz]: no such file in the dataset folder (set dataset.root in the matrix or --data-root)");
}

// MNIST-family loader: images idx3 (N x H x W), labels idx1 (N), normalised with the training
// split's mean/std so train and test share one transform.
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
  for (std::size_t i = 0; i < lbl.bytes.size(); ++i)
    if (lbl.bytes[i] >= 10)
      throw DataError(lbl_path + ": label " + std::to_string(lbl.bytes[i]) + " of item " + std::to_string(i) +
                      " outside 0..9");
  const int64_t n = img.dims[0], h = img.dims[1], w = img.dims[2];
  TensorDataset ds;
  ds.name = name;
  ds.num_classes = 10;
  auto u8 = at::from_blob(img.bytes.data(), {n, 1, h, w}, at::kByte);
  ds.images = u8.to(at::kFloat).div_(255.0).sub_(mean).div_(stdev).contiguous();
  ds.labels = at::from_blob(lbl.bytes.data(), {n}, at::kByte).to(at::kLong).clone();
  return ds;
}

// The structural check: both headers and lengths (check_idx), matching counts, and every label
// in 0..9 (the label file is small, so it is read whole; the image payload is not).
SplitSummary validate_mnist_like(const std::string& root, Split split) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const std::string img_path = find_idx_file(root, prefix + "-images-idx3-ubyte");
  const std::string lbl_path = find_idx_file(root, prefix + "-labels-idx1-ubyte");
  const IdxHeader img = check_idx(img_path);
  if (img.dims.size() != 3) throw DataError(img_path + ": expected a 3-d image array, got " + std::to_string(img.dims.size()) + "-d");
  const IdxHeader lh = check_idx(lbl_path);
  if (lh.dims.size() != 1) throw DataError(lbl_path + ": expected a 1-d label array, got " + std::to_string(lh.dims.size()) + "-d");
  if (img.dims[0] != lh.dims[0])
    throw DataError(img_path + ": " + std::to_string(img.dims[0]) + " images but " + lbl_path + " has " +
                    std::to_string(lh.dims[0]) + " labels");
  const IdxArray lbl = read_idx(lbl_path);
  for (std::size_t i = 0; i < lbl.bytes.size(); ++i)
    if (lbl.bytes[i] >= 10)
      throw DataError(lbl_path + ": label " + std::to_string(lbl.bytes[i]) + " of item " + std::to_string(i) +
                      " outside 0..9");
  SplitSummary out;
  out.items = img.dims[0];
  out.classes = 10;
  out.shape = {1, img.dims[1], img.dims[2]};
  out.files = {img_path, lbl_path};
  return out;
}

DatasetEntry mnist_entry(const std::string& name, const std::string& description, const std::string& root,
                         double mean, double stdev) {
  DatasetEntry e;
  e.description = description;
  e.default_root = root;
  e.open = [name, mean, stdev](const config::DatasetSpec& spec, Split split) -> std::shared_ptr<Dataset> {
    return std::make_shared<InMemoryDataset>(load_mnist_like(name, spec.root, split, mean, stdev));
  };
  e.validate = [](const config::DatasetSpec& spec, Split split) { return validate_mnist_like(spec.root, split); };
  return e;
}

}  // namespace

void register_idx_dataset(Registry<DatasetEntry>& r) {
  r.add("fashion-mnist",
        mnist_entry("fashion-mnist",
                    "Fashion-MNIST (Zalando): 60k/10k 28x28 grey clothing images, 10 classes; IDX, gzip or plain",
                    "/usr/share/datasets/fashion-mnist", 0.2860, 0.3530));
  r.add("mnist", mnist_entry("mnist", "MNIST handwritten digits: 60k/10k 28x28 grey, 10 classes; IDX, gzip or plain",
                             "", 0.1307, 0.3081));
}

}  // namespace qbench::data::detail
