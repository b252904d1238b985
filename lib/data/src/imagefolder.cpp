// imagefolder: ImageNet-style class folders decoded with OpenCV on demand, in parallel.
#include "qbench/data/imagefolder.h"

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <mutex>
#include <random>

#include "builtin.h"
#include "qbench/common/errors.h"

namespace qbench::data {
namespace fs = std::filesystem;

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> kExt = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm",
                                                ".pbm", ".tif", ".tiff", ".webp"};
  return kExt;
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (!hidden(it->path())) out.push_back(it->path());
  if (ec) throw DataError(dir.string() + ": cannot list folder: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

ImageFolderIndex scan_image_folder(const std::string& split_dir, const std::vector<std::string>& classes) {
  if (!fs::is_directory(split_dir)) throw DataError(split_dir + ": no such folder");
  ImageFolderIndex idx;
  idx.dir = split_dir;
  std::vector<fs::path> class_dirs;
  for (const auto& p : sorted_entries(split_dir)) {
    if (!fs::is_directory(p))
      throw DataError(p.string() + ": a file where class folders are expected (layout: " + split_dir +
                      "/<class>/<image>)");
    class_dirs.push_back(p);
  }
  if (class_dirs.empty()) throw DataError(split_dir + ": no class folders (layout: " + split_dir + "/<class>/<image>)");
  if (classes.empty()) {
    for (const auto& d : class_dirs) idx.classes.push_back(d.filename().string());
  } else {
    idx.classes = classes;
  }
  const auto& ext = image_extensions();
  for (const auto& d : class_dirs) {
    const std::string cls = d.filename().string();
    auto pos = std::find(idx.classes.begin(), idx.classes.end(), cls);
    if (pos == idx.classes.end())
      throw DataError(d.string() + ": class '" + cls + "' is not a class of the training split");
    const int64_t label = pos - idx.classes.begin();
    std::size_t count = 0;
    for (const auto& f : sorted_entries(d)) {
      if (fs::is_directory(f)) throw DataError(f.string() + ": nested folder inside a class folder");
      if (std::find(ext.begin(), ext.end(), lower(f.extension().string())) == ext.end())
        throw DataError(f.string() + ": not an image file (extensions read: .jpg .jpeg .png .bmp .ppm .pgm .pbm "
                                     ".tif .tiff .webp)");
      idx.files.push_back(f.string());
      idx.labels.push_back(label);
      ++count;
    }
    if (count == 0) throw DataError(d.string() + ": empty class folder (no images)");
  }
  return idx;
}

ImageFolderIndex index_image_split(const std::string& root_dir, Split split) {
  const fs::path root(root_dir);
  const fs::path train = root / "train";
  fs::path dir = train;
  if (split == Split::Test) {
    dir = root / "val";
    if (!fs::is_directory(dir) && fs::is_directory(root / "test")) dir = root / "test";
  }
  if (!fs::is_directory(dir))
    throw DataError(dir.string() + ": no such folder (imagefolder expects " + root_dir + "/{train,val}/<class>/<image>)");
  // The training split's class folders define the labels of both splits.
  std::vector<std::string> classes;
  if (split == Split::Test && fs::is_directory(train))
    for (const auto& p : sorted_entries(train))
      if (fs::is_directory(p)) classes.push_back(p.filename().string());
  return scan_image_folder(dir.string(), classes);
}

std::string image_format(const uint8_t* b, std::size_t n) {
  auto starts = [&](const char* m, std::size_t k, std::size_t at = 0) {
    return n >= at + k && std::memcmp(b + at, m, k) == 0;
  };
  if (starts("\xFF\xD8\xFF", 3)) return "JPEG";
  if (starts("\x89PNG\r\n\x1A\n", 8)) return "PNG";
  if (starts("BM", 2)) return "BMP";
  if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') return "PPM/PGM/PBM";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "TIFF";
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return "WebP";
  return "";
}

void check_image_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open image file");
  uint8_t head[12] = {0};
  f.read(reinterpret_cast<char*>(head), sizeof head);
  const auto n = static_cast<std::size_t>(f.gcount());
  if (n == 0) throw DataError(path + ": empty image file (0 bytes)");
  if (image_format(head, n).empty()) {
    std::string hex;
    char buf[4];
    for (std::size_t i = 0; i < std::min<std::size_t>(n, 8); ++i) {
      std::snprintf(buf, sizeof buf, "%02x", head[i]);
      hex += (i ? " " : "") + std::string(buf);
    }
    throw DataError(path + ": not an image file: its first bytes (" + hex +
                    ") are the magic of no format qbench decodes (JPEG, PNG, BMP, PPM/PGM/PBM, TIFF, WebP)");
  }
}

