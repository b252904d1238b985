// qbench submit: which cells need work, the submission folder, and the two backends (Slurm job
// arrays with an afterany dependency; local processes, baselines first).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"

namespace qbench::cluster {
namespace fs = std::filesystem;
using namespace detail;

namespace {

void say(const std::string& msg) {
  std::fprintf(stderr, "[submit] %s\n", msg.c_str());
  std::fflush(stderr);
}

int default_jobs(int threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, threads));
}

/// The submission's settings: what was given, else the last submission's (same backend), else defaults.
Submission resolve(const Plan& plan, const SubmitOptions& o, const std::optional<Submission>& prev) {
  Submission s;
  s.backend = o.backend.value_or(prev ? prev->backend : "local");
  const bool same = prev && prev->backend == s.backend;
  s.partition = o.partition.value_or(same ? prev->partition : "");
  s.time = o.time.value_or(same ? prev->time : "");
  s.array_parallelism = o.array_parallelism.value_or(same ? prev->array_parallelism : 0);
  s.gpus_per_task = o.gpus_per_task.value_or(same ? prev->gpus_per_task : 0);
  s.sbatch_args = o.sbatch_args.value_or(same ? prev->sbatch_args : std::vector<std::string>{});
  s.requeue = o.requeue.value_or(same ? prev->requeue : false);
  s.jobs = o.jobs.value_or(same ? prev->jobs : default_jobs(plan.threads));
  s.local_dir = o.local_dir.value_or(same ? prev->local_dir : "");
  s.device = s.gpus_per_task > 0 ? "cuda" : "cpu";
  s.created_at = utc_now_iso();
  return s;
}

