#pragma once
// The SQLite results store: one file, WAL mode, schema version with migrations, one transaction
// per cell. Torch-free.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/common/detail.h"

struct sqlite3;

namespace qbench::store {

class StatementCache;  // store.cpp: prepared statements reused across calls

/// Provenance of one `qbench run` invocation.
struct RunInfo {
  int64_t id = 0;
  std::string matrix_name;
  std::string matrix_file;
  std::string yaml_text;
  std::string yaml_hash;
  std::string started_at;  ///< ISO-8601 UTC
  std::string ended_at;    ///< empty while running
  std::string status;      ///< running | finished | failed | interrupted
  std::string host;
  std::string git_rev;
  std::string qbench_version;
  std::string torch_version;
  int threads = 0;
  std::string command_line;
  std::string environment_json;  ///< library versions, CPU, device, qengine... (JSON object text)
  /// The compute device the run placed its models on: "cpu" or "cuda:N" (empty is stored as
  /// "cpu"; stores from before schema version 4 read "cpu", as every run then was).
  std::string device = "cpu";
};

/// One executed cell (a row of `results`). Optional metrics are NULL in SQLite.
struct CellResult {
  int64_t id = 0;
  int64_t run_id = 0;
  std::string cell_key;
  std::string baseline_key;
  std::string dataset;
  std::string arch;
  std::string algorithm;
  std::string profile;
  int w_bits = 32;
  int a_bits = 32;
  uint64_t seed = 0;
  std::string kind;    ///< fp32 | ptq | qat
  std::string status;  ///< ok | failed
  std::string error;   ///< message when failed
  std::optional<double> top1, top5, loss;  ///< percent, percent, mean cross-entropy
  std::optional<double> fp32_top1;         ///< top-1 of this cell's FP32 baseline
  std::optional<double> quant_wall_s;      ///< seconds spent training/calibrating/quantizing
  std::optional<double> eval_wall_s;       ///< seconds spent evaluating the test set
  std::optional<double> wall_s;            ///< whole cell
  std::optional<double> latency_ms_p50, latency_ms_p90;
  std::optional<int> latency_batch;
  std::string latency_source;  ///< measured-fp32 | measured-fakequant | measured-int8 | modeled | ""
  int64_t eval_images = 0;     ///< test images the metrics cover
  int threads = 0;
  std::string device = "cpu";  ///< where the cell's model ran ("cpu", "cuda:N"); not part of the key
  std::string config_json;  ///< the cell's resolved configuration (canonical JSON)
  std::string started_at, finished_at;
  /// The sim-to-deploy gap, where the cell's model also ran through an integer backend (NULL
  /// otherwise): deployed top-1 (percent), the share of test images whose predicted class is the
  /// same in simulation and deployment (percent), the mean cosine similarity of their logits, and
  /// the signal-to-quantization-noise ratio of the deployed logits against the simulated ones (dB).
  std::optional<double> deploy_top1, deploy_agreement, logit_cosine, sqnr_db;
  /// The engine the deploy_* columns come from: "libtorch-onednn", "libtorch-qnnpack",
  /// "onnxruntime" ("" when not deployed). Every engine a cell ran on has a `deploy_engines`
  /// detail row.
  std::string deploy_engine;
  /// Detail rows written with the result (table cell_details; not filled by the readers of
  /// results rows: use Store::details).
  CellDetails details;
};

/// A cell as a run planned it: either executed (result_id names its row) or skipped because an
/// earlier run finished it (result_id names that earlier row), or still pending (no result_id).
struct PlannedCell {
  int64_t run_id = 0;
  int position = 0;
  std::string cell_key;
  std::string action;  ///< run | skipped | pending
  std::optional<int64_t> result_id;
  /// The cell's resolved configuration (JSON object text); the report reads its top-level
  /// dataset, arch, algorithm, profile, kind, w_bits, a_bits, seed for cells without a result.
  std::string config_json;
};

/// A report row: the planned cell joined with its result (if any) and its run.
struct ReportRow {
  PlannedCell plan;
  std::optional<CellResult> result;
};

class Store {
 public:
  /// Opens (creating if needed) and migrates the store at `path` (":memory:" for tests).
  /// Creates parent directories. Throws StoreError.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int schema_version();  ///< the version this build writes
  int user_version() const;     ///< the version in the file (after migration == schema_version)
  const std::string& path() const { return path_; }

  int64_t begin_run(const RunInfo& info);  ///< returns the new run id
  void end_run(int64_t run_id, const std::string& status);
  std::optional<RunInfo> run(int64_t run_id) const;
  std::optional<int64_t> latest_run_id() const;
  std::vector<RunInfo> runs() const;

  /// Records the plan of a run (positions in order), all as `pending` or `skipped`.
  void plan_cells(int64_t run_id, const std::vector<PlannedCell>& cells);
  /// The latest `ok` result for a cell key across all runs, if any.
  std::optional<CellResult> finished_result(const std::string& cell_key) const;
  /// Inserts the result and marks the planned cell `run` with it, in one transaction.
  /// Replaces an earlier result of the same (run_id, cell_key). Returns the result id.
  int64_t put_result(const CellResult& r);
  /// The run's planned cells joined with their results, in plan order.
  std::vector<ReportRow> report_rows(int64_t run_id) const;
  /// The detail rows of one result, by section then position; `section` "" = every section.
  CellDetails details(int64_t result_id, const std::string& section = "") const;
  /// All results rows (every run), oldest first.
  std::vector<CellResult> all_results() const;

 private:
  void migrate();
  std::string path_;
  sqlite3* db_ = nullptr;
  mutable std::unique_ptr<StatementCache> cache_;
};

}  // namespace qbench::store