EvalGeometry eval_geometry(int64_t width, int64_t height, int64_t image_size) {
  const int64_t r = static_cast<int64_t>(std::floor(static_cast<double>(image_size) / kEvalCropFraction));
  EvalGeometry g{};
  if (width <= height) {
    g.resized_w = r;
    g.resized_h = static_cast<int64_t>(static_cast<double>(r) * height / width);
  } else {
    g.resized_h = r;
    g.resized_w = static_cast<int64_t>(static_cast<double>(r) * width / height);
  }
  // Round half to even, as torchvision's int(round(...)) does.
  g.crop_x = static_cast<int64_t>(std::nearbyint((g.resized_w - image_size) / 2.0));
  g.crop_y = static_cast<int64_t>(std::nearbyint((g.resized_h - image_size) / 2.0));
  return g;
}

namespace {

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0); }

// Uniform integer in [0, bound) without modulo bias (the same draw as seeded_permutation).
int64_t below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do x = rng(); while (x >= limit);
  return static_cast<int64_t>(x % bound);
}

}  // namespace

TrainGeometry train_geometry(int64_t width, int64_t height, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double area = static_cast<double>(width) * height;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  TrainGeometry g{0, 0, width, height, false};
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * (0.08 + (1.0 - 0.08) * uniform01(rng));
    const double aspect = std::exp(log_lo + (log_hi - log_lo) * uniform01(rng));
    const int64_t w = std::llround(std::sqrt(target * aspect));
    const int64_t h = std::llround(std::sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      g.y = below(rng, static_cast<uint64_t>(height - h + 1));
      g.x = below(rng, static_cast<uint64_t>(width - w + 1));
      g.w = w;
      g.h = h;
      found = true;
    }
  }
  if (!found) {  // centre crop at the nearest allowed aspect ratio
    const double in_ratio = static_cast<double>(width) / height;
    if (in_ratio < 3.0 / 4.0) {
      g.w = width;
      g.h = std::llround(width / (3.0 / 4.0));
    } else if (in_ratio > 4.0 / 3.0) {
      g.h = height;
      g.w = std::llround(height * (4.0 / 3.0));
    } else {
      g.w = width;
      g.h = height;
    }
    g.h = std::min(g.h, height);
    g.w = std::min(g.w, width);
    g.y = (height - g.h) / 2;
    g.x = (width - g.w) / 2;
  }
  g.flip = (rng() & 1) != 0;
  return g;
}

