// Report rendering at scale: fills an in-memory store with a run of 100,000 cells (10 archs x 10
// algorithms x 10 bit widths x 10 profiles x 10 seeds, plus their FP32 baselines; some failed,
// some with latency and deploy metrics), then times reading the run back and rendering it in
// every registered format. Target: under 2 s per format. Prints one line per format.
//   qbench_bench_report [--cells-per-axis N] (N^5 cells; default 10)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "qbench/common/strings.h"
#include "qbench/report/report.h"
#include "qbench/store/store.h"

using namespace qbench;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// A deterministic pseudo-random value in [0, 1) (SplitMix64), so every run renders the same data.
double unit(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<double>(x >> 11) / 9007199254740992.0;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--cells-per-axis") n = std::atoi(argv[i + 1]);
  if (n < 1 || n > 20) {
    std::fprintf(stderr, "--cells-per-axis: expected 1..20\n");
    return 2;
  }
  const int bits[] = {8, 7, 6, 5, 4, 3, 2, 8, 4, 2};
  const int abits[] = {8, 8, 8, 8, 4, 4, 4, 4, 8, 2};
  store::Store st(":memory:");
  store::RunInfo info;
  info.matrix_name = "bench-100k";
  info.git_rev = "bench";
  info.host = host_name();
  info.threads = 1;
  const int64_t run = st.begin_run(info);

  auto t0 = Clock::now();
  std::vector<store::CellResult> cells;
  for (int arch = 0; arch < n; ++arch)
    for (int seed = 0; seed < n; ++seed) {
      store::CellResult r;
      r.run_id = run;
      r.dataset = "fashion-mnist";
      r.arch = "arch" + std::to_string(arch);
      r.algorithm = "fp32";
      r.profile = "none";
      r.seed = seed;
      r.kind = "fp32";
      r.cell_key = sha256_hex(r.arch + "/fp32/" + std::to_string(seed));
      r.baseline_key = r.cell_key;
      r.status = "ok";
      r.top1 = 90.0 + 2.0 * unit(cells.size());
      r.wall_s = 60.0;
      r.latency_ms_p50 = 5.0 + arch;
      r.latency_ms_p90 = 5.5 + arch;
      r.latency_batch = 32;
      r.latency_source = "measured-fp32";
      cells.push_back(r);
    }
  for (int arch = 0; arch < n; ++arch)
    for (int alg = 0; alg < n; ++alg)
      for (int b = 0; b < n; ++b)
        for (int prof = 0; prof < n; ++prof)
          for (int seed = 0; seed < n; ++seed) {
            const uint64_t i = cells.size();
            store::CellResult r;
            r.run_id = run;
            r.dataset = "fashion-mnist";
            r.arch = "arch" + std::to_string(arch);
            r.algorithm = "alg" + std::to_string(alg);
            r.profile = "profile" + std::to_string(prof);
            r.w_bits = bits[b % 10] + (b / 10);
            r.a_bits = abits[b % 10];
            r.seed = seed;
            r.kind = alg < n / 2 ? "ptq" : "qat";
            r.cell_key = sha256_hex(r.arch + r.algorithm + r.profile + std::to_string(b) + "/" + std::to_string(seed));
            r.baseline_key = sha256_hex(r.arch + "/fp32/" + std::to_string(seed));
            if (unit(i * 7) < 0.01) {
              r.status = "failed";
              r.error = "NaN loss at epoch " + std::to_string(i % 5) + ", step " + std::to_string(i % 97);
            } else {
              r.status = "ok";
              r.top1 = 70.0 + 20.0 * unit(i);
              r.fp32_top1 = 91.0;
              r.latency_ms_p50 = 1.0 + 4.0 * unit(i * 3);
              r.latency_ms_p90 = *r.latency_ms_p50 * 1.1;
              r.latency_batch = 32;
              r.latency_source = prof % 2 ? "measured-int8" : "measured-fakequant";
              if (prof % 2) {
                r.deploy_top1 = *r.top1 - unit(i * 5);
                r.deploy_agreement = 95.0 + 5.0 * unit(i * 11);
                r.logit_cosine = 0.99;
                r.sqnr_db = 25.0;
              }
            }
            r.quant_wall_s = r.kind == "qat" ? 300.0 : 5.0;
            r.eval_wall_s = 2.0;
            r.wall_s = *r.quant_wall_s + 2.0;
            cells.push_back(r);
          }
  std::vector<store::PlannedCell> plan;
  plan.reserve(cells.size());
  for (std::size_t i = 0; i < cells.size(); ++i)
    plan.push_back({run, static_cast<int>(i), cells[i].cell_key, "pending", std::nullopt, ""});
  st.plan_cells(run, plan);
  for (const auto& c : cells) st.put_result(c);
  st.end_run(run, "finished");
  std::fprintf(stderr, "filled a store with %zu cells in %.1f s\n", cells.size(), seconds_since(t0));

  t0 = Clock::now();
  const auto in = report::load_input(st, run);
  const double load_s = seconds_since(t0);
  std::printf("%-10s %10s %14s  %s\n", "format", "seconds", "output bytes", "(target < 2 s per format)");
  std::printf("%-10s %10.3f %14s\n", "read run", load_s, "-");
  bool all_under = true;
  for (const auto& f : report::formats()) {
    t0 = Clock::now();
    const std::string out = f.render(in, {});
    const double s = seconds_since(t0);
    all_under = all_under && s < 2.0;
    std::printf("%-10s %10.3f %14zu\n", f.name.c_str(), s, out.size());
  }
  std::printf("%zu cells; every format under 2 s: %s\n", in.rows.size(), all_under ? "yes" : "NO");
  return 0;
}
