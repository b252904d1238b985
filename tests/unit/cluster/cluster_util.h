#pragma once
// What the cluster tests and bench/bench_cluster.cpp share: a small catalog and matrix, fake
// Slurm client commands (sbatch records its arguments and prints job ids; squeue prints a canned
// table), and shards written the way a task publishes them.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "qbench/cluster/cluster.h"
#include "qbench/config/matrix.h"
#include "qbench/store/store.h"

namespace qbench::cluster::test {

inline config::Catalog catalog() {
  config::Catalog c;
  c.algorithms = {{"fp32", CellKind::Fp32}, {"minmax", CellKind::Ptq}, {"lsq", CellKind::Qat}};
  c.archs = {"resnet8", "resnet20"};
  c.datasets = {"fashion-mnist"};
  c.profiles = {"academic"};
  c.profile_bn_fold = {{"academic", -1}};
  c.observers = {"minmax"};
  return c;
}

/// A matrix of `seeds` x 2 archs baselines, each with minmax and lsq at `bits` widths.
inline std::string matrix_yaml(int seeds, int bits = 2, const std::string& extra = "") {
  std::string seed_list, bit_list;
  for (int s = 0; s < seeds; ++s) seed_list += (s ? ", " : "") + std::to_string(s);
  const char* widths[] = {"w8a8", "w4a4", "w3a3", "w2a2", "w4a8", "w2a4", "w3a8", "w5a5", "w6a6", "w7a7"};
  for (int b = 0; b < bits; ++b) bit_list += std::string(b ? ", " : "") + widths[b];
  return "name: cluster-test\n"
         "dataset: {name: fashion-mnist, root: data/fm, train_subset: 256, test_subset: 100}\n"
         "pipeline: {threads: 3}\n" +
         extra +
         "matrix:\n"
         "  algorithm: [minmax, lsq]\n"
         "  bits: [" + bit_list + "]\n"
         "  arch: [resnet8, resnet20]\n"
         "  seed: [" + seed_list + "]\n";
}

inline void write_text(const std::filesystem::path& p, const std::string& text, bool executable = false) {
  std::filesystem::create_directories(p.parent_path());
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
  }
  if (executable) ::chmod(p.c_str(), 0755);
}

/// Fake `sbatch` and `squeue` in `dir`, first on PATH. sbatch appends each call's arguments as a
/// line to dir/sbatch.log and prints the next job id (from 100); with dir/refuse present, its
/// --test-only fails with that file's text. squeue prints dir/squeue.out and logs its arguments.
inline void install_fake_slurm(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  write_text(dir / "sbatch",
             "#!/bin/bash\n"
             "d=" + dir.string() + "\n"
             "for a in \"$@\"; do if [ \"$a\" = --test-only ]; then\n"
             "  if [ -e $d/refuse ]; then echo \"sbatch: error: $(cat $d/refuse)\" >&2; exit 1; fi\n"
             "  echo 'sbatch: Job 1 to start at now' >&2; exit 0; fi; done\n"
             "n=$(( $(cat $d/next 2>/dev/null || echo 99) + 1 )); echo $n > $d/next\n"
             "echo \"$*\" >> $d/sbatch.log\n"
             "echo \"$n\"\n",
             true);
  write_text(dir / "squeue",
             "#!/bin/bash\n"
             "d=" + dir.string() + "\n"
             "echo \"$*\" >> $d/squeue.log\n"
             "[ -e $d/squeue.out ] && cat $d/squeue.out\n"
             "exit 0\n",
             true);
  const char* path = std::getenv("PATH");
  const std::string p = path ? path : "/usr/bin:/bin";
  if (p.rfind(dir.string() + ":", 0) != 0) ::setenv("PATH", (dir.string() + ":" + p).c_str(), 1);
}

/// A shard as a task publishes it: one run of the plan (origin stamped), its plan row, the result.
inline std::string write_shard(const Plan& plan, const std::string& key, const std::string& status, double top1,
                               const std::string& job, const std::string& finished_at,
                               const std::string& error = "failed for a test") {
  const PlanCell* c = plan.find(key);
  const std::string path = plan.shards_dir() + "/" + key + ".slurm-" + job + ".db";
  store::Store s(path);
  store::RunInfo info;
  info.matrix_name = plan.name;
  info.matrix_file = plan.matrix_path();
  info.yaml_text = "name: x\n";
  info.yaml_hash = plan.yaml_hash;
  info.started_at = finished_at;
  info.host = "node" + job;
  info.git_rev = "rev";
  info.qbench_version = "0.1.0";
  info.torch_version = "1.13.0";
  info.threads = plan.threads;
  info.command_line = "qbench run";
  info.environment_json = "{\"cpu\":\"test\"}";
  info.origin = {"slurm", job, "50", job, plan.id};
  const int64_t run = s.begin_run(info);
  store::PlannedCell p;
  p.cell_key = key;
  p.action = "pending";
  p.config_json = c ? c->config_json : "{}";
  s.plan_cells(run, {p});
  store::CellResult r;
  r.run_id = run;
  r.cell_key = key;
  r.baseline_key = c ? c->baseline_key : key;
  r.dataset = c ? c->dataset : "fashion-mnist";
  r.arch = c ? c->arch : "resnet8";
  r.algorithm = c ? c->algorithm : "minmax";
  r.profile = c ? c->profile : "academic";
  r.w_bits = c ? c->w_bits : 8;
  r.a_bits = c ? c->a_bits : 8;
  r.seed = c ? c->seed : 0;
  r.kind = c ? c->kind : "ptq";
  r.status = status;
  if (status == "ok") r.top1 = top1;
  else r.error = error;
  r.threads = plan.threads;
  r.config_json = p.config_json;
  r.started_at = finished_at;
  r.finished_at = finished_at;
  s.put_result(r);
  s.end_run(run, status == "ok" ? "finished" : "failed");
  return path;
}

}  // namespace qbench::cluster::test
