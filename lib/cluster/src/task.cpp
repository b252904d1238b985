// One array task: checks its cell and the cell's baseline, runs `qbench run MATRIX --cell KEY --db
// <node-local shard>` as a child process, and publishes the shard. Signals (Slurm's SIGTERM at the
// time limit, on preemption or scancel) reach the child directly: the task only waits for it, and
// an interrupted child publishes nothing.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "internal.h"
#include "qbench/buildinfo.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::cluster {
namespace fs = std::filesystem;
using namespace detail;

namespace {

void note(const std::string& msg) {
  const std::time_t t = std::time(nullptr);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "[%s] task: %s\n", buf, msg.c_str());
  std::fflush(stderr);
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct TaskContext {
  const Plan& plan;
  const Submission& sub;
  const TaskOptions& opt;
  const PlanCell& cell;
  store::RunOrigin origin;
  std::string host;
  std::string shard_name;   ///< the published file's name
  std::string local_shard;  ///< where the run writes it first
  std::string describe() const {
    return origin.scheduler + " job " + origin.job_id +
           (origin.array_task_id.empty() ? "" : " (array " + origin.array_job_id + ", task " + origin.array_task_id + ")") +
           " on " + host;
  }
};

store::RunOrigin task_origin(const Plan& plan, const TaskOptions& o) {
  store::RunOrigin r;
  r.plan_id = plan.id;
  if (!env("SLURM_JOB_ID").empty()) {
    r.scheduler = "slurm";
    r.job_id = env("SLURM_JOB_ID");
    r.array_job_id = env("SLURM_ARRAY_JOB_ID");
    r.array_task_id = env("SLURM_ARRAY_TASK_ID");
  } else if (!env("QBENCH_LOCAL_JOB").empty()) {
    r.scheduler = "local";
    r.job_id = env("QBENCH_LOCAL_JOB");
    r.array_job_id = std::to_string(o.submission) + "-" + o.array;
    r.array_task_id = std::to_string(o.index);
  } else {
    r.scheduler = "manual";
    r.job_id = host_name() + ":" + std::to_string(::getpid());
    r.array_job_id = std::to_string(o.submission) + "-" + o.array;
    r.array_task_id = std::to_string(o.index);
  }
  return r;
}

std::string shard_name(const PlanCell& cell, const store::RunOrigin& origin, const Plan& plan) {
  std::string tag = origin.scheduler + "-";
  if (origin.scheduler == "slurm") {
    tag += origin.job_id;
    const std::string restarts = env("SLURM_RESTART_COUNT");
    if (!restarts.empty() && restarts != "0") tag += "-r" + restarts;
  } else {
    tag += origin.job_id + "-" + origin.array_job_id + "-" + origin.array_task_id;
  }
  for (char& c : tag)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  std::string name = cell.key + "." + tag + ".db";
  if (fs::exists(fs::path(plan.shards_dir()) / name))
    name = cell.key + "." + tag + "." + std::to_string(::getpid()) + ".db";
  return name;
}

/// The cell recorded as failed without running it (its baseline failed, or `qbench run` could not
/// record it), in a shard of its own.
int record_failure(const TaskContext& t, const std::string& error) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(t.local_shard + suffix, ec);
  {
    store::Store st(t.local_shard);
    store::RunInfo info;
    info.matrix_name = t.plan.name;
    info.matrix_file = t.plan.matrix_path();
    info.yaml_text = read_file(t.plan.matrix_path());
    info.yaml_hash = t.plan.yaml_hash;
    info.host = t.host;
    info.git_rev = QBENCH_GIT_REV;
    info.qbench_version = QBENCH_VERSION;
    info.threads = t.plan.threads;
    info.device = t.sub.device;
    info.command_line = "qbench task --workdir " + t.plan.workdir + " --submission " + std::to_string(t.opt.submission) +
                        " --array " + t.opt.array + " --index " + std::to_string(t.opt.index);
    info.environment_json = nlohmann::json{{"recorded_by", "qbench task"}, {"ran", false}}.dump();
    info.origin = t.origin;
    const int64_t run = st.begin_run(info);
    store::PlannedCell p;
    p.position = 0;
    p.cell_key = t.cell.key;
    p.action = "pending";
    p.config_json = t.cell.config_json;
    st.plan_cells(run, {p});
    store::CellResult r;
    r.run_id = run;
    r.cell_key = t.cell.key;
    r.baseline_key = t.cell.baseline_key;
    r.dataset = t.cell.dataset;
    r.arch = t.cell.arch;
    r.algorithm = t.cell.algorithm;
    r.profile = t.cell.profile;
    r.w_bits = t.cell.w_bits;
    r.a_bits = t.cell.a_bits;
    r.seed = t.cell.seed;
    r.kind = t.cell.kind;
    r.status = "failed";
    r.error = error;
    r.threads = t.plan.threads;
    r.device = t.sub.device;
    r.config_json = t.cell.config_json;
    r.started_at = r.finished_at = utc_now_iso();
    st.put_result(r);
    st.end_run(run, "failed");
  }
  const std::string published = publish_shard(t.local_shard, t.plan, t.shard_name, t.origin);
  note("recorded " + t.cell.short_key() + " (" + t.cell.label + ") as failed: " + error);
  note("published " + published);
  return 1;
}

