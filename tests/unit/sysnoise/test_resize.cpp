// Resizes: the PIL-compatible kernels bit for bit against Debian python3-pil's Image.resize on
// committed fixtures; every kernel on a hand-computed row; OpenCV against PIL on downscale.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/sysnoise/resize.h"
#include "sysnoise_util.h"

using namespace qbench::sysnoise;
using sysnoise_test::diff;
using sysnoise_test::fixture;

namespace {

Image row(const std::vector<uint8_t>& values) {
  Image img(static_cast<int>(values.size()), 1, 1);
  img.pixels = values;
  return img;
}

}  // namespace

TEST_CASE("sysnoise: PIL-compatible resize equals python3-pil's Image.resize exactly", "[sysnoise][resize]") {
  for (const std::string image : {"rgb", "grey"}) {
    const Image src = load_image(fixture("resize_" + image + "_src.png"));
    REQUIRE(src.width == 64);
    for (const std::string filter : {"bilinear", "bicubic"})
      for (const auto& size : {std::pair{56, 56}, std::pair{37, 23}, std::pair{80, 70}}) {
        const std::string name = "resize_" + image + "_pil_" + filter + "_" + std::to_string(size.first) + "x" +
                                 std::to_string(size.second) + ".png";
        INFO(name);
        const Image want = load_image(fixture(name));
        const Image got = resize(src, size.first, size.second,
                                 filter == "bicubic" ? ResizeKernel::kPilBicubic : ResizeKernel::kPilBilinear);
        const auto delta = diff(got, want);
        CHECK(delta.count == 0);
        CHECK(delta.max == 0);
      }
  }
}

TEST_CASE("sysnoise: each kernel on a hand-computed 6x1 -> 2x1 downscale", "[sysnoise][resize]") {
  const Image src = row({0, 60, 0, 240, 30, 90});
  auto run = [&](ResizeKernel k) { return resize(src, 2, 1, k).pixels; };
  using V = std::vector<uint8_t>;
  CHECK(run(ResizeKernel::kCvNearest) == V{0, 240});   // source x = floor(3 * i)
  CHECK(run(ResizeKernel::kCvArea) == V{20, 120});     // mean of each 3-pixel block
  // Centres at 3 * (i + 0.5) - 0.5 = 1 and 4 fall on source pixels: the 2-, 4- and 8-tap kernels
  // (no antialiasing) just pick them.
  CHECK(run(ResizeKernel::kCvBilinear) == V{60, 30});
  CHECK(run(ResizeKernel::kCvBicubic) == V{60, 30});
  CHECK(run(ResizeKernel::kCvLanczos) == V{60, 30});
  // PIL: centres 1.5 and 4.5 in pixel-edge coordinates, triangle of half-width 3. Output 0 reads
  // x = 0..4 with weights (2/3, 1, 2/3, 1/3, 0) / (8/3): 0.375 * 60 + 0.125 * 240 = 52.5 -> 53;
  // output 1 reads x = 2..5 with (1/3, 2/3, 1, 2/3) / (8/3): 0.25 * 240 + 0.375 * 30 + 0.25 * 90 = 93.75 -> 94.
  CHECK(run(ResizeKernel::kPilBilinear) == V{53, 94});
}

TEST_CASE("sysnoise: PIL bicubic overshoots and clips at hard edges", "[sysnoise][resize]") {
  // Upscaling a step 0 | 255 with a = -0.5 rings below 0 and above 255: both clip.
  const Image src = row({0, 0, 0, 255, 255, 255});
  const Image up = resize(src, 12, 1, ResizeKernel::kPilBicubic);
  const Image lin = resize(src, 12, 1, ResizeKernel::kPilBilinear);
  CHECK(up.pixels.front() == 0);
  CHECK(up.pixels.back() == 255);
  CHECK(diff(up, lin).count > 0);
  for (std::size_t i = 1; i < up.pixels.size(); ++i) CHECK(up.pixels[i] >= up.pixels[i - 1]);
}

TEST_CASE("sysnoise: OpenCV kernels differ from PIL's on downscale (the mismatch SysNoise measures)", "[sysnoise][resize]") {
  const Image src = load_image(fixture("resize_rgb_src.png"));
  const Image pil = resize(src, 37, 23, ResizeKernel::kPilBilinear);
  const std::size_t values = pil.pixels.size();
  for (ResizeKernel k : {ResizeKernel::kCvNearest, ResizeKernel::kCvBilinear, ResizeKernel::kCvArea,
                         ResizeKernel::kCvBicubic, ResizeKernel::kCvLanczos}) {
    INFO(resize_kernel_name(k));
    const auto delta = diff(resize(src, 37, 23, k), pil);
    CHECK(delta.count > values / 4);
    CHECK(delta.max > 10);
  }
  // PIL's own bilinear and bicubic differ too, by less.
  CHECK(diff(resize(src, 37, 23, ResizeKernel::kPilBicubic), pil).count > 0);
}

TEST_CASE("sysnoise: resize keeps a same-size image and refuses bad sizes", "[sysnoise][resize]") {
  const Image src = load_image(fixture("resize_grey_src.png"));
  for (ResizeKernel k : {ResizeKernel::kCvNearest, ResizeKernel::kCvBilinear, ResizeKernel::kCvArea,
                         ResizeKernel::kCvBicubic, ResizeKernel::kCvLanczos, ResizeKernel::kPilBilinear,
                         ResizeKernel::kPilBicubic}) {
    INFO(resize_kernel_name(k));
    CHECK(diff(resize(src, src.width, src.height, k), src).count == 0);
  }
  CHECK_THROWS_AS(resize(src, 0, 10, ResizeKernel::kPilBilinear), qbench::Error);
  Image broken = src;
  broken.pixels.pop_back();
  CHECK_THROWS_AS(resize(broken, 10, 10, ResizeKernel::kCvArea), qbench::Error);
}
