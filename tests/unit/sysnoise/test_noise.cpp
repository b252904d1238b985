// The noise table: every name issue 20 lists, with its kind and parameters; unknown names come
// back with suggestions.
#include <catch2/catch.hpp>

#include <string>

#include "qbench/common/errors.h"
#include "qbench/sysnoise/noise.h"

using namespace qbench::sysnoise;

TEST_CASE("sysnoise: every SysNoise name is in the table with its kind", "[sysnoise][noise]") {
  const std::pair<const char*, NoiseKind> expected[] = {
      {"none", NoiseKind::kNone},
      {"decode-ifast", NoiseKind::kDecode},
      {"decode-float", NoiseKind::kDecode},
      {"decode-opencv", NoiseKind::kDecode},
      {"decode-nofancy", NoiseKind::kDecode},
      {"resize-cv-nearest", NoiseKind::kResize},
      {"resize-cv-bilinear", NoiseKind::kResize},
      {"resize-cv-area", NoiseKind::kResize},
      {"resize-cv-bicubic", NoiseKind::kResize},
      {"resize-cv-lanczos", NoiseKind::kResize},
      {"resize-pil-bilinear", NoiseKind::kResize},
      {"resize-pil-bicubic", NoiseKind::kResize},
      {"yuv-bt601-full", NoiseKind::kColour},
      {"yuv-bt601-limited", NoiseKind::kColour},
      {"yuv-bt709-full", NoiseKind::kColour},
      {"yuv-bt709-limited", NoiseKind::kColour},
      {"bf16", NoiseKind::kPrecision},
      {"fp16", NoiseKind::kPrecision},
      {"ceil-mode", NoiseKind::kMode},
      {"count-include-pad", NoiseKind::kMode},
      {"align-corners", NoiseKind::kMode},
  };
  CHECK(noises().size() == std::size(expected));
  CHECK(noises().front().name == "none");
  for (const auto& [name, kind] : expected) {
    INFO(name);
    const Noise& n = find_noise(name);
    CHECK(n.kind == kind);
    CHECK(!n.description.empty());
    CHECK(describe(name) == std::string(name) + " (" + kind_name(kind) + "): " + n.description);
  }
  CHECK(find_noise("decode-ifast").decoder == Decoder::kIfast);
  CHECK(find_noise("decode-float").decoder == Decoder::kFloat);
  CHECK(find_noise("decode-opencv").decoder == Decoder::kOpencv);
  CHECK(find_noise("decode-nofancy").decoder == Decoder::kIslowNoFancy);
  CHECK(find_noise("resize-cv-area").kernel == ResizeKernel::kCvArea);
  CHECK(find_noise("resize-pil-bicubic").kernel == ResizeKernel::kPilBicubic);
  CHECK(find_noise("yuv-bt709-limited").yuv_standard == YuvStandard::kBt709);
  CHECK(find_noise("yuv-bt709-limited").yuv_range == YuvRange::kLimited);
  CHECK(find_noise("yuv-bt601-full").yuv_range == YuvRange::kFull);
  // The resize noise names are "resize-" + the kernel's own name.
  for (const Noise& n : noises())
    if (n.kind == NoiseKind::kResize) CHECK(n.name == std::string("resize-") + resize_kernel_name(n.kernel));
}

TEST_CASE("sysnoise: an unknown noise name suggests the closest ones", "[sysnoise][noise]") {
  try {
    find_noise("decode-ifst");
    FAIL("no error");
  } catch (const qbench::UnknownNameError& e) {
    CHECK(std::string(e.what()).find("unknown noise 'decode-ifst'") != std::string::npos);
    CHECK(std::string(e.what()).find("did you mean: decode-ifast") != std::string::npos);
  }
  CHECK_THROWS_AS(describe("fp32"), qbench::UnknownNameError);
}