namespace {

bool has_suffix(const std::vector<uint8_t>& b, const uint8_t* s, std::size_t n) {
  return b.size() >= n && std::equal(s, s + n, b.end() - static_cast<std::ptrdiff_t>(n));
}

// Decoders fill a truncated JPEG with grey and return it, which would be a silent corruption:
// require the end-of-image marker after the last start-of-scan (inside entropy-coded data 0xFF is
// always followed by 0x00 or a restart marker, so neither marker can appear there by chance).
void check_complete(const std::string& path, const std::vector<uint8_t>& b) {
  const std::size_t n = b.size();
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
    std::size_t sos = 0, eoi = 0;
    for (std::size_t i = 0; i + 1 < n; ++i)
      if (b[i] == 0xFF) {
        if (b[i + 1] == 0xDA) sos = i;
        else if (b[i + 1] == 0xD9) eoi = i;
      }
    if (sos == 0 || eoi < sos) throw DataError(path + ": truncated JPEG (no end-of-image marker after the last scan)");
  }
  static const uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  static const uint8_t kIend[8] = {'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  if (n >= 8 && std::equal(kPngMagic, kPngMagic + 8, b.begin()) && !has_suffix(b, kIend, 8))
    throw DataError(path + ": truncated PNG (no IEND chunk at the end)");
}

cv::Mat decode(const std::string& path) {
  auto bytes = detail::read_file(path);
  if (bytes.empty()) throw DataError(path + ": empty image file");
  check_complete(path, bytes);
  cv::Mat img;
  try {
    img = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, bytes.data()), cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw DataError(path + ": cannot decode image: " + e.what());
  }
  if (img.empty() || img.type() != CV_8UC3)
    throw DataError(path + ": cannot decode image (corrupt, truncated or not a supported image format)");
  return img;
}

int interpolation(int64_t from_w, int64_t from_h, int64_t to_w, int64_t to_h) {
  return (to_w < from_w && to_h < from_h) ? cv::INTER_AREA : cv::INTER_LINEAR;
}

// BGR uint8 S x S (optionally mirrored) -> 3 x S x S RGB floats, ImageNet-normalised.
void to_chw(const cv::Mat& bgr, bool flip, float* out) {
  const int s = bgr.rows;
  const int64_t plane = static_cast<int64_t>(s) * s;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * kImageNetStd[c]);
    shift[c] = kImageNetMean[c] / kImageNetStd[c];
  }
  for (int y = 0; y < s; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    for (int x = 0; x < s; ++x) {
      const uint8_t* px = row + 3 * (flip ? s - 1 - x : x);
      const int64_t o = static_cast<int64_t>(y) * s + x;
      for (int c = 0; c < 3; ++c) out[c * plane + o] = static_cast<float>(px[2 - c]) * scale[c] - shift[c];
    }
  }
}

}  // namespace

void decode_image(const std::string& path, Mode mode, uint64_t seed, int64_t image_size, float* out) {
  cv::Mat img = decode(path);
  const int64_t w = img.cols, h = img.rows, s = image_size;
  cv::Mat square;
  bool flip = false;
  try {
    if (mode == Mode::Eval) {
      const EvalGeometry g = eval_geometry(w, h, s);
      cv::Mat resized = img;
      if (g.resized_w != w || g.resized_h != h)
        cv::resize(img, resized, cv::Size(static_cast<int>(g.resized_w), static_cast<int>(g.resized_h)), 0, 0,
                   interpolation(w, h, g.resized_w, g.resized_h));
      square = resized(cv::Rect(static_cast<int>(g.crop_x), static_cast<int>(g.crop_y), static_cast<int>(s),
                                static_cast<int>(s)));
    } else {
      const TrainGeometry g = train_geometry(w, h, seed);
      cv::Mat crop = img(cv::Rect(static_cast<int>(g.x), static_cast<int>(g.y), static_cast<int>(g.w),
                                  static_cast<int>(g.h)));
      if (g.w == s && g.h == s)
        square = crop;
      else
        cv::resize(crop, square, cv::Size(static_cast<int>(s), static_cast<int>(s)), 0, 0,
                   interpolation(g.w, g.h, s, s));
      flip = g.flip;
    }
  } catch (const cv::Exception& e) {
    throw DataError(path + ": cannot transform image: " + e.what());
  }
  to_chw(square, flip, out);
}

