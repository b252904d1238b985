// Scale-out overheads (lib/cluster, torch-free), measured and printed, never asserted:
//   plan + submit: parse and expand a ~300-cell matrix, write the plan (the copy is parsed again),
//                  submit both arrays to a FAKE sbatch (a bash script on PATH that records its
//                  arguments and prints a job id: the scheduler's own latency is not included);
//   status:        300 published shards read back plus a fake squeue listing 300 array tasks;
//   merge:         300 shards folded into a new store with the merged run, and again (idempotent).
// Targets from issue 18: plan + submit < 1 s, merge of 300 shards < 5 s, status < 1 s.
// With --qbench BIN (and --data-root DIR, Fashion-MNIST's folder), the same three through the CLI as
// processes (`qbench submit`, `qbench status`, `qbench merge`), start-up included: the binary loads
// LibTorch's shared libraries, and submit also checks the dataset files as a run would.
// usage: qbench_bench_cluster [--seeds 10] [--bits 7] [--dir DIR] [--repeats 3] [--qbench BIN --data-root DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "qbench/cluster/cluster.h"
#include "qbench/store/store.h"
#include "unit/cluster/cluster_util.h"

namespace fs = std::filesystem;
using namespace qbench::cluster;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 10, bits = 7, repeats = 3;
  std::string qbench, data_root = "/usr/share/datasets/fashion-mnist";
  fs::path dir = fs::temp_directory_path() / "qbench_bench_cluster";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seeds") seeds = std::atoi(argv[i + 1]);
    else if (a == "--bits") bits = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--repeats") repeats = std::atoi(argv[i + 1]);
    else if (a == "--qbench") qbench = fs::absolute(argv[i + 1]).string();
    else if (a == "--data-root") data_root = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--seeds N] [--bits 1..10] [--dir DIR] [--repeats N] [--qbench BIN --data-root DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  test::install_fake_slurm(dir / "bin");
  const auto cat = test::catalog();
  test::write_text(dir / "m.yaml", test::matrix_yaml(seeds, bits));

  std::vector<double> t_plan, t_submit, t_status, t_merge, t_merge_again;
  std::size_t n_cells = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    const fs::path wd = dir / ("wd" + std::to_string(rep));
    fs::remove(dir / "bin/next");
    auto t0 = Clock::now();
    const auto m = qbench::config::load_matrix_file((dir / "m.yaml").string(), cat);
    const auto cells = qbench::config::expand_cells(m, cat);
    const Plan plan = create_plan(wd.string(), m, cells, cat, {});
    t_plan.push_back(since(t0));
    n_cells = plan.cells.size();
    SubmitOptions o;
    o.backend = "slurm";
    o.partition = "gpu";
    o.time = "04:00:00";
    o.array_parallelism = 32;
    t0 = Clock::now();
    const auto res = submit(plan, o, false);
    t_submit.push_back(since(t0));

    // Every cell finished: one shard each (as tasks publish them), and squeue still lists the tasks.
    std::string squeue;
    for (std::size_t i = 0; i < plan.cells.size(); ++i) {
      const auto& c = plan.cells[i];
      test::write_shard(plan, c.key, i % 17 == 5 ? "failed" : "ok", 50.0 + static_cast<double>(i % 40), std::to_string(1000 + i),
                        "2026-12-01T10:00:00.000Z");
    }
    int b = 0, q = 0;
    for (const auto& c : plan.cells) {
      const std::string job = c.is_baseline() ? res.baseline_job : res.cell_job;
      const int idx = c.is_baseline() ? b++ : q++;
      squeue += job + "|" + std::to_string(idx) + "|COMPLETED|node" + std::to_string(idx % 8) + "|1:00|None\n";
    }
    test::write_text(dir / "bin/squeue.out", squeue);
    t0 = Clock::now();
    const auto st = collect_status(plan);
    const std::string text = render_status(plan, st);
    t_status.push_back(since(t0));
    if (st.done + st.failed != static_cast<int>(n_cells)) std::fprintf(stderr, "unexpected status:\n%s", text.c_str());

    const std::string target = (dir / ("merged" + std::to_string(rep) + ".db")).string();
    qbench::store::Store store(target);
    t0 = Clock::now();
    const auto mr = merge_workdir(store, plan, "bench");
    t_merge.push_back(since(t0));
    t0 = Clock::now();
    const auto again = merge_workdir(store, plan, "bench");
    t_merge_again.push_back(since(t0));
    if (mr.totals.results_added != static_cast<int>(n_cells) || again.totals.results_added != 0 || again.merged_run_new)
      std::fprintf(stderr, "unexpected merge: %d results added, then %d\n", mr.totals.results_added,
                   again.totals.results_added);
  }
  std::printf("qbench_bench_cluster: %zu cells (%d seeds x 2 archs x (fp32 + 2 algorithms x %d widths)), %d repeats, median\n",
              n_cells, seeds, bits, repeats);
  std::printf("  plan (parse, expand, write plan.json and the matrix copy, parse the copy again): %.3f s\n", median(t_plan));
  std::printf("  submit to a fake sbatch (--test-only check + 2 arrays, bash script on PATH):   %.3f s\n", median(t_submit));
  std::printf("  plan + submit:                                                                   %.3f s  (target < 1 s)\n",
              median(t_plan) + median(t_submit));
  std::printf("  status (%zu shards read, fake squeue listing %zu tasks):                          %.3f s  (target < 1 s)\n",
              n_cells, n_cells, median(t_status));
  std::printf("  merge of %zu shards into a new store, with the merged run:                        %.3f s  (target < 5 s)\n",
              n_cells, median(t_merge));
  std::printf("  merge again (nothing new):                                                       %.3f s\n", median(t_merge_again));
  if (!qbench.empty()) {
    // The CLI, as processes (the fake sbatch and squeue stay first on PATH).
    auto timed = [&](const std::string& cmd) {
      std::vector<double> t;
      for (int rep = 0; rep < repeats; ++rep) {
        fs::remove_all(dir / "cli_wd");
        fs::remove(dir / "cli.db");
        if (cmd.find(" status ") != std::string::npos || cmd.find(" merge ") != std::string::npos)
          fs::copy(dir / "wd0", dir / "cli_wd", fs::copy_options::recursive);
        const auto t0 = Clock::now();
        const int rc = std::system((cmd + " >/dev/null 2>" + (dir / "cli.err").string()).c_str());
        t.push_back(since(t0));
        if (rc != 0) std::fprintf(stderr, "'%s' failed (%d); see %s\n", cmd.c_str(), rc, (dir / "cli.err").c_str());
      }
      return median(t);
    };
    const std::string wd = (dir / "cli_wd").string();
    const double sub = timed(qbench + " submit " + (dir / "m.yaml").string() + " --backend slurm --workdir " + wd +
                             " --partition gpu --time 04:00:00 --array-parallelism 32 --data-root " + data_root);
    const double stat = timed(qbench + " status --workdir " + wd);
    const double mrg = timed(qbench + " merge " + wd + " --into " + (dir / "cli.db").string());
    const double idle = timed(qbench + " --version");
    std::printf("through the CLI (%s, processes, start-up included):\n", qbench.c_str());
    std::printf("  qbench --version (start-up alone):                                               %.3f s\n", idle);
    std::printf("  qbench submit (plan + fake sbatch, dataset files checked):                       %.3f s  (target < 1 s)\n", sub);
    std::printf("  qbench status:                                                                   %.3f s  (target < 1 s)\n", stat);
    std::printf("  qbench merge (300 shards, new store):                                            %.3f s  (target < 5 s)\n", mrg);
  }
  fs::remove_all(dir);
  return 0;
}