/// The baseline's state for a quantized cell: "" when the cell can run, else the error to record.
std::string baseline_problem(const Plan& plan, const PlanCell& cell) {
  const std::string ckpt = plan.cache_dir + "/baselines/" + cell.baseline_key + ".safetensors";
  if (fs::exists(ckpt)) return "";  // `qbench run` verifies it when it loads it
  const PlanCell* base = plan.find(cell.baseline_key);
  const std::string what = "the FP32 baseline (" + cell.arch + ", seed " + std::to_string(cell.seed) + ")";
  const auto results = read_shards(plan, cell.baseline_key + ".", nullptr);
  const ShardResult* failed = nullptr;
  for (const auto& r : results) {
    if (r.cell_key != cell.baseline_key) continue;
    if (r.status == "ok") return "";
    failed = &r;  // the latest failure (oldest first)
  }
  if (failed)
    return what + " failed (" + failed->origin.scheduler + " job " + failed->origin.job_id + " on " + failed->host +
           "): " + failed->error;
  if (base && !base->checkpoint) return "";  // imported weights: nothing is cached, the cell loads them
  return what + " has no checkpoint (" + ckpt +
         ") and no result: its task did not finish (cancelled, timed out or lost with its node); "
         "`qbench submit --resume` runs it and this cell again";
}

/// A marker that this task is running (for `qbench status` of the local backend); removed at the end.
struct RunningMarker {
  std::string path;
  RunningMarker(const TaskContext& t) {
    path = path_in(t.plan.workdir, "running/" + t.cell.key + ".json");
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    try {
      write_file(path, nlohmann::json{{"host", t.host},
                                      {"pid", static_cast<int>(::getpid())},
                                      {"job", t.origin.scheduler + " " + t.origin.job_id},
                                      {"started", std::chrono::duration_cast<std::chrono::seconds>(now).count()}}
                           .dump());
    } catch (const Error& e) {
      note("cannot write the running marker: " + std::string(e.what()));
      path.clear();
    }
  }
  ~RunningMarker() {
    std::error_code ec;
    if (!path.empty()) fs::remove(path, ec);
  }
};

/// Copies the child's stderr to ours line by line and keeps its last error line.
std::string relay(int fd) {
  std::string last_error, line;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    (void)!::write(2, buf, static_cast<std::size_t>(n));
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] != '\n') {
        line += buf[i];
        continue;
      }
      if (line.rfind("qbench: ", 0) == 0) last_error = line;
      line.clear();
    }
  }
  if (line.rfind("qbench: ", 0) == 0) last_error = line;
  ::close(fd);
  return last_error;
}

}  // namespace

