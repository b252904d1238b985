#pragma once
// Scale-out, torch-free: a matrix planned into a work directory and run as two job arrays (the
// FP32 baselines, then the quantized cells) on Slurm or as local processes; every array task runs
// one cell with `qbench run MATRIX --cell KEY --db <node-local shard>` and publishes the shard
// into <workdir>/shards/ atomically; `merge` folds the shards into one store with a merged run
// for the whole matrix. See lib/cluster/README.md and the README's "Running on a cluster".
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qbench/config/matrix.h"
#include "qbench/store/store.h"

namespace qbench::cluster {

/// One cell of the plan, with everything a task needs without re-reading the matrix.
struct PlanCell {
  int position = 0;  ///< in the matrix's expansion (the order `qbench run` runs them)
  std::string key;
  std::string baseline_key;  ///< == key for a baseline
  std::string kind;          ///< fp32 | ptq | qat
  std::string dataset, arch, algorithm, profile;
  int w_bits = 32, a_bits = 32;
  uint64_t seed = 0;
  std::string label;        ///< "resnet8-w0.5 minmax w4a4 academic seed0", as `qbench run` logs it
  std::string config_json;  ///< the resolved configuration (what the key hashes)
  /// Baselines: true when the baseline is trained and cached as <cache>/baselines/<key>.safetensors;
  /// false for imported weights (nothing is cached, each cell loads the file).
  bool checkpoint = true;
  bool is_baseline() const { return key == baseline_key; }  ///< an FP32 cell under a noise is not
  std::string short_key() const { return key.substr(0, 12); }
};

/// <workdir>/plan.json: written once by the first `qbench submit`, read by every later command.
struct Plan {
  std::string id;             ///< random (32 hex digits): runs of this plan carry it (RunOrigin::plan_id)
  std::string workdir;        ///< absolute
  std::string name;           ///< the matrix's name
  std::string matrix_source;  ///< the file submitted (the tasks run the copy, matrix_path())
  std::string yaml_hash;      ///< sha256 of the copy's text
  std::string size;           ///< `--size` applied, "" = none
  std::string data_root;      ///< passed to every task as --data-root ("" = the dataset's own location)
  std::string cache_dir;      ///< absolute; <workdir>/cache unless --cache-dir
  int threads = 1;            ///< intra-op threads per task = CPUs per task
  std::string qbench;         ///< absolute path of the qbench binary the tasks run
  std::string created_at;
  std::vector<PlanCell> cells;  ///< in plan order

