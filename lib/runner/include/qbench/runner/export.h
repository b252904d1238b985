#pragma once
// `qbench export`: a finished cell of a store as a deployable file, from its key alone. A quantized
// cell is rebuilt from its saved state (<cache>/cells/<key>/state.safetensors: weights, BN fold,
// quantizers, input shape, architecture); a baseline cell from its cached checkpoint.
#include <string>
#include <vector>

namespace qbench::runner {

struct ExportCellOptions {
  std::string db_path = "results/qbench.db";
  std::string cache_dir = "results/cache";
  std::string cell;             ///< a key prefix
  std::string out;              ///< the .onnx file to write
  std::string format = "qdq";   ///< qdq | fp32 | tensorrt
  std::string input;            ///< C,H,W for a baseline checkpoint that does not record it
};

struct ExportCellSummary {
  std::string cell_key, label, path, format;
  int nodes = 0, quantizers = 0;
  std::vector<std::string> notes;
  std::string ranges_path;  ///< tensorrt: the dynamic-range JSON
};

/// Throws ConfigError (exit 2) with one line for: a missing store, a prefix matching no cell or
/// several, a cell that did not finish ok, a quantized cell without a saved state (run before
/// states were saved: re-run it), a baseline cell asked for a quantized format, and whatever the
/// format cannot express (exporter::ExportError: the layer and the reason).
ExportCellSummary export_cell(const ExportCellOptions& options);

}  // namespace qbench::runner
