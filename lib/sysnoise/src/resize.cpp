#include "qbench/sysnoise/resize.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "qbench/common/errors.h"
#include "internal.h"

namespace qbench::sysnoise {

const char* resize_kernel_name(ResizeKernel kernel) {
  switch (kernel) {
    case ResizeKernel::kCvNearest: return "cv-nearest";
    case ResizeKernel::kCvBilinear: return "cv-bilinear";
    case ResizeKernel::kCvArea: return "cv-area";
    case ResizeKernel::kCvBicubic: return "cv-bicubic";
    case ResizeKernel::kCvLanczos: return "cv-lanczos";
    case ResizeKernel::kPilBilinear: return "pil-bilinear";
    case ResizeKernel::kPilBicubic: return "pil-bicubic";
  }
  return "?";
}

namespace {

int cv_interpolation(ResizeKernel kernel) {
  switch (kernel) {
    case ResizeKernel::kCvNearest: return cv::INTER_NEAREST;
    case ResizeKernel::kCvBilinear: return cv::INTER_LINEAR;
    case ResizeKernel::kCvArea: return cv::INTER_AREA;
    case ResizeKernel::kCvBicubic: return cv::INTER_CUBIC;
    case ResizeKernel::kCvLanczos: return cv::INTER_LANCZOS4;
    default: throw Error("resize: not an OpenCV kernel");
  }
}

Image cv_resize(const Image& image, int width, int height, ResizeKernel kernel) {
  cv::Mat out;
  cv::resize(detail::as_mat(image), out, cv::Size(width, height), 0, 0, cv_interpolation(kernel));
  return detail::from_mat(out);
}

}  // namespace

Image resize(const Image& image, int width, int height, ResizeKernel kernel) {
  detail::check_resize(image, width, height, "resize");
  switch (kernel) {
    case ResizeKernel::kPilBilinear: return pil_resize(image, width, height, false);
    case ResizeKernel::kPilBicubic: return pil_resize(image, width, height, true);
    default: return cv_resize(image, width, height, kernel);
  }
}

}  // namespace qbench::sysnoise
