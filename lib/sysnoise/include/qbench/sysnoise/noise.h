#pragma once
// The SysNoise track's noise names (the matrix's `noise` axis): one table of {name, kind,
// parameters, description}, in the order `qbench list` and reports show them.
#include <string>
#include <vector>

#include "qbench/sysnoise/colour.h"
#include "qbench/sysnoise/jpeg.h"
#include "qbench/sysnoise/resize.h"

namespace qbench::sysnoise {

enum class NoiseKind {
  kNone,       ///< the reference pipeline
  kDecode,     ///< the test images' JPEG bytes decoded another way (`decoder`)
  kResize,     ///< the resize to the model's input size done with another kernel (`kernel`)
  kColour,     ///< an RGB round trip through 8-bit YUV (`yuv_standard`, `yuv_range`)
  kPrecision,  ///< inference in reduced precision (bf16, fp16)
  kMode,       ///< a model-inference mode flipped (pooling ceil_mode, count_include_pad, align_corners)
};

/// "none", "decode", "resize", "colour", "precision", "mode".
const char* kind_name(NoiseKind kind);

struct Noise {
  std::string name;
  NoiseKind kind = NoiseKind::kNone;
  std::string description;
  Decoder decoder = Decoder::kIslow;                  ///< kDecode only
  ResizeKernel kernel = ResizeKernel::kPilBilinear;   ///< kResize only
  YuvStandard yuv_standard = YuvStandard::kBt601;     ///< kColour only
  YuvRange yuv_range = YuvRange::kFull;               ///< kColour only
};

/// Every noise, in table order (starting with "none").
const std::vector<Noise>& noises();
/// The names of noises(), in the same order.
std::vector<std::string> noise_names();
/// The noise called `name`; throws qbench::UnknownNameError ("unknown noise 'x' (did you mean: ...)").
const Noise& find_noise(const std::string& name);
/// "<name> (<kind>): <description>", for `qbench list` and error messages.
std::string describe(const Noise& noise);
std::string describe(const std::string& name);

}  // namespace qbench::sysnoise
