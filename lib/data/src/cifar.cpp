// cifar10 and cifar100: the binary batch files of the official "binary version", in memory.
//   cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin: records of 1 label byte + 3072
//     pixel bytes (1024 R, 1024 G, 1024 B, each 32x32 row-major)
//   cifar-100-binary/train.bin, test.bin: records of 2 label bytes (coarse, fine) + 3072 pixel
//     bytes; the fine label (100 classes) is the one used.
#include <ATen/ATen.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "builtin.h"
#include "qbench/common/errors.h"

namespace qbench::data::detail {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kPixels = 3 * 32 * 32;

struct CifarFormat {
  std::string name;
  std::string folder;  ///< the archive's folder name; the root may also be that folder itself
  std::vector<std::string> train_files, test_files;
  int label_bytes;   ///< 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine)
  int label_index;   ///< which label byte is the class
  int64_t classes;
  double mean[3], stdev[3];  ///< per channel, of the training split
};

std::string find_cifar_folder(const CifarFormat& f, const std::string& root) {
  const fs::path nested = fs::path(root) / f.folder;
  if (fs::is_directory(nested)) return nested.string();
  if (fs::exists(fs::path(root) / f.test_files.front())) return root;  // root is the folder itself
  throw DataError(nested.string() + ": no such folder (expected the " + f.name +
                  " binary version, e.g. " + (nested / f.test_files.front()).string() + ")");
}

TensorDataset load_cifar(const CifarFormat& f, const std::string& root, Split split) {
  const std::string dir = find_cifar_folder(f, root);
  const int64_t record = f.label_bytes + kPixels;
  std::vector<std::vector<uint8_t>> files;
  std::vector<std::string> paths;
  int64_t n = 0;
  for (const auto& name : split == Split::Train ? f.train_files : f.test_files) {
    const std::string path = (fs::path(dir) / name).string();
    if (!fs::exists(path)) throw DataError(path + ": missing " + f.name + " batch file");
    auto bytes = read_file(path);
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0) throw DataError(path + ": empty " + f.name + " batch file");
    if (size % record != 0)
      throw DataError(path + ": truncated or malformed " + f.name + " batch file: " + std::to_string(size) +
                      " bytes is not a whole number of " + std::to_string(record) + "-byte records");
    n += size / record;
    files.push_back(std::move(bytes));
    paths.push_back(path);
  }
  TensorDataset ds;
  ds.name = f.name;
  ds.num_classes = f.classes;
  ds.images = at::empty({n, 3, 32, 32}, at::kFloat);
  ds.labels = at::empty({n}, at::kLong);
  float* img = ds.images.data_ptr<float>();
  int64_t* lbl = ds.labels.data_ptr<int64_t>();
  int64_t k = 0;
  for (std::size_t fi = 0; fi < files.size(); ++fi) {
    const auto& bytes = files[fi];
    const int64_t records = static_cast<int64_t>(bytes.size()) / record;
    for (int64_t r = 0; r < records; ++r, ++k) {
      const uint8_t* rec = bytes.data() + r * record;
      for (int j = 0; j < f.label_bytes; ++j) {
        const int64_t limit = j == f.label_index ? f.classes : (f.label_bytes == 2 ? 20 : f.classes);
        if (rec[j] >= limit)
          throw DataError(paths[fi] + ": record " + std::to_string(r) + " has label " + std::to_string(rec[j]) +
                          " outside 0.." + std::to_string(limit - 1) + " (malformed batch file)");
      }
      lbl[k] = rec[f.label_index];
      const uint8_t* px = rec + f.label_bytes;
      float* out = img + k * kPixels;
      for (int c = 0; c < 3; ++c) {
        const double m = f.mean[c], s = f.stdev[c];
        for (int i = 0; i < 1024; ++i)
          out[c * 1024 + i] = static_cast<float>((px[c * 1024 + i] / 255.0 - m) / s);
      }
    }
  }
  return ds;
}

// The structural check: every batch file present, whole records, every label byte in range (read
// with one small pread per record; the pixels are not read).
SplitSummary validate_cifar(const CifarFormat& f, const std::string& root, Split split) {
  const std::string dir = find_cifar_folder(f, root);
  const int64_t record = f.label_bytes + kPixels;
  SplitSummary out;
  for (const auto& name : split == Split::Train ? f.train_files : f.test_files) {
    const std::string path = (fs::path(dir) / name).string();
    if (!fs::exists(path)) throw DataError(path + ": missing " + f.name + " batch file");
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec) throw DataError(path + ": cannot read " + f.name + " batch file: " + ec.message());
    if (size == 0) throw DataError(path + ": empty " + f.name + " batch file");
    if (size % record != 0)
      throw DataError(path + ": truncated or malformed " + f.name + " batch file: " + std::to_string(size) +
                      " bytes is not a whole number of " + std::to_string(record) + "-byte records");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw DataError(path + ": cannot open " + f.name + " batch file: " + std::strerror(errno));
    const int64_t records = size / record;
    uint8_t labels[2];
    for (int64_t r = 0; r < records; ++r) {
      if (::pread(fd, labels, static_cast<std::size_t>(f.label_bytes), static_cast<off_t>(r * record)) != f.label_bytes) {
        ::close(fd);
        throw DataError(path + ": read error at record " + std::to_string(r));
      }
      for (int j = 0; j < f.label_bytes; ++j) {
        const int64_t limit = j == f.label_index ? f.classes : (f.label_bytes == 2 ? 20 : f.classes);
        if (labels[j] >= limit) {
          ::close(fd);
          throw DataError(path + ": record " + std::to_string(r) + " has label " + std::to_string(labels[j]) +
                          " outside 0.." + std::to_string(limit - 1) + " (malformed batch file)");
        }
      }
    }
    ::close(fd);
    out.items += records;
    out.files.push_back(path);
  }
  out.classes = f.classes;
  out.shape = {3, 32, 32};
  return out;
}

DatasetEntry cifar_entry(CifarFormat f, const std::string& description) {
  DatasetEntry e;
  e.description = description;
  e.open = [f](const config::DatasetSpec& spec, Split split) -> std::shared_ptr<Dataset> {
    return std::make_shared<InMemoryDataset>(load_cifar(f, spec.root, split));
  };
  e.validate = [f](const config::DatasetSpec& spec, Split split) { return validate_cifar(f, spec.root, split); };
  return e;
}

}  // namespace

void register_cifar(Registry<DatasetEntry>& r) {
  CifarFormat c10{"cifar10",
                  "cifar-10-batches-bin",
                  {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
                  {"test_batch.bin"},
                  1,
                  0,
                  10,
                  {0.4914, 0.4822, 0.4465},
                  {0.2470, 0.2435, 0.2616}};
  r.add("cifar10", cifar_entry(c10, "CIFAR-10: 50k/10k 32x32 colour, 10 classes; binary batches "
                                    "(root/cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin)"));
  CifarFormat c100{"cifar100", "cifar-100-binary", {"train.bin"}, {"test.bin"}, 2, 1, 100,
                   {0.5071, 0.4865, 0.4409},
                   {0.2673, 0.2564, 0.2762}};
  r.add("cifar100", cifar_entry(c100, "CIFAR-100: 50k/10k 32x32 colour, 100 fine classes; binary "
                                      "(root/cifar-100-binary/train.bin, test.bin)"));
}

}  // namespace qbench::data::detail
