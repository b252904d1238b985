// lib/cluster without a cluster: the plan, the generated sbatch scripts and commands (fake sbatch
// and squeue on PATH), resume's choice of cells, status, the array task's own decisions (a fake
// `qbench` binary) and the merged run. The real Slurm cluster is tests/e2e/run_e2e_slurm.sh.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "test_util.h"
#include "unit/cluster/cluster_util.h"

namespace fs = std::filesystem;
using namespace qbench::cluster;
using qbench::ConfigError;
using qbench::test::slurp;

namespace {

struct Setup {
  fs::path dir;
  Plan plan;
};

/// A plan of `seeds` seeds (2 archs each: 2 baselines and 4 quantized cells per seed).
Setup make_plan(const std::string& name, int seeds = 1, const PlanOptions& po = {}, const std::string& extra = "") {
  Setup s;
  s.dir = qbench::test::scratch_dir("cluster_" + name);
  test::install_fake_slurm(s.dir / "bin");
  const auto cat = test::catalog();
  const fs::path matrix = s.dir / "m.yaml";
  test::write_text(matrix, test::matrix_yaml(seeds, 2, extra));
  const auto m = qbench::config::load_matrix_file(matrix.string(), cat);
  s.plan = create_plan((s.dir / "wd").string(), m, qbench::config::expand_cells(m, cat), cat, po);
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::string line;
  for (char c : text) {
    if (c == '\n') {
      out.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) out.push_back(line);
  return out;
}

/// Sets an environment variable for one scope.
struct EnvVar {
  std::string name;
  std::optional<std::string> old;
  EnvVar(const std::string& n, const std::string& v) : name(n) {
    if (const char* o = std::getenv(n.c_str())) old = o;
    ::setenv(n.c_str(), v.c_str(), 1);
  }
  ~EnvVar() {
    if (old) ::setenv(name.c_str(), old->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

/// Points the plan's tasks at a fake qbench (a shell script) instead of the real binary.
void use_fake_qbench(const Setup& s, const std::string& script) {
  const fs::path fake = s.dir / "fake_qbench";
  test::write_text(fake, "#!/bin/bash\n" + script, true);
  auto j = nlohmann::json::parse(slurp(s.dir / "wd/plan.json"));
  j["qbench"] = fake.string();
  qbench::test::spit(s.dir / "wd/plan.json", j.dump());
}

SubmitOptions slurm_options() {
  SubmitOptions o;
  o.backend = "slurm";
  return o;
}

}  // namespace

TEST_CASE("cluster: the plan copies the matrix and records every cell with its key and baseline", "[cluster]") {
  PlanOptions po;
  po.threads = 2;
  auto s = make_plan("plan", 1, po);
  const Plan& p = s.plan;
  CHECK(p.id.size() == 32);
  CHECK(p.cells.size() == 10);  // 2 archs x (fp32 + minmax, lsq at 2 widths)
  CHECK(p.baselines() == 2);
  CHECK(p.threads == 2);
  CHECK(p.workdir == (s.dir / "wd").string());
  CHECK(p.cache_dir == (s.dir / "wd/cache").string());
  CHECK(p.data_root == (fs::current_path() / "data/fm").string());  // relative to where submit ran
  CHECK(slurp(p.matrix_path()) == slurp(s.dir / "m.yaml"));
  for (const char* sub : {"shards", "submissions", "logs", "cache", "running"}) CHECK(fs::is_directory(s.dir / "wd" / sub));
  // Every quantized cell's baseline is a baseline of the plan that comes before it.
  std::set<std::string> seen;
  for (const auto& c : p.cells) {
    if (c.is_baseline()) {
      CHECK(c.baseline_key == c.key);
      CHECK(c.label == c.arch + " fp32 seed0");
    } else {
      CHECK(seen.count(c.baseline_key) == 1);
    }
    seen.insert(c.key);
  }
  const Plan again = load_plan(p.workdir);
  REQUIRE(again.cells.size() == p.cells.size());
  for (std::size_t i = 0; i < p.cells.size(); ++i) {
    CHECK(again.cells[i].key == p.cells[i].key);
    CHECK(again.cells[i].baseline_key == p.cells[i].baseline_key);
    CHECK(again.cells[i].label == p.cells[i].label);
    CHECK(again.cells[i].config_json == p.cells[i].config_json);
    CHECK(again.cells[i].checkpoint);
  }
  CHECK(again.id == p.id);
  // A second plan in the same folder is refused.
  const auto cat = test::catalog();
  const auto m = qbench::config::load_matrix_file((s.dir / "m.yaml").string(), cat);
  CHECK_THROWS_WITH(create_plan(p.workdir, m, qbench::config::expand_cells(m, cat), cat, {}),
                    Catch::Contains("already holds the plan of matrix 'cluster-test'") && Catch::Contains("--resume"));
  CHECK_THROWS_WITH(load_plan((s.dir / "nowhere").string()), Catch::Contains("no plan here"));
}

TEST_CASE("cluster: a matrix whose relative paths only resolve beside it is refused, nothing left behind",
          "[cluster]") {
  auto dir = qbench::test::scratch_dir("cluster_relative");
  test::write_text(dir / "models/w.safetensors", "not read as weights here, only hashed");
  const auto cat = test::catalog();
  test::write_text(dir / "m.yaml", test::matrix_yaml(1, 1, "architectures:\n  resnet8: {weights: models/w.safetensors}\n"));
  const auto m = qbench::config::load_matrix_file((dir / "m.yaml").string(), cat);
  CHECK(m.arch_options.at("resnet8").weights.find("models/w.safetensors") != std::string::npos);
  CHECK_THROWS_WITH(create_plan((dir / "wd").string(), m, qbench::config::expand_cells(m, cat), cat, {}),
                    Catch::Contains("its copy in the work directory cannot be used") &&
                        Catch::Contains("make it absolute"));
  CHECK_FALSE(fs::exists(dir / "wd"));
  // With an absolute path the copy expands to the same keys; the imported baseline caches nothing.
  test::write_text(dir / "m2.yaml", test::matrix_yaml(1, 1, "architectures:\n  resnet8: {weights: " +
                                                                   (dir / "models/w.safetensors").string() + "}\n"));
  const auto m2 = qbench::config::load_matrix_file((dir / "m2.yaml").string(), cat);
  const Plan p = create_plan((dir / "wd").string(), m2, qbench::config::expand_cells(m2, cat), cat, {});
  for (const auto& c : p.cells)
    if (c.is_baseline()) CHECK(c.checkpoint == (c.arch != "resnet8"));
}

TEST_CASE("cluster: slurm submission writes readable scripts and submits baselines, then cells afterany",
          "[cluster]") {
  auto s = make_plan("sbatch");
  SubmitOptions o = slurm_options();
  o.partition = "gpu";
  o.time = "04:00:00";
  o.array_parallelism = 32;
  o.gpus_per_task = 1;
  o.requeue = true;
  o.sbatch_args = std::vector<std::string>{"--mem=8G", "--account=proj1"};
  const auto r = submit(s.plan, o, false);
  CHECK(r.number == 1);
  CHECK(r.baselines == 2);
  CHECK(r.cells == 8);
  CHECK(r.baseline_job == "100");
  CHECK(r.cell_job == "101");
  CHECK(r.exit_code == 0);
  const std::string dir = (s.dir / "wd/submissions/001").string();
  const std::string cells = slurp(dir + "/cells.sbatch");
  const std::string base = slurp(dir + "/baselines.sbatch");
  for (const char* line : {"#SBATCH --array=0-7%32", "#SBATCH --cpus-per-task=3", "#SBATCH --partition=gpu",
                           "#SBATCH --time=04:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --requeue", "#SBATCH --mem=8G",
                           "#SBATCH --account=proj1", "#SBATCH --ntasks=1", "#SBATCH --open-mode=append"})
    CHECK(cells.find(std::string(line) + "\n") != std::string::npos);
  CHECK(base.find("#SBATCH --array=0-1%32\n") != std::string::npos);
  CHECK(cells.rfind("#!/bin/bash\n", 0) == 0);
  CHECK(cells.find("#SBATCH --output=" + s.plan.workdir + "/logs/cells-%A_%a.out\n") != std::string::npos);
  CHECK(cells.find("--device cuda") != std::string::npos);  // what the cells run with on GPUs
  CHECK(cells.find("exec " + s.plan.qbench + " task --workdir " + s.plan.workdir +
                   " --submission 1 --array cells --index \"$SLURM_ARRAY_TASK_ID\"\n") != std::string::npos);
  // Every #SBATCH line comes before the first command (sbatch stops reading them there).
  const auto ls = lines_of(cells);
  std::size_t last_sbatch = 0, first_cmd = ls.size();
  for (std::size_t i = 0; i < ls.size(); ++i) {
    if (ls[i].rfind("#SBATCH", 0) == 0) last_sbatch = i;
    if (first_cmd == ls.size() && !ls[i].empty() && ls[i][0] != '#') first_cmd = i;
  }
  CHECK(last_sbatch < first_cmd);
  // The key lists: line i is array task i, baselines in plan order.
  const auto keys = lines_of(slurp(dir + "/baselines.keys"));
  REQUIRE(keys.size() == 2);
  CHECK(keys[0] == s.plan.cells[0].key);
  // sbatch was called for the baselines first, then the cells with the dependency.
  const auto calls = lines_of(slurp(s.dir / "bin/sbatch.log"));
  REQUIRE(calls.size() == 2);
  CHECK(calls[0] == "--parsable " + dir + "/baselines.sbatch");
  CHECK(calls[1] == "--parsable --dependency=afterany:100 " + dir + "/cells.sbatch");
  const auto rec = nlohmann::json::parse(slurp(dir + "/submission.json"));
  CHECK(rec["arrays"]["cells"]["job_id"] == "101");
  CHECK(rec["device"] == "cuda");
  CHECK(rec["arrays"]["cells"]["command"] == "sbatch --parsable --dependency=afterany:100 " + dir + "/cells.sbatch");
  // Without GPUs the cells run on the CPU; a second plain submit is refused.
  CHECK_THROWS_WITH(submit(s.plan, slurm_options(), false), Catch::Contains("already submitted"));
}

TEST_CASE("cluster: bad submit options are refused before anything is written", "[cluster]") {
  auto dir = qbench::test::scratch_dir("cluster_options");
  test::install_fake_slurm(dir / "bin");
  SubmitOptions o;
  o.backend = "pbs";
  CHECK_THROWS_WITH(check_submit_options(o, 1), Catch::Contains("--backend pbs: expected local or slurm"));
  o = {};
  o.partition = "gpu";
  CHECK_THROWS_WITH(check_submit_options(o, 1), Catch::Contains("--partition: a Slurm option"));
  o = slurm_options();
  o.jobs = 4;
  CHECK_THROWS_WITH(check_submit_options(o, 1), Catch::Contains("--jobs: for --backend local"));
  o = slurm_options();
  o.sbatch_args = std::vector<std::string>{"mem=8G"};
  CHECK_THROWS_WITH(check_submit_options(o, 1), Catch::Contains("--sbatch-arg 'mem=8G'"));
  o = slurm_options();
  o.partition = "nosuch";
  test::write_text(dir / "bin/refuse", "invalid partition specified: nosuch");
  CHECK_THROWS_AS(check_submit_options(o, 1), ConfigError);
  CHECK_THROWS_WITH(check_submit_options(o, 1), Catch::Contains("sbatch refuses these options") &&
                                                    Catch::Contains("--partition=nosuch") &&
                                                    Catch::Contains("invalid partition specified: nosuch"));
  fs::remove(dir / "bin/refuse");
  CHECK_NOTHROW(check_submit_options(o, 1));
  CHECK_FALSE(fs::exists(dir / "bin/sbatch.log"));  // --test-only queued nothing
  EnvVar path("PATH", "/nonexistent");
  CHECK_THROWS_WITH(check_submit_options(slurm_options(), 1), Catch::Contains("sbatch is not on PATH"));
}

TEST_CASE("cluster: resume submits only cells without an ok result that are not queued, and status shows each",
          "[cluster]") {
  auto s = make_plan("resume");
  const Plan& p = s.plan;
  submit(p, slurm_options(), false);  // baselines job 100, cells job 101
  // Base 0 ok, base 1 failed; cell 0 ok; cell 1 ok twice; cell 2 failed; cells 3, 4 in the queue
  // (running, pending); cell 5 cancelled; cells 6, 7 never ran (their tasks are gone).
  const auto bkeys = lines_of(slurp(s.dir / "wd/submissions/001/baselines.keys"));
  const auto ckeys = lines_of(slurp(s.dir / "wd/submissions/001/cells.keys"));
  test::write_shard(p, bkeys[0], "ok", 80.5, "1", "2026-12-01T10:00:00.000Z");
  test::write_shard(p, bkeys[1], "failed", 0, "2", "2026-12-01T10:00:01.000Z", "fp32 training diverged");
  test::write_shard(p, ckeys[0], "ok", 79.25, "3", "2026-12-01T10:01:00.000Z");
  test::write_shard(p, ckeys[1], "ok", 78.0, "4", "2026-12-01T10:01:01.000Z");
  test::write_shard(p, ckeys[1], "ok", 78.0, "5", "2026-12-01T10:01:02.000Z");
  test::write_shard(p, ckeys[2], "failed", 0, "6", "2026-12-01T10:01:03.000Z", "NaN loss");
  test::write_text(s.dir / "bin/squeue.out",
                   "101|3|RUNNING|node4|1:02:03|None\n"
                   "101|4|PENDING||0:00|Resources\n"
                   "101|5|CANCELLED|node2|0:10|None\n"
                   "100|0|COMPLETED|node1|0:30|None\n");
  const Status st = collect_status(p);
  CHECK(st.done == 3);
  CHECK(st.failed == 2);
  CHECK(st.running == 1);
  CHECK(st.pending == 1);
  CHECK(st.missing == 3);
  const std::string text = render_status(p, st);
  INFO(text);
  CHECK(text.find("done 3, failed 2, running 1, pending 1, missing 3\n") != std::string::npos);
  auto line_of = [&](const std::string& key) {
    for (const auto& l : lines_of(text))
      if (l.find(key.substr(0, 12)) != std::string::npos) return l;
    return std::string();
  };
  CHECK(std::regex_search(line_of(bkeys[0]), std::regex("^DONE .* top-1 80\\.50  slurm job 50_1 \\(1\\) on node1$")));
  CHECK(std::regex_search(line_of(bkeys[1]), std::regex("^FAILED .* fp32 training diverged  \\(slurm job 50_2 \\(2\\) on node2\\)$")));
  CHECK(std::regex_search(line_of(ckeys[3]), std::regex("^RUNNING .* slurm job 101_3 on node4, 1:02:03 elapsed$")));
  CHECK(std::regex_search(line_of(ckeys[4]), std::regex("^PENDING .* slurm job 101_4 \\(Resources\\)$")));
  CHECK(std::regex_search(line_of(ckeys[5]), std::regex("^MISSING .* its task ended CANCELLED without a result \\(slurm job 101_5\\)")));
  CHECK(std::regex_search(line_of(ckeys[6]), std::regex("^MISSING .* no result and nothing queued")));
  // squeue was asked once, for both arrays, every task, every state.
  CHECK(lines_of(slurp(s.dir / "bin/squeue.log")).back() == "-h -r -t all -j 100,101 -o %F|%K|%T|%N|%M|%r");

  // Resume: base 1 again, cells 2 (failed), 5, 6, 7; not the queued 3 and 4.
  test::write_text(s.dir / "bin/squeue.out", "101|3|RUNNING|node4|1:02:03|None\n101|4|PENDING||0:00|Resources\n");
  const auto r = submit(p, SubmitOptions{}, true);  // the backend and options of submission 1
  CHECK(r.backend == "slurm");
  CHECK(r.number == 2);
  CHECK(r.baselines == 1);
  CHECK(r.cells == 4);
  CHECK(r.done == 3);
  CHECK(r.active == 2);
  const auto keys2 = lines_of(slurp(s.dir / "wd/submissions/002/cells.keys"));
  CHECK(keys2 == std::vector<std::string>{ckeys[2], ckeys[5], ckeys[6], ckeys[7]});
  CHECK(lines_of(slurp(s.dir / "wd/submissions/002/baselines.keys")) == std::vector<std::string>{bkeys[1]});
  CHECK(lines_of(slurp(s.dir / "bin/sbatch.log")).back().find("--dependency=afterany:102 ") != std::string::npos);
  // While those are queued, nothing is submitted again.
  test::write_text(s.dir / "bin/squeue.out", "102|0|PENDING||0:00|Priority\n103|0|PENDING||0:00|Dependency\n"
                                             "103|1|PENDING||0:00|Dependency\n103|2|PENDING||0:00|Dependency\n"
                                             "103|3|PENDING||0:00|Dependency\n101|3|RUNNING|node4|1:02:04|None\n"
                                             "101|4|RUNNING|node5|0:01|None\n");
  const auto r3 = submit(p, SubmitOptions{}, true);
  CHECK(r3.baselines + r3.cells == 0);
  CHECK(r3.lines.at(0) == "nothing to submit: 3 cell(s) done, 7 queued or running");
  const Status st3 = collect_status(p);
  CHECK(st3.pending == 5);
  CHECK(st3.running == 2);
}

TEST_CASE("cluster: a cell task whose baseline failed records the failure without running", "[cluster]") {
  auto s = make_plan("task_baseline");
  submit(s.plan, slurm_options(), false);
  const auto bkeys = lines_of(slurp(s.dir / "wd/submissions/001/baselines.keys"));
  const auto ckeys = lines_of(slurp(s.dir / "wd/submissions/001/cells.keys"));
  test::write_shard(s.plan, bkeys[0], "failed", 0, "7", "2026-12-01T10:00:01.000Z", "fp32 training diverged: loss is nan");
  use_fake_qbench(s, "echo ran >> " + (s.dir / "ran").string() + "\nexit 1\n");
  EnvVar job("SLURM_JOB_ID", "4242"), ajob("SLURM_ARRAY_JOB_ID", "101"), task("SLURM_ARRAY_TASK_ID", "0");
  EnvVar tmp("TMPDIR", (s.dir / "node_tmp").string());
  CHECK(run_task({s.plan.workdir, 1, "cells", 0}) == 1);
  CHECK_FALSE(fs::exists(s.dir / "ran"));
  const std::string shard = s.plan.shards_dir() + "/" + ckeys[0] + ".slurm-4242.db";
  REQUIRE(fs::exists(shard));
  const auto c = qbench::store::Store::read_contents(shard);
  REQUIRE(c.results.size() == 1);
  CHECK(c.results[0].status == "failed");
  CHECK(c.results[0].error ==
        "the FP32 baseline (resnet8, seed 0) failed (slurm job 7 on node7): fp32 training diverged: loss is nan");
  CHECK(c.results[0].algorithm == s.plan.find(ckeys[0])->algorithm);
  CHECK(c.runs[0].origin.scheduler == "slurm");
  CHECK(c.runs[0].origin.job_id == "4242");
  CHECK(c.runs[0].origin.array_job_id == "101");
  CHECK(c.runs[0].origin.array_task_id == "0");
  CHECK(c.runs[0].origin.plan_id == s.plan.id);
  CHECK(c.runs[0].host == qbench::host_name());
  CHECK(c.plan.size() == 1);
  // Nothing is left on the node, no temporary beside the shard.
  CHECK(fs::is_empty(s.dir / "node_tmp"));
  for (const auto& e : fs::directory_iterator(s.plan.shards_dir()))
    CHECK(e.path().filename().string()[0] != '.');
  // The same task again: the cell has no ok result, so it is recorded again under a new name.
  CHECK(run_task({s.plan.workdir, 1, "cells", 0}) == 1);
  CHECK(collect_status(s.plan).cells[1].attempts == 2);
  // A cell of the other baseline, which has neither a checkpoint nor a result.
  CHECK(run_task({s.plan.workdir, 1, "cells", 4}) == 1);
  const auto c4 = qbench::store::Store::read_contents(s.plan.shards_dir() + "/" + ckeys[4] + ".slurm-4242.db");
  CHECK(c4.results.at(0).error.find("has no checkpoint (" + s.plan.cache_dir + "/baselines/" + bkeys[1] +
                                    ".safetensors) and no result") != std::string::npos);
  CHECK_FALSE(fs::exists(s.dir / "ran"));
}

TEST_CASE("cluster: a task runs qbench run with the cell's options, interrupted or failing runs publish nothing of theirs",
          "[cluster]") {
  auto s = make_plan("task_run");
  submit(s.plan, slurm_options(), false);
  const auto bkeys = lines_of(slurp(s.dir / "wd/submissions/001/baselines.keys"));
  EnvVar job("SLURM_JOB_ID", "77"), ajob("SLURM_ARRAY_JOB_ID", "100"), task("SLURM_ARRAY_TASK_ID", "0");
  EnvVar tmp("TMPDIR", (s.dir / "node_tmp").string());
  const fs::path args = s.dir / "args.txt";
  // Interrupted (SIGTERM between batches): exit 130, nothing published.
  use_fake_qbench(s, "echo \"$@\" > " + args.string() + "\necho 'qbench: run 1 INTERRUPTED' >&2\nexit 130\n");
  CHECK(run_task({s.plan.workdir, 1, "baselines", 0}) == 130);
  CHECK(fs::is_empty(s.plan.shards_dir()));
  const std::string a = slurp(args);
  CHECK(a.find("run " + s.plan.matrix_path() + " --cell " + bkeys[0] + " --db " + (s.dir / "node_tmp").string() +
               "/qbench-shard-" + bkeys[0] + ".slurm-77.db --cache-dir " + s.plan.cache_dir +
               " --threads 3 --device cpu --no-progress") == 0);
  CHECK(a.find("--data-root " + s.plan.data_root) != std::string::npos);
  // A run that ends before recording its cell (exit 2: an input the node cannot read): the task
  // records the failure with qbench's message.
  use_fake_qbench(s, "echo 'qbench: error: --data-root /data/fm: no such folder' >&2\nexit 2\n");
  CHECK(run_task({s.plan.workdir, 1, "baselines", 0}) == 1);
  const auto c = qbench::store::Store::read_contents(s.plan.shards_dir() + "/" + bkeys[0] + ".slurm-77.db");
  CHECK(c.results.at(0).error == "qbench run exit code 2 on " + qbench::host_name() +
                                     ": qbench: error: --data-root /data/fm: no such folder");
  // Killed outright (the kernel's OOM killer): recorded as such.
  use_fake_qbench(s, "kill -9 $$\n");
  CHECK(run_task({s.plan.workdir, 1, "baselines", 1}) == 1);
  const auto k = qbench::store::Store::read_contents(s.plan.shards_dir() + "/" + bkeys[1] + ".slurm-77.db");
  CHECK(k.results.at(0).error.find("qbench run killed by signal 9 (SIGKILL)") == 0);
  // A cell with an ok shard is not run again.
  test::write_shard(s.plan, bkeys[0], "ok", 70.0, "8", "2026-12-01T11:00:00.000Z");
  fs::remove(args);
  use_fake_qbench(s, "echo \"$@\" > " + args.string() + "\nexit 0\n");
  CHECK(run_task({s.plan.workdir, 1, "baselines", 0}) == 0);
  CHECK_FALSE(fs::exists(args));
  // Bad task arguments are usage errors.
  CHECK_THROWS_WITH(run_task({s.plan.workdir, 1, "baselines", 2}), Catch::Contains("--index 2: the baselines array of submission 1 has tasks 0..1"));
  CHECK_THROWS_WITH(run_task({s.plan.workdir, 9, "baselines", 0}), Catch::Contains("--submission 9: no such submission"));
  CHECK_THROWS_WITH(run_task({s.plan.workdir, 1, "fp32", 0}), Catch::Contains("--array fp32: expected baselines or cells"));
}

TEST_CASE("cluster: the merged run points at one result per cell, conflicts are listed, merging twice adds nothing",
          "[cluster]") {
  auto s = make_plan("merge");
  const Plan& p = s.plan;
  const auto& cells = p.cells;
  // cells[0] ok; cells[1] two different ok results (a conflict); cells[2] two identical ok
  // results (duplicates); cells[3] failed twice; cells[4] failed then ok; the rest: no result.
  test::write_shard(p, cells[0].key, "ok", 80.0, "1", "2026-12-01T10:00:00.000Z");
  test::write_shard(p, cells[1].key, "ok", 71.0, "2", "2026-12-01T10:00:05.000Z");
  test::write_shard(p, cells[1].key, "ok", 70.0, "3", "2026-12-01T10:00:03.000Z");
  test::write_shard(p, cells[2].key, "ok", 60.0, "4", "2026-12-01T10:00:01.000Z");
  test::write_shard(p, cells[2].key, "ok", 60.0, "5", "2026-12-01T10:00:02.000Z");
  test::write_shard(p, cells[3].key, "failed", 0, "6", "2026-12-01T10:00:01.000Z", "first error");
  test::write_shard(p, cells[3].key, "failed", 0, "7", "2026-12-01T10:00:09.000Z", "second error");
  test::write_shard(p, cells[4].key, "failed", 0, "8", "2026-12-01T10:00:01.000Z", "lost node");
  test::write_shard(p, cells[4].key, "ok", 55.5, "9", "2026-12-01T10:00:02.000Z");
  test::write_text(p.shards_dir() + "/.tmp.half.db", "a publication killed half way");
  test::write_text(p.shards_dir() + "/zz-broken.db", std::string(2048, 'x'));
  qbench::store::Store target((s.dir / "merged.db").string());
  const auto r = merge_workdir(target, p, "qbench merge wd --into merged.db");
  CHECK(r.shards == 10);
  CHECK(r.shards_new == 9);
  REQUIRE(r.unreadable.size() == 1);
  CHECK(r.unreadable[0].find("zz-broken.db") != std::string::npos);
  CHECK(r.totals.results_added == 9);
  CHECK(r.merged_run_new);
  CHECK(r.ok == 4);
  CHECK(r.failed == 1);
  CHECK(r.pending == 5);
  CHECK(r.duplicates == 1);
  REQUIRE(r.conflicts.size() == 1);
  CHECK(r.conflicts[0].cell_key == cells[1].key);
  CHECK(r.conflicts[0].results.size() == 2);
  const auto rows = target.report_rows(r.merged_run);
  REQUIRE(rows.size() == cells.size());
  for (std::size_t i = 0; i < rows.size(); ++i) CHECK(rows[i].plan.cell_key == cells[i].key);
  CHECK(rows[0].result->top1 == 80.0);
  CHECK(rows[1].result->top1 == 70.0);  // the earliest of the two
  CHECK(r.conflicts[0].chosen == rows[1].result->id);
  CHECK(rows[2].result->top1 == 60.0);
  CHECK(rows[3].result->error == "second error");  // the latest attempt
  CHECK(rows[4].result->top1 == 55.5);
  CHECK(rows[0].plan.action == "skipped");
  for (std::size_t i = 5; i < rows.size(); ++i) {
    CHECK(rows[i].plan.action == "pending");
    CHECK_FALSE(rows[i].result);
  }
  // Both conflicting rows are kept; the merged run names them in its environment.
  CHECK(target.plan_results(p.id).size() == 9);
  const auto run = target.run(r.merged_run);
  CHECK(run->status == "failed");
  CHECK(run->origin.scheduler == "merge");
  CHECK(run->threads == 3);
  CHECK(run->torch_version == "1.13.0");
  CHECK(run->started_at == "2026-12-01T10:00:00.000Z");
  const auto env = nlohmann::json::parse(run->environment_json);
  CHECK(env["cpu"] == "test");
  CHECK(env["merge"]["conflicts"].size() == 1);
  CHECK(env["merge"]["conflicts"][0]["cell_key"] == cells[1].key);
  CHECK(env["merge"]["conflicts"][0]["chosen"] == rows[1].result->id);
  const std::string text = render_merge(p, r);
  CHECK(text.find("CONFLICT " + cells[1].short_key() + " (" + cells[1].label + "): 2 ok results differ; the merged run uses result " +
                  std::to_string(r.conflicts[0].chosen) + " (the earliest)") != std::string::npos);
  CHECK(text.find("top-1 71.00 (slurm job 2 on node2, 2026-12-01T10:00:05.000Z)") != std::string::npos);
  CHECK(text.find("SKIPPED unreadable shard") != std::string::npos);

  // Again: no new run, result or plan row.
  const auto n_runs = target.runs().size();
  const auto again = merge_workdir(target, p, "qbench merge wd --into merged.db");
  CHECK(again.shards_new == 0);
  CHECK(again.totals.results_added == 0);
  CHECK_FALSE(again.merged_run_new);
  CHECK(again.merged_run == r.merged_run);
  CHECK(target.runs().size() == n_runs);
  // A new shard: a new merged run with it; the old merged run stays.
  test::write_shard(p, cells[5].key, "ok", 50.0, "10", "2026-12-01T10:00:10.000Z");
  const auto third = merge_workdir(target, p, "qbench merge wd --into merged.db");
  CHECK(third.merged_run_new);
  CHECK(third.merged_run > r.merged_run);
  CHECK(third.ok == 5);
  CHECK(target.report_rows(r.merged_run).size() == cells.size());
}

TEST_CASE("cluster: merge sources are checked before anything is opened", "[cluster]") {
  auto s = make_plan("merge_sources");
  const std::string into = (s.dir / "into.db").string();
  test::write_text(s.dir / "junk.db", "not a database at all");
  test::write_text(s.dir / "empty_dir/.keep", "");
  CHECK_THROWS_WITH(check_merge_sources({(s.dir / "missing").string()}, into), Catch::Contains("no such work directory or store"));
  CHECK_THROWS_WITH(check_merge_sources({(s.dir / "junk.db").string()}, into), Catch::Contains("junk.db: not an SQLite database"));
  CHECK_THROWS_WITH(check_merge_sources({(s.dir / "empty_dir").string()}, into), Catch::Contains("no plan here"));
  { qbench::store::Store st(into); }
  CHECK_THROWS_WITH(check_merge_sources({into}, into), Catch::Contains("is the --into store itself"));
  const auto ok = check_merge_sources({s.plan.workdir, into}, (s.dir / "other.db").string());
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].plan->id == s.plan.id);
  CHECK_FALSE(ok[1].plan);
  CHECK_FALSE(fs::exists(s.dir / "other.db"));
}
