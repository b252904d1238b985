#include "qbench/sysnoise/noise.h"

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::sysnoise {

const char* kind_name(NoiseKind kind) {
  switch (kind) {
    case NoiseKind::kNone: return "none";
    case NoiseKind::kDecode: return "decode";
    case NoiseKind::kResize: return "resize";
    case NoiseKind::kColour: return "colour";
    case NoiseKind::kPrecision: return "precision";
    case NoiseKind::kMode: return "mode";
  }
  return "?";
}

namespace {

Noise plain(const char* name, NoiseKind kind, const char* description) {
  Noise n;
  n.name = name;
  n.kind = kind;
  n.description = description;
  return n;
}

Noise decode(const char* name, Decoder decoder, const char* description) {
  Noise n = plain(name, NoiseKind::kDecode, description);
  n.decoder = decoder;
  return n;
}

Noise resize_noise(const char* name, ResizeKernel kernel, const char* description) {
  Noise n = plain(name, NoiseKind::kResize, description);
  n.kernel = kernel;
  return n;
}

Noise colour(const char* name, YuvStandard standard, YuvRange range, const char* description) {
  Noise n = plain(name, NoiseKind::kColour, description);
  n.yuv_standard = standard;
  n.yuv_range = range;
  return n;
}

std::vector<Noise> make_table() {
  using D = Decoder;
  using K = ResizeKernel;
  using S = YuvStandard;
  using R = YuvRange;
  return {
      plain("none", NoiseKind::kNone, "the reference pipeline: libjpeg-turbo ISLOW decode, PIL-compatible bilinear resize, FP32"),
      decode("decode-ifast", D::kIfast, "JPEG decoded with libjpeg-turbo's fast integer IDCT (JDCT_IFAST)"),
      decode("decode-float", D::kFloat, "JPEG decoded with libjpeg-turbo's floating-point IDCT (JDCT_FLOAT)"),
      decode("decode-opencv", D::kOpencv, "JPEG decoded by OpenCV's cv::imdecode"),
      decode("decode-nofancy", D::kIslowNoFancy, "JPEG decoded with ISLOW but without fancy chroma upsampling (colour only)"),
      resize_noise("resize-cv-nearest", K::kCvNearest, "resized with OpenCV INTER_NEAREST"),
      resize_noise("resize-cv-bilinear", K::kCvBilinear, "resized with OpenCV INTER_LINEAR (no antialiasing)"),
      resize_noise("resize-cv-area", K::kCvArea, "resized with OpenCV INTER_AREA"),
      resize_noise("resize-cv-bicubic", K::kCvBicubic, "resized with OpenCV INTER_CUBIC (a = -0.75, no antialiasing)"),
      resize_noise("resize-cv-lanczos", K::kCvLanczos, "resized with OpenCV INTER_LANCZOS4"),
      resize_noise("resize-pil-bilinear", K::kPilBilinear, "resized with Pillow's antialiased BILINEAR"),
      resize_noise("resize-pil-bicubic", K::kPilBicubic, "resized with Pillow's antialiased BICUBIC (a = -0.5)"),
      colour("yuv-bt601-full", S::kBt601, R::kFull, "RGB through 8-bit BT.601 full-range YUV and back (RGB data only)"),
      colour("yuv-bt601-limited", S::kBt601, R::kLimited, "RGB through 8-bit BT.601 limited-range YUV and back (RGB data only)"),
      colour("yuv-bt709-full", S::kBt709, R::kFull, "RGB through 8-bit BT.709 full-range YUV and back (RGB data only)"),
      colour("yuv-bt709-limited", S::kBt709, R::kLimited, "RGB through 8-bit BT.709 limited-range YUV and back (RGB data only)"),
      plain("bf16", NoiseKind::kPrecision, "inference in bfloat16"),
      plain("fp16", NoiseKind::kPrecision, "inference in IEEE half, emulated: each layer's inputs, weights and outputs rounded to half"),
      plain("ceil-mode", NoiseKind::kMode, "pooling layers' ceil_mode flipped"),
      plain("count-include-pad", NoiseKind::kMode, "average pooling's count_include_pad flipped"),
      plain("align-corners", NoiseKind::kMode, "upsampling's align_corners flipped"),
  };
}

}  // namespace

const std::vector<Noise>& noises() {
  static const std::vector<Noise> table = make_table();
  return table;
}

std::vector<std::string> noise_names() {
  std::vector<std::string> names;
  for (const Noise& n : noises()) names.push_back(n.name);
  return names;
}

const Noise& find_noise(const std::string& name) {
  for (const Noise& n : noises())
    if (n.name == name) return n;
  throw UnknownNameError("unknown noise '" + name + "'" + did_you_mean(name, noise_names()));
}

std::string describe(const Noise& noise) {
  return noise.name + " (" + kind_name(noise.kind) + "): " + noise.description;
}

std::string describe(const std::string& name) { return describe(find_noise(name)); }

}  // namespace qbench::sysnoise
