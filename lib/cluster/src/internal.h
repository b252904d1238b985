#pragma once
// What the cluster component's files share: the work directory's layout, submissions, shards,
// child processes and the Slurm client commands. Not part of the interface.
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qbench/cluster/cluster.h"

namespace qbench::cluster::detail {

// ---- the work directory ------------------------------------------------------------------------
//   plan.json, matrix.yaml          the plan and the matrix the tasks run
//   cache/                          baseline checkpoints and QAT epoch checkpoints (shared)
//   shards/<key>.<scheduler>-<job>.db   one finished task's store, published atomically
//   submissions/<NNN>/              baselines.keys, cells.keys, baselines.sbatch, cells.sbatch,
//                                   submission.json
//   logs/                           the tasks' output (Slurm --output)
//   running/<key>.json              a task in progress (host, pid, job, start), removed at its end
std::string path_in(const std::string& workdir, const std::string& rel);
std::string submission_dir(const std::string& workdir, int number);
/// Shell-quotes one word ('...' with embedded quotes escaped).
std::string shell_quote(const std::string& s);
/// Writes `text` atomically (temporary file, fsync, rename, fsync of the folder).
void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);  ///< throws Error naming the file

// ---- submissions -------------------------------------------------------------------------------
struct ArrayRecord {
  int count = 0;
  std::string job_id;   ///< Slurm: the array's job id once submitted
  std::string command;  ///< the sbatch command line used
};
struct Submission {
  int number = 0;
  std::string backend;  ///< local | slurm
  std::string created_at;
  std::string partition, time;
  int array_parallelism = 0, gpus_per_task = 0, jobs = 1;
  std::vector<std::string> sbatch_args;
  bool requeue = false;
  std::string local_dir;
  std::string device = "cpu";  ///< passed to the cells: cuda when gpus_per_task > 0
  std::map<std::string, ArrayRecord> arrays;  ///< "baselines", "cells"
  std::string driver_host;  ///< local: the process running the tasks
  int driver_pid = 0;
  nlohmann::json to_json() const;
  static Submission from_json(const nlohmann::json& j);
};
std::vector<Submission> load_submissions(const std::string& workdir);
void save_submission(const std::string& workdir, const Submission& s);
/// The keys of one array of a submission (line i = array task i).
std::vector<std::string> load_keys(const std::string& workdir, int submission, const std::string& array);

/// The sbatch script of one array (kept in the submission's folder, readable, re-submittable).
std::string sbatch_script(const Plan& plan, const Submission& s, const std::string& array, int count);
/// The arguments after `sbatch` for one array (--parsable, the dependency, the script).
std::vector<std::string> sbatch_command(const Plan& plan, const Submission& s, const std::string& array,
                                        const std::vector<std::string>& after_jobs);

// ---- shards ------------------------------------------------------------------------------------
struct ShardResult {
  std::string file;  ///< path of the shard
  std::string cell_key, status, error, finished_at, host;
  std::optional<double> top1, top5, loss;
  store::RunOrigin origin;
};
/// Every result in the published shards whose file name starts with `key_prefix` ("" = all),
/// oldest first by finish time; shards that cannot be read go to `unreadable` ("<file>: why").
std::vector<ShardResult> read_shards(const Plan& plan, const std::string& key_prefix,
                                     std::vector<std::string>* unreadable);
/// Every published shard file (hidden temporaries left out), sorted by name.
std::vector<std::string> shard_files(const Plan& plan);
/// Stamps the shard's runs with `origin`, copies it into <shards>/<name> under a temporary name,
/// fsyncs it, renames it into place and fsyncs the folder; then removes the local file. Returns
/// the published path.
std::string publish_shard(const std::string& local, const Plan& plan, const std::string& name,
                          const store::RunOrigin& origin);

// ---- processes ---------------------------------------------------------------------------------
struct Exit {
  int code = -1;   ///< exit status, or -1 when killed by a signal
  int signal = 0;  ///< the signal that ended it
  std::string describe() const;  ///< "exit code 2", "killed by signal 9 (SIGKILL)"
};
struct SpawnOptions {
  bool new_process_group = false;
  std::vector<std::string> env;  ///< NAME=VALUE set for the child (the rest is inherited)
  bool pipe_stdout = false, pipe_stderr = false;
};
struct Child {
  pid_t pid = -1;
  int out = -1, err = -1;  ///< read ends when piped
};
Child spawn(const std::vector<std::string>& argv, const SpawnOptions& o);
/// Waits for the child, through interrupted system calls.
Exit wait_child(pid_t pid);
struct Captured {
  Exit exit;
  std::string out, err;
};
/// Runs a command to completion with stdout and stderr captured.
Captured run_capture(const std::vector<std::string>& argv);
std::optional<std::string> find_on_path(const std::string& name);
std::string self_exe();
bool process_alive(int pid);

/// SIGINT/SIGTERM recorded (not acted on) while a task or the local driver waits for children;
/// system calls are interrupted (no SA_RESTART) so waits can look at it.
void install_stop_handler();
int stop_signal();  ///< 0 when none arrived

// ---- Slurm -------------------------------------------------------------------------------------
struct QueueEntry {
  std::string array_job_id, task_id;  ///< %F, %K
  std::string state;                  ///< %T: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, ...
  std::string nodes, elapsed, reason;
  bool active() const;  ///< still pending, running or finishing (not ended)
};
/// Parses `squeue -h -r -t all -o '%F|%K|%T|%N|%M|%r'` output.
std::vector<QueueEntry> parse_squeue(const std::string& text);
/// The queue's entries for these array job ids (empty when squeue is not there or knows none);
/// `note` gets squeue's error when it fails otherwise.
std::vector<QueueEntry> query_queue(const std::vector<std::string>& job_ids, std::string* note);

/// One task of the plan's Slurm submissions as the queue shows it.
struct QueuedTask {
  std::string key;    ///< the cell it runs
  std::string array;  ///< baselines | cells
  int submission = 0;
  std::string job;    ///< "12_3"
  QueueEntry entry;
};
/// Every task squeue still knows of, over all Slurm submissions of the plan, oldest submission first.
std::vector<QueuedTask> queued_tasks(const Plan& plan, const std::vector<Submission>& subs, std::string* note);

}  // namespace qbench::cluster::detail
