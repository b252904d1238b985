#pragma once
// What the sources share and the interface does not show: Image <-> cv::Mat and argument checks.
#include <opencv2/core.hpp>

#include "qbench/sysnoise/image.h"

namespace qbench::sysnoise::detail {

/// A view of `image` as an 8-bit cv::Mat (no copy; channel order as stored).
cv::Mat as_mat(const Image& image);
/// A copy of an 8-bit, 1- or 3-channel cv::Mat (no colour conversion).
Image from_mat(const cv::Mat& mat);
/// check_image, plus a positive target size; `what` names the caller in the message.
void check_resize(const Image& image, int width, int height, const char* what);

}  // namespace qbench::sysnoise::detail