std::string parse_job_id(const std::string& out) {
  std::string id = out.substr(0, out.find_first_of(";\n"));
  while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
  if (id.empty() || !std::all_of(id.begin(), id.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    throw Error("sbatch --parsable printed '" + out + "', not a job id");
  return id;
}

std::string command_text(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

std::string slurm_submit(const Plan& plan, Submission& s, const std::string& array,
                         const std::vector<std::string>& after) {
  const auto argv = sbatch_command(plan, s, array, after);
  s.arrays[array].command = command_text(argv);
  const auto c = run_capture(argv);
  if (c.exit.code != 0)
    throw Error("sbatch refused the " + array + " array (" + c.exit.describe() + "): " +
                c.err.substr(0, c.err.find('\n')) + " [" + s.arrays[array].command + "]");
  s.arrays[array].job_id = parse_job_id(c.out);
  save_submission(plan.workdir, s);
  return s.arrays[array].job_id;
}

/// The scheduler checks partition, time, GPUs and extra options before anything is written or
/// queued: `sbatch --test-only` queues nothing. ConfigError (exit 2) with sbatch's reason.
void check_slurm(const Submission& s, int threads) {
  if (!find_on_path("sbatch"))
    throw ConfigError("--backend slurm: sbatch is not on PATH (no Slurm client here); use --backend local");
  std::vector<std::string> argv = {"sbatch", "--test-only", "--ntasks=1", "--cpus-per-task=" + std::to_string(threads)};
  if (!s.partition.empty()) argv.push_back("--partition=" + s.partition);
  if (!s.time.empty()) argv.push_back("--time=" + s.time);
  if (s.gpus_per_task > 0) argv.push_back("--gres=gpu:" + std::to_string(s.gpus_per_task));
  for (const auto& a : s.sbatch_args) argv.push_back(a);
  argv.push_back("--wrap=true");
  const auto c = run_capture(argv);
  if (c.exit.code != 0)
    throw ConfigError("--backend slurm: sbatch refuses these options (" + command_text(argv) +
                      "): " + c.err.substr(0, c.err.find('\n')));
}

/// Runs the submission's arrays with s.jobs processes at a time, baselines first; each task in its
/// own process group, so that a Ctrl-C reaches it once, through this driver.
int run_local(const Plan& plan, Submission& s, SubmitResult& res) {
  s.driver_host = host_name();
  s.driver_pid = static_cast<int>(::getpid());
  save_submission(plan.workdir, s);
  install_stop_handler();
  const std::string job = s.driver_host + "-" + std::to_string(s.driver_pid);
  int ok = 0, failed = 0;
  bool forwarded = false;
  for (const std::string array : {"baselines", "cells"}) {
    const int n = s.arrays.count(array) ? s.arrays[array].count : 0;
    if (n == 0) continue;
    const auto keys = load_keys(plan.workdir, s.number, array);
    say(array + ": " + std::to_string(n) + " tasks, " + std::to_string(s.jobs) + " at a time");
    std::map<pid_t, int> running;
    int next = 0;
    while ((next < n && !stop_signal()) || !running.empty()) {
      while (!stop_signal() && static_cast<int>(running.size()) < s.jobs && next < n) {
        SpawnOptions so;
        so.new_process_group = true;
        so.env = {"QBENCH_LOCAL_JOB=" + job};
        const Child c = spawn({plan.qbench, "task", "--workdir", plan.workdir, "--submission", std::to_string(s.number),
                               "--array", array, "--index", std::to_string(next)},
                              so);
        running[c.pid] = next++;
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) {
        if (errno != EINTR) throw Error(std::string("waitpid: ") + std::strerror(errno));
        if (stop_signal() && !forwarded) {
          say("stopping: signal " + std::to_string(stop_signal()) + " passed to " + std::to_string(running.size()) +
              " running task(s); no new task starts");
          for (const auto& [p, i] : running) ::kill(-p, stop_signal());
          forwarded = true;
        }
        continue;
      }
      auto it = running.find(pid);
      if (it == running.end()) continue;
      const int index = it->second;
      running.erase(it);
      const PlanCell* cell = plan.find(keys[index]);
      const std::string label = cell ? cell->label : keys[index];
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code == 0) ++ok;
      else if (code == 1) ++failed;
      say(array + " task " + std::to_string(index) + " (" + label + "): " +
          (code == 0 ? "ok" : code == 1 ? "failed" : code == 130 ? "interrupted" : "exit " + std::to_string(code)));
    }
    if (stop_signal()) break;
  }
  res.lines.push_back("local submission " + std::to_string(s.number) + ": " + std::to_string(ok) + " task(s) ok, " +
                      std::to_string(failed) + " failed" + (stop_signal() ? ", INTERRUPTED" : ""));
  if (stop_signal()) return 130;
  return failed ? 1 : 0;
}

}  // namespace

void check_submit_options(const SubmitOptions& o, int threads) {
  const std::string backend = o.backend.value_or("local");
  if (backend != "local" && backend != "slurm")
    throw ConfigError("--backend " + backend + ": expected local or slurm");
  if (backend == "local") {
    if (o.partition) throw ConfigError("--partition: a Slurm option; add --backend slurm");
    if (o.time) throw ConfigError("--time: a Slurm option; add --backend slurm");
    if (o.array_parallelism) throw ConfigError("--array-parallelism: a Slurm option; add --backend slurm");
    if (o.gpus_per_task) throw ConfigError("--gpus-per-task: a Slurm option; add --backend slurm");
    if (o.sbatch_args) throw ConfigError("--sbatch-arg: a Slurm option; add --backend slurm");
    if (o.requeue) throw ConfigError("--requeue: a Slurm option; add --backend slurm");
  } else if (o.jobs) {
    throw ConfigError("--jobs: for --backend local (Slurm runs --array-parallelism tasks at once)");
  }
  if (o.sbatch_args)
    for (const auto& a : *o.sbatch_args)
      if (a.find('\n') != std::string::npos || a.empty() || a[0] != '-')
        throw ConfigError("--sbatch-arg '" + a + "': expected one sbatch option such as --mem=8G");
  if (backend == "slurm" && threads > 0) {
    Plan p;
    p.threads = threads;
    check_slurm(resolve(p, o, std::nullopt), threads);
  }
}

SubmitResult submit(const Plan& plan, const SubmitOptions& o, bool resume) {
  // One submit at a time per work directory: two resumes must not queue the same cells twice.
  auto lock = FileLock::try_acquire(path_in(plan.workdir, "submit.lock"));
  if (!lock) throw ConfigError("--workdir " + plan.workdir + ": another `qbench submit` is working on it");
  const auto subs = load_submissions(plan.workdir);
  std::optional<Submission> prev;
  if (!subs.empty()) prev = subs.back();
  if (!resume && prev)
    throw ConfigError("--workdir " + plan.workdir + ": already submitted (submission " + std::to_string(prev->number) +
                      "); add --resume to submit what is left");
  Submission s = resolve(plan, o, prev);
  {
    SubmitOptions given = o;
    given.backend = s.backend;
    check_submit_options(given, 0);
  }
  if (s.backend == "slurm") check_slurm(s, plan.threads);
  s.number = prev ? prev->number + 1 : 1;

  SubmitResult res;
  res.number = s.number;
  res.backend = s.backend;
  res.dir = submission_dir(plan.workdir, s.number);

  // What is done, what is still queued or running.
  std::vector<std::string> unreadable;
  std::set<std::string> ok;
  for (const auto& r : read_shards(plan, "", &unreadable))
    if (r.status == "ok") ok.insert(r.cell_key);
  for (const auto& u : unreadable) say("warning: unreadable shard " + u);
  std::set<std::string> active;
  std::set<std::string> active_baseline_jobs;
  std::string note;
  for (const auto& t : queued_tasks(plan, subs, &note)) {
    if (!t.entry.active()) continue;
    active.insert(t.key);
    if (t.array == "baselines") active_baseline_jobs.insert(t.entry.array_job_id);
  }
  if (!note.empty()) say("warning: " + note);
  for (const auto& p : subs)
    if (p.backend == "local" && p.driver_pid && p.driver_host == host_name() && process_alive(p.driver_pid))
      throw ConfigError("--workdir " + plan.workdir + ": local submission " + std::to_string(p.number) +
                        " is still running (pid " + std::to_string(p.driver_pid) + ")");
  std::vector<std::string> baselines, cells;
  for (const auto& c : plan.cells) {
    if (ok.count(c.key)) {
      ++res.done;
      continue;
    }
    if (active.count(c.key)) {
      ++res.active;
      continue;
    }
    (c.is_baseline() ? baselines : cells).push_back(c.key);
  }
  res.baselines = static_cast<int>(baselines.size());
  res.cells = static_cast<int>(cells.size());
  if (baselines.empty() && cells.empty()) {
    res.lines.push_back("nothing to submit: " + std::to_string(res.done) + " cell(s) done, " +
                        std::to_string(res.active) + " queued or running");
    return res;
  }

  // The submission's folder: key lists, scripts, the record (saved again as jobs are queued).
  fs::create_directories(res.dir);
  fs::create_directories(path_in(plan.workdir, "logs"));
  for (const auto& [array, keys] : {std::pair<std::string, const std::vector<std::string>&>{"baselines", baselines},
                                    std::pair<std::string, const std::vector<std::string>&>{"cells", cells}}) {
    if (keys.empty()) continue;
    s.arrays[array].count = static_cast<int>(keys.size());
    write_file(res.dir + "/" + array + ".keys", join(keys, "\n") + "\n");
    if (s.backend == "slurm")
      write_file(res.dir + "/" + array + ".sbatch", sbatch_script(plan, s, array, static_cast<int>(keys.size())));
  }
  save_submission(plan.workdir, s);

  if (s.backend == "slurm") {
    std::vector<std::string> after(active_baseline_jobs.begin(), active_baseline_jobs.end());
    if (!baselines.empty()) {
      res.baseline_job = slurm_submit(plan, s, "baselines", {});
      after.push_back(res.baseline_job);
    }
    if (!cells.empty()) res.cell_job = slurm_submit(plan, s, "cells", after);
    res.lines.push_back("submission " + std::to_string(s.number) + " (slurm): " + std::to_string(res.baselines) +
                        " baseline task(s)" + (res.baseline_job.empty() ? "" : " as job " + res.baseline_job) + ", " +
                        std::to_string(res.cells) + " cell task(s)" +
                        (res.cell_job.empty() ? "" : " as job " + res.cell_job) +
                        (after.empty() || res.cell_job.empty() ? "" : " (afterany:" + join(after, ":") + ")"));
  } else {
    res.lines.push_back("submission " + std::to_string(s.number) + " (local, " + std::to_string(s.jobs) +
                        " at a time): " + std::to_string(res.baselines) + " baseline task(s), " +
                        std::to_string(res.cells) + " cell task(s)");
    res.exit_code = run_local(plan, s, res);
  }
  if (resume)
    res.lines.push_back("skipped " + std::to_string(res.done) + " cell(s) with an ok result, " +
                        std::to_string(res.active) + " queued or running");
  res.lines.push_back("work directory " + plan.workdir + " (scripts and key lists in " + res.dir + ")");
  return res;
}

}  // namespace qbench::cluster
