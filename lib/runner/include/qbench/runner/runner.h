#pragma once
// Runs the cells of a matrix through the aligned pipeline and records them in the store.
#include <cstdint>
#include <string>
#include <vector>

#include "qbench/config/matrix.h"

namespace qbench::runner {

struct RunOptions {
  std::string db_path = "results/qbench.db";
  std::string cache_dir = "results/cache";  ///< FP32 baseline checkpoints, keyed by baseline key
  std::string data_root;                    ///< overrides dataset.root when non-empty
  bool force = false;                       ///< rerun cells already finished in the store
  int threads = 0;                          ///< 0: the matrix's pipeline.threads
  /// Where models run: "cpu" (the default), "cuda", "cuda:N" or "auto" (runner::select_device).
  /// Not part of any cell key: a cell gives its row on any device.
  std::string device = "cpu";
  std::vector<std::string> cells;           ///< run only cells whose key starts with one of these
  std::string command_line;
};

struct RunSummary {
  int64_t run_id = 0;
  int planned = 0, ran = 0, skipped = 0, failed = 0;
  bool interrupted = false;
};

/// Selects the cells to plan: all of them, or those whose key starts with one of `prefixes` (a
/// quantized cell run alone loads or trains its baseline and evaluates it when the store has no
/// row for it).
/// Throws ConfigError when a prefix matches nothing.
std::vector<config::Cell> select_cells(const std::vector<config::Cell>& all, const std::vector<std::string>& prefixes);

/// Runs the plan. Failed cells are recorded and the run goes on; an interrupt stops between
/// batches, records the run as interrupted and returns with `interrupted` set. opt.device is
/// resolved first (select_device): a device that is not there throws ConfigError before the
/// store is opened.
RunSummary run_matrix(const config::Matrix& m, const std::vector<config::Cell>& cells, const RunOptions& opt);

/// JSON text describing the software and hardware (LibTorch, SQLite, compiler, CPU, threads, the
/// device: "cpu" or "cuda:N", the CUDA device count, and on CUDA the GPU's name when known and the
/// cuDNN/TF32 settings).
std::string environment_json(int threads, const std::string& device = "cpu");

}  // namespace qbench::runner