  std::string matrix_path() const;  ///< <workdir>/matrix.yaml
  std::string shards_dir() const;   ///< <workdir>/shards
  const PlanCell* find(const std::string& key) const;
  int baselines() const;  ///< how many cells are baselines
};

struct PlanOptions {
  std::string size;
  std::string data_root;  ///< --data-root given at submit; else the matrix's dataset.root made absolute
  std::string cache_dir;  ///< "" = <workdir>/cache
  int threads = 0;        ///< 0 = the matrix's pipeline.threads
};

/// Creates `workdir` (or uses an empty one) and writes the matrix's copy and plan.json. The copy is
/// parsed again with `catalog` and must expand to the same keys in the same order, so a matrix
/// whose relative paths only resolve beside the original is refused (ConfigError, exit 2) and
/// nothing is left behind. A work directory that already holds a plan is a ConfigError too (use
/// --resume).
Plan create_plan(const std::string& workdir, const config::Matrix& m, const std::vector<config::Cell>& cells,
                 const config::Catalog& catalog, const PlanOptions& o);
/// Reads <workdir>/plan.json; ConfigError naming the file when it is missing or malformed.
Plan load_plan(const std::string& workdir);

/// What `qbench submit` was asked for; an option left unset on --resume takes the value the last
/// submission used.
struct SubmitOptions {
  std::optional<std::string> backend;  ///< local (default) | slurm
  std::optional<std::string> partition, time;
  std::optional<int> array_parallelism;  ///< Slurm --array=...%N
  std::optional<int> gpus_per_task;      ///< --gres=gpu:N and --device cuda for the cells
  std::optional<std::vector<std::string>> sbatch_args;  ///< each one an `#SBATCH` line
  std::optional<bool> requeue;           ///< sbatch --requeue
  std::optional<int> jobs;               ///< local: tasks at once (default: cores / threads, at least 1)
  std::optional<std::string> local_dir;  ///< where a task writes its shard until it is finished ($TMPDIR or /tmp)
};

/// Checks the options before anything is written: names and combinations, and for slurm with
/// `threads` > 0, sbatch on PATH and `sbatch --test-only` with the partition, time, GPUs, CPUs
/// per task and extra options (nothing is queued). ConfigError naming the option.
void check_submit_options(const SubmitOptions& o, int threads);

struct SubmitResult {
  int number = 0;     ///< the submission (<workdir>/submissions/<NNN>/)
  std::string dir;    ///< that folder
  std::string backend;
  int baselines = 0, cells = 0;       ///< tasks submitted in each array
  int done = 0, active = 0;           ///< cells skipped: with an ok result / still queued or running
  std::string baseline_job, cell_job; ///< Slurm job ids of the two arrays ("" when not submitted)
  int exit_code = 0;  ///< local: 0 every task ok, 1 some cell failed, 130 interrupted; slurm: 0
  std::vector<std::string> lines;  ///< what `qbench submit` prints on stdout
};

/// Submits the plan's cells that need work: all of them the first time; with `resume`, those
/// without an ok result that are not queued or running. Writes <workdir>/submissions/<NNN>/ (the
/// key lists, the sbatch scripts, submission.json) and submits the baseline array, then the cell
/// array with --dependency=afterany on it (slurm), or runs both arrays with `jobs` processes in
/// the foreground (local).
SubmitResult submit(const Plan& plan, const SubmitOptions& o, bool resume);

/// One array task (`qbench task`, run by the generated sbatch scripts and by the local backend).
struct TaskOptions {
  std::string workdir;
  int submission = 0;
  std::string array;  ///< baselines | cells
  int index = 0;      ///< the array task id: line index+1 of the submission's key list
};
/// Runs the task's cell into a node-local shard and publishes it; returns the exit code (0 the
/// cell is ok or was already done, 1 it failed and that is recorded, 130 interrupted: nothing
/// published).
int run_task(const TaskOptions& o);

/// The plan's cells as the shards and the scheduler see them.
struct CellState {
  const PlanCell* cell = nullptr;
  std::string state;  ///< done | failed | running | pending | missing
  std::optional<double> top1;
  std::string error;    ///< failed: the recorded error; missing: what is known of the last task
  std::string job;      ///< the task: "slurm 12_3", "local 2-cells_0"
  std::string node;     ///< where it ran / runs
  std::string elapsed;  ///< running: as squeue prints it; local: from the task's marker
  std::string reason;   ///< pending: the scheduler's reason (Dependency, Resources, ...)
  int attempts = 0;     ///< shards recorded for the cell
};
struct Status {
  std::vector<CellState> cells;  ///< in plan order
  int done = 0, failed = 0, running = 0, pending = 0, missing = 0;
  int submissions = 0;
  std::vector<std::string> notes;  ///< unreadable shards, squeue errors, stale temporaries
};
Status collect_status(const Plan& plan);
std::string render_status(const Plan& plan, const Status& s);

/// Two ok results of one cell whose metrics differ.
struct Conflict {
  std::string cell_key, label;
  int64_t chosen = 0;  ///< the result the merged run points at (the earliest)
  std::vector<std::string> results;  ///< "result 12: top-1 81.20 (slurm job 14 on node3, 2026-...)"
};
struct MergeReport {
  int shards = 0;        ///< shard files read
  int shards_new = 0;    ///< that added something
  store::MergeStats totals;
  std::vector<std::string> unreadable;  ///< "<shard>: <why>" (skipped; the rest is merged)
  int64_t merged_run = 0;
  bool merged_run_new = false;  ///< false: a run with exactly this state was already there
  int ok = 0, failed = 0, pending = 0;
  int duplicates = 0;  ///< cells with more than one ok result that agree
  std::vector<Conflict> conflicts;
};
/// Folds every shard of the plan into `target` (each in one transaction, idempotent), then
/// records the merged run: one plan row per cell, pointing at its earliest ok result, else its
/// latest failed one, else pending; the conflicts go to the merged run's environment_json
/// ("merge.conflicts") as well as to the report returned. A merged run with exactly the same
/// pointers is not recorded twice.
MergeReport merge_workdir(store::Store& target, const Plan& plan, const std::string& command_line);
std::string render_merge(const Plan& plan, const MergeReport& r);

/// What `qbench merge` was given: a work directory (its plan) or a store file.
struct MergeSource {
  std::string path;
  std::optional<Plan> plan;  ///< set for a work directory
};
/// Checks every source before anything is opened or written: it exists, is not the target, a
/// directory holds a plan, a file starts like an SQLite database. ConfigError naming the source.
std::vector<MergeSource> check_merge_sources(const std::vector<std::string>& sources, const std::string& into);

}  // namespace qbench::cluster
