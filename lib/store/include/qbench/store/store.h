#pragma once
// The SQLite results store: one file, WAL mode, schema version with migrations, one transaction
// per cell. Torch-free.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/common/detail.h"
#include "qbench/common/errors.h"

struct sqlite3;

namespace qbench::store {

class StatementCache;  // store.cpp: prepared statements reused across calls

/// Where a run was executed (schema version 6): the scheduler and job of a cluster task, and the
/// cluster plan (`qbench submit`'s work directory) it belongs to. Empty for a plain `qbench run`.
struct RunOrigin {
  std::string scheduler;      ///< "slurm", "local" (qbench submit --backend local), "merge", or ""
  std::string job_id;         ///< the scheduler's job id (Slurm: SLURM_JOB_ID)
  std::string array_job_id;   ///< Slurm: SLURM_ARRAY_JOB_ID (the array's id); local: the submission
  std::string array_task_id;  ///< Slurm: SLURM_ARRAY_TASK_ID; local: the task's index
  std::string plan_id;        ///< the cluster plan's id ("" outside a plan)
};

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
  /// Random and unique (32 hex digits), drawn by the store when the run is recorded (empty here:
  /// draw one) and kept when the run is merged into another store: a merge adds each uid once.
  std::string uid;
  RunOrigin origin;
  /// The store file this run was merged from (`Store::merge_from`; "" when recorded here). A run
  /// merged on from a merged store keeps the file it first came from.
  std::string merged_from;
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

/// What Store::merge_from added and what it found already present.
struct MergeStats {
  int runs_added = 0, runs_present = 0;
  int results_added = 0, results_present = 0;
  int plan_rows_added = 0, plan_rows_updated = 0;
  int details_added = 0;
};

/// Store::merge_from's error for a source it cannot read (missing, not a store, newer schema,
/// corrupt): a problem of that one source, where any other StoreError is the target's.
class SourceStoreError : public StoreError {
 public:
  using StoreError::StoreError;
};

/// Everything a store file holds, read in one consistent snapshot (Store::read_contents).
struct StoreContents {
  int user_version = 0;  ///< the file's schema version as found (before any migration)
  std::vector<RunInfo> runs;
  std::vector<CellResult> results;  ///< with their detail rows
  std::vector<PlannedCell> plan;    ///< every run's plan rows, by run and position
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
  /// Reads a whole store file without changing it when it has this build's schema version (a
  /// read-only connection: no WAL switch, nothing written beside it); an older file is first
  /// opened with this class, which migrates it. Throws StoreError when the file is missing, not a
  /// qbench store or written by a newer qbench.
  static StoreContents read_contents(const std::string& path);
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

  /// The run with this uid, if the store holds it.
  std::optional<RunInfo> run_by_uid(const std::string& uid) const;
  /// Sets where a run was executed (its scheduler, job ids and plan), e.g. by the cluster task
  /// that ran `qbench run` as a child process. Throws StoreError when there is no such run.
  void set_run_origin(int64_t run_id, const RunOrigin& origin);
  /// Records a whole run at once, as `info` says (status, started/ended, uid, origin), with its
  /// plan rows (their run_id is ignored), in one transaction. Returns the new run id.
  int64_t record_run(const RunInfo& info, const std::vector<PlannedCell>& cells);
  /// The plan rows of one run, in order.
  std::vector<PlannedCell> plan(int64_t run_id) const;
  /// Every result of the runs that belong to cluster plan `plan_id` (RunOrigin::plan_id), oldest
  /// first.
  std::vector<CellResult> plan_results(const std::string& plan_id) const;

  /// Folds the store at `source_path` into this one, in one transaction (all of it or nothing):
  /// the source is read with read_contents (an older schema is migrated first). Every source run
  /// whose uid this store does not hold is added with its results, their detail rows and its plan
  /// (ids renumbered, `merged_from` set to `source_path` unless the run already came from
  /// elsewhere); of a run already held, only the results and plan rows it lacks are added (a
  /// pending plan row takes the source's result). Merging the same source twice adds nothing.
  /// Throws SourceStoreError (nothing written) when the source cannot be read, StoreError when it
  /// is this store's file or this store cannot be written.
  MergeStats merge_from(const std::string& source_path);
  /// Writes a compact, self-contained copy of this store to `dest` (SQLite's VACUUM INTO: one
  /// file in rollback-journal mode, no WAL beside it). `dest` must not exist. The copy is not
  /// fsynced: the caller that publishes it does that.
  void copy_to(const std::string& dest) const;

 private:
  void migrate();
  int64_t insert_run(const RunInfo& info, bool as_given);  // no transaction of its own
  int64_t write_result(const CellResult& r);              // result row + details, no transaction
  void insert_plan_row(const PlannedCell& c);
  std::string path_;
  sqlite3* db_ = nullptr;
  mutable std::unique_ptr<StatementCache> cache_;
};

}  // namespace qbench::store