int run_task(const TaskOptions& o) {
  const Plan plan = load_plan(o.workdir);
  if (o.array != "baselines" && o.array != "cells")
    throw ConfigError("--array " + o.array + ": expected baselines or cells");
  std::optional<Submission> sub;
  for (auto& s : load_submissions(plan.workdir))
    if (s.number == o.submission) sub = s;
  if (!sub) throw ConfigError("--submission " + std::to_string(o.submission) + ": no such submission in " + plan.workdir);
  const auto keys = load_keys(plan.workdir, o.submission, o.array);
  if (o.index < 0 || o.index >= static_cast<int>(keys.size()))
    throw ConfigError("--index " + std::to_string(o.index) + ": the " + o.array + " array of submission " +
                      std::to_string(o.submission) + " has tasks 0.." + std::to_string(keys.size() - 1));
  const PlanCell* cell = plan.find(keys[o.index]);
  if (!cell) throw ConfigError(keys[o.index] + ": not a cell of the plan in " + plan.workdir);
  install_stop_handler();

  TaskContext t{plan, *sub, o, *cell, task_origin(plan, o), host_name(), "", ""};
  note(cell->short_key() + " (" + cell->label + "), " + t.describe());
  for (const auto& r : read_shards(plan, cell->key + ".", nullptr))
    if (r.cell_key == cell->key && r.status == "ok") {
      note("already done (" + r.file + "): nothing to run");
      return 0;
    }
  t.shard_name = shard_name(*cell, t.origin, plan);
  std::string local_dir = sub->local_dir;
  if (local_dir.empty()) local_dir = env("TMPDIR");
  if (local_dir.empty()) local_dir = "/tmp";
  fs::create_directories(local_dir);
  t.local_shard = (fs::path(local_dir) / ("qbench-shard-" + t.shard_name)).string();

  if (!cell->is_baseline()) {
    const std::string problem = baseline_problem(plan, *cell);
    if (!problem.empty()) return record_failure(t, problem);
  }

  std::vector<std::string> argv = {plan.qbench,  "run",        plan.matrix_path(),
                                   "--cell",     cell->key,    "--db",
                                   t.local_shard, "--cache-dir", plan.cache_dir,
                                   "--threads",  std::to_string(plan.threads), "--device",
                                   sub->device,  "--no-progress"};
  if (!plan.size.empty()) argv.insert(argv.end(), {"--size", plan.size});
  if (!plan.data_root.empty()) argv.insert(argv.end(), {"--data-root", plan.data_root});
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
  note("running " + cmd);
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(t.local_shard + suffix, ec);

  Exit exit;
  std::string last_error;
  {
    RunningMarker marker(t);
    SpawnOptions so;
    so.pipe_stderr = true;
    const Child child = spawn(argv, so);
    last_error = relay(child.err);
    exit = wait_child(child.pid);
  }
  auto drop_local = [&] {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(t.local_shard + suffix, ec);
  };
  if (exit.code == 130 || (exit.signal == SIGINT || exit.signal == SIGTERM)) {
    drop_local();
    note("interrupted (" + exit.describe() + "): nothing published; the cell's QAT epoch checkpoints stay in " +
         plan.cache_dir + "/cells/ for the next attempt");
    return 130;
  }
  if (exit.code == 0 || exit.code == 1) {
    bool recorded = false;
    try {
      for (const auto& r : store::Store::read_contents(t.local_shard).results) recorded |= r.cell_key == cell->key;
    } catch (const Error& e) {
      last_error = e.what();
    }
    if (recorded) {
      const std::string published = publish_shard(t.local_shard, plan, t.shard_name, t.origin);
      note("published " + published);
      return exit.code;
    }
  }
  drop_local();
  if (stop_signal()) {
    note("stopped by signal " + std::to_string(stop_signal()) + " (" + exit.describe() + "): nothing published");
    return 130;
  }
  return record_failure(t, "qbench run " + exit.describe() + " on " + t.host +
                               (last_error.empty() ? std::string() : ": " + last_error));
}

}  // namespace qbench::cluster
