#pragma once
// FP32 weights in the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {string: string}}, then the raw little-endian tensor bytes. Names are the
// architecture's state-dict names, which are torchvision's / timm's, so published weights load.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qbench/quant/qmodules.h"

namespace qbench::models {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Writes tensors (F32, F64, F16, BF16, I64, I32, I8, U8, BOOL; made contiguous, CPU) in name
/// order, header padded to 8 bytes. Written to a temporary file and renamed: whole or absent.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor. Throws qbench::DataError naming the file for a truncated file, a malformed
/// header, offsets outside the data or not matching dtype x shape, or an unknown dtype.
NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

/// The model's FP32 state: parameters and buffers under their state-dict names, without the fake
/// quantizers' own parameters.
NamedTensors model_state(quant::QuantModel& model);

void export_weights(quant::QuantModel& model, const std::string& path,
                    const std::map<std::string, std::string>& metadata = {});

struct ImportResult {
  int64_t tensors = 0;                     ///< tensors copied into the model
  std::vector<std::string> defaulted;      ///< model buffers absent from the file and left as is
};

/// Loads FP32 weights into `model`: names are matched after stripping a "module." / "model."
/// prefix (DataParallel / wrapper checkpoints); floating dtypes are converted to the model's.
/// Strict: a model tensor missing from the file, a file tensor the model does not have, or a shape
/// mismatch throws qbench::DataError naming the file and the tensor. Only BatchNorm's
/// `num_batches_tracked` (absent from timm checkpoints) may be missing.
ImportResult import_weights(quant::QuantModel& model, const std::string& path);

}  // namespace qbench::models