void write_image(const std::string& path, int64_t width, int64_t height, int channels, const uint8_t* pixels,
                 int quality) {
  if (channels != 1 && channels != 3) throw DataError(path + ": write_image takes 1 or 3 channels");
  cv::Mat src(static_cast<int>(height), static_cast<int>(width), channels == 3 ? CV_8UC3 : CV_8UC1,
              const_cast<uint8_t*>(pixels));
  cv::Mat bgr;
  if (channels == 3)
    cv::cvtColor(src, bgr, cv::COLOR_RGB2BGR);
  else
    bgr = src;
  bool ok = false;
  try {
    ok = cv::imwrite(path, bgr, {cv::IMWRITE_JPEG_QUALITY, quality});
  } catch (const cv::Exception& e) {
    throw DataError(path + ": cannot write image: " + e.what());
  }
  if (!ok) throw DataError(path + ": cannot write image");
}

namespace detail {
namespace {

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(const config::DatasetSpec& spec, Split split) : s_(spec.image_size) {
    static std::once_flag once;
    // We decode in our own pool; OpenCV's internal threads would only oversubscribe the cores.
    std::call_once(once, [] { cv::setNumThreads(0); });
    idx_ = index_image_split(spec.root, split);
    pool_ = shared_pool(spec.workers);
  }
  std::string name() const override { return "imagefolder"; }
  int64_t size() const override { return static_cast<int64_t>(idx_.files.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(idx_.classes.size()); }
  ItemShape item_shape() const override { return {3, s_, s_}; }
  int64_t label(int64_t index) const override { return idx_.labels.at(static_cast<std::size_t>(index)); }

  Batch load_batch(const std::vector<int64_t>& indices, Mode mode, uint64_t seed) const override {
    const int64_t n = static_cast<int64_t>(indices.size()), item = 3 * s_ * s_;
    for (int64_t k : indices)
      if (k < 0 || k >= size())
        throw DataError(idx_.dir + ": item index " + std::to_string(k) + " outside 0.." + std::to_string(size() - 1));
    Batch b;
    b.images = at::empty({n, 3, s_, s_}, at::kFloat);
    b.labels = at::empty({n}, at::kLong);
    float* dst = b.images.data_ptr<float>();
    int64_t* lbl = b.labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) lbl[i] = label(indices[static_cast<std::size_t>(i)]);
    pool_->parallel_for(n, [&](int64_t i) {
      const int64_t k = indices[static_cast<std::size_t>(i)];
      decode_image(idx_.files[static_cast<std::size_t>(k)], mode, item_seed(seed, k), s_, dst + i * item);
    });
    return b;
  }

 private:
  int64_t s_;
  ImageFolderIndex idx_;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace

void register_imagefolder(Registry<DatasetEntry>& r) {
  DatasetEntry e;
  e.description =
      "ImageNet-style class folders root/{train,val}/<class>/*.{jpg,png,...} decoded with OpenCV on demand; "
      "eval: resize to image_size/0.875 + centre crop, train: random resized crop + flip; option image_size";
  e.options = {{"image_size", 224}};
  e.open = [](const config::DatasetSpec& spec, Split split) -> std::shared_ptr<Dataset> {
    return std::make_shared<ImageFolderDataset>(spec, split);
  };
  // The folder scan (classes, empty classes, stray files) and each file's size and magic bytes.
  e.validate = [](const config::DatasetSpec& spec, Split split) {
    const ImageFolderIndex idx = index_image_split(spec.root, split);
    // In the decoding pool (an ImageNet split is a million files); the error reported is the
    // first file's in sorted order, whatever the timing.
    shared_pool(spec.workers)->parallel_for(static_cast<int64_t>(idx.files.size()), [&](int64_t i) {
      check_image_file(idx.files[static_cast<std::size_t>(i)]);
    });
    SplitSummary out;
    out.items = static_cast<int64_t>(idx.files.size());
    out.classes = static_cast<int64_t>(idx.classes.size());
    out.shape = {3, spec.image_size, spec.image_size};
    out.files = idx.files;
    return out;
  };
  r.add("imagefolder", std::move(e));
}

}  // namespace detail
}  // namespace qbench::data
