#pragma once
// The `imagefolder` dataset (ImageNet layout: root/{train,val}/<class>/<image>), its transforms
// and the image I/O behind them (OpenCV stays inside lib/data). Exposed for tests and benchmarks.
#include <cstdint>
#include <string>
#include <vector>

#include "qbench/data/dataset.h"

namespace qbench::data {

/// ImageNet normalisation (RGB order).
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};
/// Evaluation resizes the shorter side to floor(image_size / kEvalCropFraction) (256 for 224).
constexpr double kEvalCropFraction = 0.875;

/// The files of one split, sorted by class folder name, then file name (the same on every
/// machine). Labels index `classes`.
struct ImageFolderIndex {
  std::string dir;                   ///< the split folder
  std::vector<std::string> classes;  ///< class folder names, sorted
  std::vector<std::string> files;    ///< full paths
  std::vector<int64_t> labels;
};

/// File name extensions read as images (lower case, compared case-insensitively).
const std::vector<std::string>& image_extensions();

/// Lists `split_dir`. `classes` empty: its own class folders define the classes; otherwise the
/// class list of the training split, which every class folder here must belong to. Throws
/// DataError naming the folder or file for: a missing folder, no class folders, an empty class
/// folder, a file that is not an image, a nested folder, or a class unknown to the training split.
/// Hidden entries (names starting with '.') are skipped.
ImageFolderIndex scan_image_folder(const std::string& split_dir, const std::vector<std::string>& classes = {});

/// The index of one split of an imagefolder root (root/train, or root/val, else root/test), with
/// the training split's class folders as the labels of both: scan_image_folder of that folder.
ImageFolderIndex index_image_split(const std::string& root, Split split);

/// The format an image file's first bytes announce ("JPEG", "PNG", "BMP", "PPM/PGM/PBM", "TIFF",
/// "WebP"), or "" when they announce none of the formats decode_image reads.
std::string image_format(const uint8_t* bytes, std::size_t n);

/// The structural check of one image file, without decoding it: it must not be empty and its
/// first bytes must be the magic of a format decode_image reads. Throws DataError naming the file.
/// (A file whose bytes fail only in the decoder passes; decode_image names it when it is read.)
void check_image_file(const std::string& path);

/// Where the evaluation transform resizes to and crops: shorter side to
/// floor(image_size / 0.875), the longer one scaled alike (truncated, as torchvision does), then
/// a centred image_size square at (round((W - S) / 2), round((H - S) / 2)), halves to even.
struct EvalGeometry {
  int64_t resized_w, resized_h, crop_x, crop_y;
};
EvalGeometry eval_geometry(int64_t width, int64_t height, int64_t image_size);

/// torchvision's RandomResizedCrop.get_params (scale (0.08, 1), ratio (3/4, 4/3), ten tries then
/// the centre-crop fallback) and a horizontal flip with p = 0.5, drawn from mt19937_64(seed).
struct TrainGeometry {
  int64_t x, y, w, h;  ///< the crop in the decoded image
  bool flip;
};
TrainGeometry train_geometry(int64_t width, int64_t height, uint64_t seed);

/// Decodes one image file into `out` (3 x S x S floats, RGB, ImageNet-normalised): Eval = resize
/// + centre crop; Train = random resized crop + flip drawn from `seed`. Resizing uses area
/// averaging when shrinking and bilinear interpolation otherwise. Throws DataError naming the file
/// when it cannot be read or decoded, or is truncated (a JPEG without its end marker, a PNG
/// without its IEND chunk).
void decode_image(const std::string& path, Mode mode, uint64_t seed, int64_t image_size, float* out);

/// Writes an 8-bit image (rows of RGB or grey pixels) with OpenCV's encoder chosen by the
/// extension (JPEG at `quality`). For tests, fixtures and benchmarks.
void write_image(const std::string& path, int64_t width, int64_t height, int channels, const uint8_t* pixels,
                 int quality = 95);

}  // namespace qbench::data
