#include "qbench/sysnoise/image.h"

#include <cstring>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "qbench/common/errors.h"
#include "internal.h"

namespace qbench::sysnoise {

namespace {
void check_dims(int width, int height, int channels, const char* what) {
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
    throw Error(std::string(what) + ": expected width, height > 0 and 1 or 3 channels, got " +
                std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels));
}
}  // namespace

Image::Image(int w, int h, int c) : width(w), height(h), channels(c) {
  check_dims(w, h, c, "Image");
  pixels.assign(static_cast<std::size_t>(w) * h * c, 0);
}

void check_image(const Image& image, const char* what) {
  check_dims(image.width, image.height, image.channels, what);
  const std::size_t expected = static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected)
    throw Error(std::string(what) + ": image has " + std::to_string(image.pixels.size()) + " bytes, " +
                std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                std::to_string(image.channels) + " needs " + std::to_string(expected));
}

Image load_image(const std::string& path) {
  cv::Mat m = cv::imread(path, cv::IMREAD_UNCHANGED);
  if (m.empty()) throw DataError("cannot read image '" + path + "'");
  if (m.depth() != CV_8U) throw DataError("image '" + path + "' is not 8-bit");
  if (m.channels() == 4) cv::cvtColor(m, m, cv::COLOR_BGRA2RGB);
  else if (m.channels() == 3) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  else if (m.channels() != 1) throw DataError("image '" + path + "' has " + std::to_string(m.channels()) + " channels");
  return detail::from_mat(m);
}

namespace detail {

cv::Mat as_mat(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels.data()));
}

Image from_mat(const cv::Mat& mat) {
  Image out(mat.cols, mat.rows, mat.channels());
  for (int y = 0; y < mat.rows; ++y) std::memcpy(&out.at(0, y, 0), mat.ptr<uint8_t>(y), out.row_bytes());
  return out;
}

void check_resize(const Image& image, int width, int height, const char* what) {
  check_image(image, what);
  if (width <= 0 || height <= 0)
    throw Error(std::string(what) + ": target size must be positive, got " + std::to_string(width) + "x" +
                std::to_string(height));
}

}  // namespace detail

}  // namespace qbench::sysnoise
