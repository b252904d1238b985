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

#include "qbench/common/files.h"
#include "qbench/quant/qmodules.h"

namespace qbench::models {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// `__metadata__` keys of the content hash save_safetensors writes into every file: the SHA-256
/// (64 lowercase hex digits) of the data section (every byte after the header: the tensors' bytes
/// in file order) and that section's length in bytes (decimal). `sha256sum` of the file's bytes
/// after 8 + header length reproduces the hash.
inline constexpr const char* kContentSha256Key = "qbench_sha256";
inline constexpr const char* kContentBytesKey = "qbench_data_bytes";

/// Writes tensors (F32, F64, F16, BF16, I64, I32, I8, U8, BOOL; made contiguous, CPU) in name
/// order, header padded to 8 bytes, with the content hash and length in `__metadata__` (any
/// values `metadata` gives for those two keys are replaced). Written atomically
/// (common::atomic_write_file: temporary file in the same folder, fsync, rename, fsync of the
/// folder): a reader finds the old file or the whole new one. The write is the "checkpoint" of the
/// test-only fault hook (QBENCH_TEST_FAULT=checkpoint-mid-write / checkpoint-before-rename).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// A safetensors file read and checked in full.
struct SafetensorsFile {
  IntegrityCheck check;  ///< sha256 and bytes are those of the data section as read
  NamedTensors tensors;  ///< in the header's (name) order; empty when check.status is Corrupt
  std::map<std::string, std::string> metadata;
};

/// Reads and checks a file, never loading a damaged one: its structure first (an 8-byte header
/// length inside the file, a JSON object header, every entry's dtype, shape and data_offsets, each
/// span equal to dtype size x elements, the spans tiling the data section exactly with no gap,
/// overlap or trailing byte), then, when `__metadata__` holds kContentSha256Key and
/// kContentBytesKey, the data section's length and SHA-256 against them. Verified: both match;
/// Unhashed: sound, no qbench hash (a file written before hashes existed, or by another tool);
/// Corrupt: check.problem names the file and what is wrong. Throws qbench::DataError only when the
/// file cannot be opened.
SafetensorsFile read_safetensors(const std::string& path);

/// Reads every tensor (read_safetensors, Verified or Unhashed). Throws qbench::DataError naming the
/// file for a Corrupt one: a truncated file, a malformed header, offsets outside the data or not
/// matching dtype x shape, an unknown dtype, a content hash or length that does not match.
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
/// The same with tensors already read (e.g. by read_safetensors); `path` names them in errors.
ImportResult import_weights(quant::QuantModel& model, const NamedTensors& tensors, const std::string& path);

}  // namespace qbench::models
