// Slurm: the generated sbatch scripts, the sbatch command lines, and squeue's view of the arrays.
#include <cctype>
#include <set>
#include <sstream>

#include "internal.h"
#include "qbench/common/strings.h"

namespace qbench::cluster::detail {

namespace {

std::string job_name(const Plan& plan, const std::string& array) {
  std::string name = "qb-" + plan.name + "-" + (array == "baselines" ? "fp32" : "cells");
  for (char& c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  return name;
}

}  // namespace

std::string sbatch_script(const Plan& plan, const Submission& s, const std::string& array, int count) {
  const std::string dir = submission_dir(plan.workdir, s.number);
  const bool cells = array == "cells";
  std::ostringstream o;
  o << "#!/bin/bash\n";
  o << "# qbench: the " << (cells ? "quantized cells" : "FP32 baselines") << " of plan '" << plan.name << "' ("
    << plan.id << "), submission " << s.number << ".\n";
  o << "# Array task i runs the cell on line i+1 of " << dir << "/" << array << ".keys with\n";
  o << "#   qbench run " << plan.matrix_path() << " --cell KEY --db <node-local shard> --cache-dir "
    << plan.cache_dir << " --threads " << plan.threads << " --device " << s.device << "\n";
  o << "# and then moves the finished shard into " << plan.shards_dir() << "/ (temporary name, then rename).\n";
  if (cells)
    o << "# Each task first checks its baseline (checkpoint in the cache, else the baseline's shard): a failed\n"
         "# baseline is recorded as this cell's failure without running it.\n";
  o << "# Submitted with: sbatch --parsable" << (cells ? " --dependency=afterany:<the baseline array>" : "") << " "
    << dir << "/" << array << ".sbatch\n";
  o << "# Run again by hand with the same command; a task whose cell already has an ok shard does nothing.\n";
  o << "#SBATCH --job-name=" << job_name(plan, array) << "\n";
  o << "#SBATCH --array=0-" << (count - 1);
  if (s.array_parallelism > 0) o << "%" << s.array_parallelism;
  o << "\n";
  o << "#SBATCH --ntasks=1\n";
  o << "#SBATCH --cpus-per-task=" << plan.threads << "\n";
  if (!s.partition.empty()) o << "#SBATCH --partition=" << s.partition << "\n";
  if (!s.time.empty()) o << "#SBATCH --time=" << s.time << "\n";
  if (s.gpus_per_task > 0) o << "#SBATCH --gres=gpu:" << s.gpus_per_task << "\n";
  if (s.requeue) o << "#SBATCH --requeue\n";
  o << "#SBATCH --output=" << plan.workdir << "/logs/" << array << "-%A_%a.out\n";
  o << "#SBATCH --open-mode=append\n";
  for (const auto& a : s.sbatch_args) o << "#SBATCH " << a << "\n";
  o << "exec " << shell_quote(plan.qbench) << " task --workdir " << shell_quote(plan.workdir) << " --submission "
    << s.number << " --array " << array << " --index \"$SLURM_ARRAY_TASK_ID\"\n";
  return o.str();
}

std::vector<std::string> sbatch_command(const Plan& plan, const Submission& s, const std::string& array,
                                        const std::vector<std::string>& after_jobs) {
  std::vector<std::string> argv = {"sbatch", "--parsable"};
  if (!after_jobs.empty()) argv.push_back("--dependency=afterany:" + join(after_jobs, ":"));
  argv.push_back(submission_dir(plan.workdir, s.number) + "/" + array + ".sbatch");
  return argv;
}

bool QueueEntry::active() const {
  static const std::set<std::string> ended = {"COMPLETED", "CANCELLED", "FAILED",  "TIMEOUT",       "NODE_FAIL",
                                              "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED"};
  return !ended.count(state);
}

std::vector<QueueEntry> parse_squeue(const std::string& text) {
  std::vector<QueueEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::size_t start = 0;
    for (;;) {
      const auto bar = line.find('|', start);
      f.push_back(line.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
      if (bar == std::string::npos) break;
      start = bar + 1;
    }
    if (f.size() < 6) continue;
    auto trim = [](std::string s) {
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
      return s;
    };
    QueueEntry e;
    e.array_job_id = trim(f[0]);
    e.task_id = trim(f[1]);
    e.state = trim(f[2]);
    e.nodes = trim(f[3]);
    e.elapsed = trim(f[4]);
    e.reason = trim(f[5]);
    // A state such as "CANCELLED by 0" keeps its first word.
    if (auto sp = e.state.find(' '); sp != std::string::npos) e.state.resize(sp);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<QueueEntry> query_queue(const std::vector<std::string>& job_ids, std::string* note) {
  if (job_ids.empty()) return {};
  if (!find_on_path("squeue")) {
    if (note) *note = "squeue is not on PATH: the state of queued and running tasks is unknown";
    return {};
  }
  const auto c = run_capture({"squeue", "-h", "-r", "-t", "all", "-j", join(job_ids, ","), "-o", "%F|%K|%T|%N|%M|%r"});
  if (c.exit.code != 0) {
    // Every id forgotten (Slurm keeps an ended job for MinJobAge, 300 s by default): nothing queued.
    if (c.err.find("Invalid job id") != std::string::npos) return {};
    if (note) *note = "squeue failed (" + c.exit.describe() + "): " + c.err.substr(0, c.err.find('\n'));
    return {};
  }
  return parse_squeue(c.out);
}

}  // namespace qbench::cluster::detail
