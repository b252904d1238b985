// qbench: the command line. It only parses arguments and dispatches to the components; the
// one place that catches every exception and maps it to an exit code:
//   0 success, 1 some cell failed, 2 usage or configuration error, 130 interrupted.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "qbench/buildinfo.h"
#include "qbench/cluster/cluster.h"
#include "qbench/common/errors.h"
#include "qbench/common/memory.h"
#include "qbench/common/progress.h"
#include "qbench/compare/compare.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/inspect.h"
#include "qbench/runner/export.h"
#include "qbench/quant/profile.h"
#include "qbench/config/matrix.h"
#include "qbench/report/report.h"
#include "qbench/runner/device.h"
#include "qbench/runner/inputs.h"
#include "qbench/runner/registries.h"
#include "qbench/runner/runner.h"
#include "qbench/store/store.h"

namespace {

std::string joined_args(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    if (i) s += ' ';
    s += argv[i];
  }
  return s;
}

struct RunArgs {
  std::string matrix;
  std::string size;
  qbench::runner::RunOptions opt;
  bool dry_run = false;
  bool progress = false, no_progress = false;
};

int cmd_run(RunArgs& a) {
  // A device that is not there is a usage error (exit 2) before anything is read or written.
  qbench::runner::select_device(a.opt.device);
  auto catalog = qbench::runner::build_catalog();
  auto m = qbench::config::load_matrix_file(a.matrix, catalog, a.size);
  auto cells = qbench::runner::select_cells(qbench::config::expand_cells(m, catalog), a.opt.cells);
  if (a.dry_run) {
    // The same input checks a run makes (every dataset split and weights file the cells read).
    qbench::runner::validate_inputs(m, cells, a.opt);
    std::unique_ptr<qbench::store::Store> st;
    if (std::filesystem::exists(a.opt.db_path)) st = std::make_unique<qbench::store::Store>(a.opt.db_path);
    std::printf("# %s%s: %zu cells (dataset %s)\n", m.name.c_str(), m.size.empty() ? "" : (" [size " + m.size + "]").c_str(),
                cells.size(), m.dataset.name.c_str());
    int bits_w = 6;  // a mixed budget's label is longer than w4a8
    for (const auto& c : cells) bits_w = std::max(bits_w, static_cast<int>(c.bits.label().size()));
    // The noise column only where the matrix has the axis (issue 20), so other listings keep their columns.
    int noise_w = 0;
    for (const auto& c : cells)
      if (c.has_noise()) noise_w = std::max(noise_w, static_cast<int>(c.noise.size()) + 1);
    if (noise_w) noise_w = std::max(noise_w, 6);
    std::printf("%-4s %-12s %-5s %-14s %-10s %-*s %-10s %-6s %-*s%s\n", "#", "key", "kind", "arch", "algorithm", bits_w, "bits",
                "profile", "seed", noise_w, noise_w ? "noise" : "", "state");
    int i = 0;
    for (const auto& c : cells) {
      const bool done = !a.opt.force && st && st->finished_result(c.key).has_value();
      std::printf("%-4d %-12s %-5s %-14s %-10s %-*s %-10s %-6llu %-*s%s\n", ++i, c.short_key().c_str(), qbench::to_string(c.kind),
                  c.arch.c_str(), c.algorithm.c_str(), bits_w, c.bits.label().c_str(), c.profile.c_str(),
                  static_cast<unsigned long long>(c.seed), noise_w, noise_w ? (c.has_noise() ? c.noise : "none").c_str() : "",
                  done ? "finished (skip)" : "to run");
    }
    return 0;
  }
  qbench::Progress::global().set_mode(a.no_progress ? qbench::Progress::Mode::Off
                                      : a.progress  ? qbench::Progress::Mode::On
                                                    : qbench::Progress::Mode::Auto);
  qbench::install_interrupt_handler();
  auto sum = qbench::runner::run_matrix(m, cells, a.opt);
  spdlog::info("run {}: {} planned, {} ran, {} skipped (already finished), {} failed{}", sum.run_id, sum.planned,
               sum.ran, sum.skipped, sum.failed, sum.interrupted ? ", INTERRUPTED" : "");
  if (sum.interrupted) return 130;
  return sum.failed ? 1 : 0;
}

struct ReportArgs {
  std::string db = "results/qbench.db";
  std::string run = "latest";
  std::string format = "markdown";
  std::string out;
  std::vector<std::string> filters;
  std::vector<std::string> group_by;
  std::vector<std::string> tables;
};

void write_output(const std::string& text, const std::string& out) {
  if (out.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  std::ofstream f(out, std::ios::binary);
  if (!f) throw qbench::ConfigError("--out: cannot write " + out);
  f << text;
  if (!f.flush()) throw qbench::ConfigError("--out: cannot write " + out);
}

/// Opens an existing store for reading; a missing file is a usage error, not a new empty store.
std::unique_ptr<qbench::store::Store> open_existing_store(const std::string& db) {
  if (!std::filesystem::exists(db)) throw qbench::ConfigError(db + ": no results store here (run `qbench run` first or pass --db)");
  return std::make_unique<qbench::store::Store>(db);
}

int cmd_report(const ReportArgs& a) {
  const auto& fmt = qbench::report::find_format(a.format);
  qbench::report::ReportOptions opt;
  for (const auto& f : a.filters) opt.filters.push_back(qbench::report::parse_filter(f));
  opt.group_by = a.group_by;
  opt.tables = a.tables;
  qbench::report::check_group_by(opt.group_by);
  qbench::report::check_tables(opt.tables);
  const auto run_id = qbench::report::parse_run_id(a.run);
  auto st = open_existing_store(a.db);
  write_output(fmt.render(qbench::report::load_input(*st, run_id), opt), a.out);
  return 0;
}

struct CompareArgs {
  std::string db = "results/qbench.db";
  std::string run = "latest";
  std::string baseline;
  std::string format = "text";
  std::string out;
  double tolerance = -1;  // baseline write: < 0 keeps the existing file's (else 1.0)
  bool allow_incomplete = false;
};

/// Exit 1 when a cell regressed, failed or is missing; 0 otherwise.
int cmd_compare(const CompareArgs& a) {
  if (a.format != "text" && a.format != "json")
    throw qbench::ConfigError("--format: expected text or json, got '" + a.format + "'");
  const auto baseline = qbench::compare::load_baseline(a.baseline);
  const auto run_id = qbench::report::parse_run_id(a.run);
  auto st = open_existing_store(a.db);
  const auto c = qbench::compare::compare_run(baseline, a.baseline, qbench::report::load_input(*st, run_id));
  write_output(a.format == "json" ? qbench::compare::render_json(c) : qbench::compare::render_text(c), a.out);
  return c.passed() ? 0 : 1;
}

int cmd_baseline_write(const CompareArgs& a) {
  const auto run_id = qbench::report::parse_run_id(a.run);
  auto st = open_existing_store(a.db);
  std::optional<qbench::compare::Baseline> previous;
  if (std::filesystem::exists(a.out)) previous = qbench::compare::load_baseline(a.out);
  std::optional<double> tolerance;
  if (a.tolerance >= 0) tolerance = a.tolerance;
  else if (!previous) tolerance = 1.0;
  const auto b = qbench::compare::baseline_from_run(qbench::report::load_input(*st, run_id), tolerance, a.allow_incomplete,
                                                    previous ? &*previous : nullptr);
  write_output(qbench::compare::to_json(b), a.out);
  spdlog::info("wrote {} cells to {} (default tolerance {:.2f} points{})", b.cells.size(), a.out, b.tolerance,
               previous ? ", per-cell tolerances kept from the previous file" : "");
  return 0;
}

struct InspectArgs {
  std::string file;
  std::string profile;
  std::string input;  ///< C,H,W for dynamic dimensions
};

/// `qbench inspect FILE.onnx`: what the importer makes of a file (every offending node when it
/// cannot use it: exit 2).
int cmd_inspect(const InspectArgs& a) {
  qbench::onnx::ImportOptions opt;
  if (!a.input.empty()) {
    std::string part;
    std::istringstream in(a.input);
    while (std::getline(in, part, a.input.find('x') != std::string::npos ? 'x' : ',')) {
      try {
        opt.input_shape.push_back(std::stoll(part));
      } catch (const std::exception&) {
        throw qbench::ConfigError("--input " + a.input + ": expected C,H,W such as 1,28,28");
      }
    }
    if (opt.input_shape.empty()) throw qbench::ConfigError("--input " + a.input + ": expected C,H,W such as 1,28,28");
  }
  const qbench::quant::Profile* profile = nullptr;
  if (!a.profile.empty()) {
    qbench::runner::ensure_registered();
    profile = &qbench::quant::profile_registry().get(a.profile);
  }
  const std::string text = qbench::onnx::inspect(qbench::onnx::import_file(a.file, opt), profile);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

/// `qbench export`: a finished cell as an ONNX file (qdq, fp32 or tensorrt), from its key alone.
int cmd_export(const qbench::runner::ExportCellOptions& o) {
  const auto s = qbench::runner::export_cell(o);
  std::printf("exported %s (%s) as %s: %s, %d nodes, %d quantizers\n", s.cell_key.substr(0, 12).c_str(),
              s.label.c_str(), s.format.c_str(), s.path.c_str(), s.nodes, s.quantizers);
  if (!s.ranges_path.empty()) std::printf("dynamic ranges: %s\n", s.ranges_path.c_str());
  for (const auto& n : s.notes) std::printf("note: %s\n", n.c_str());
  return 0;
}

struct SubmitArgs {
  std::string matrix, workdir, size, data_root, cache_dir;
  int threads = 0;
  bool resume = false;
  std::string backend, partition, time, local_dir;
  int array_parallelism = 0, gpus_per_task = 0, jobs = 0;
  std::vector<std::string> sbatch_args;
  bool requeue = false;
  std::map<std::string, const CLI::Option*> opts;  // to tell what was given
  bool given(const std::string& name) const { return opts.at(name)->count() > 0; }
};

/// `qbench submit`: plans a matrix into a work directory (or resumes one) and submits its arrays.
int cmd_submit(const SubmitArgs& a) {
  qbench::cluster::SubmitOptions so;
  if (a.given("--backend")) so.backend = a.backend;
  if (a.given("--partition")) so.partition = a.partition;
  if (a.given("--time")) so.time = a.time;
  if (a.given("--array-parallelism")) so.array_parallelism = a.array_parallelism;
  if (a.given("--gpus-per-task")) so.gpus_per_task = a.gpus_per_task;
  if (a.given("--sbatch-arg")) so.sbatch_args = a.sbatch_args;
  if (a.given("--requeue")) so.requeue = a.requeue;
  if (a.given("--jobs")) so.jobs = a.jobs;
  if (a.given("--local-dir")) so.local_dir = a.local_dir;
  if (a.workdir.empty()) throw qbench::ConfigError("--workdir: required (the shared folder for the plan, the cache and the shards)");
  qbench::cluster::Plan plan;
  if (a.resume) {
    if (!a.matrix.empty()) throw qbench::ConfigError("--resume: takes no matrix file (the work directory's plan is resumed)");
    for (const char* fixed : {"--size", "--data-root", "--cache-dir", "--threads"})
      if (a.given(fixed)) throw qbench::ConfigError(std::string(fixed) + ": fixed by the plan when it was first submitted; not with --resume");
    plan = qbench::cluster::load_plan(a.workdir);
  } else {
    if (a.matrix.empty()) throw qbench::ConfigError("submit: needs a matrix file (or --workdir DIR --resume)");
    auto catalog = qbench::runner::build_catalog();
    auto m = qbench::config::load_matrix_file(a.matrix, catalog, a.size);
    auto cells = qbench::config::expand_cells(m, catalog);
    // The checks a run makes (every dataset split and weights file), here, before anything is written.
    qbench::runner::RunOptions ro;
    ro.data_root = a.data_root;
    qbench::runner::validate_inputs(m, cells, ro);
    qbench::cluster::check_submit_options(so, a.threads > 0 ? a.threads : m.threads);
    qbench::cluster::PlanOptions po;
    po.size = a.size;
    po.data_root = a.data_root;
    po.cache_dir = a.cache_dir;
    po.threads = a.threads;
    plan = qbench::cluster::create_plan(a.workdir, m, cells, catalog, po);
    spdlog::info("plan {} for {} ({} cells, {} baselines) written to {}", plan.id.substr(0, 8), plan.name,
                 plan.cells.size(), plan.baselines(), plan.workdir);
  }
  const auto res = qbench::cluster::submit(plan, so, a.resume);
  for (const auto& line : res.lines) std::printf("%s\n", line.c_str());
  return res.exit_code;
}

int cmd_status(const std::string& workdir) {
  const auto plan = qbench::cluster::load_plan(workdir);
  const std::string text = qbench::cluster::render_status(plan, qbench::cluster::collect_status(plan));
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

/// `qbench merge SOURCE... --into DB`: work directories (their shards and a merged run) or stores.
int cmd_merge(const std::vector<std::string>& sources, const std::string& into, const std::string& command_line) {
  const auto checked = qbench::cluster::check_merge_sources(sources, into);
  qbench::store::Store target(into);
  int bad = 0;
  for (const auto& src : checked) {
    if (src.plan) {
      const auto rep = qbench::cluster::merge_workdir(target, *src.plan, command_line);
      const std::string text = qbench::cluster::render_merge(*src.plan, rep);
      std::fwrite(text.data(), 1, text.size(), stdout);
      bad += static_cast<int>(rep.unreadable.size());
    } else {
      const auto st = target.merge_from(src.path);
      std::printf("merged %s: added %d run(s), %d result(s), %d plan row(s); %d run(s) and %d result(s) already there\n",
                  src.path.c_str(), st.runs_added, st.results_added, st.plan_rows_added + st.plan_rows_updated,
                  st.runs_present, st.results_present);
    }
  }
  return bad ? 1 : 0;
}

int cmd_list(const std::string& what, bool verbose) {
  std::vector<std::string> kinds = what.empty() ? qbench::runner::list_kinds() : std::vector<std::string>{what};
  for (const auto& k : kinds) {
    auto entries = qbench::runner::list_registry(k);
    std::printf("%s:\n", k.c_str());
    for (const auto& e : entries) {
      if (e.kind.empty())
        std::printf("  %-16s %s\n", e.name.c_str(), e.description.c_str());
      else
        std::printf("  %-16s %-5s %s\n", e.name.c_str(), e.kind.c_str(), e.description.c_str());
      if (verbose)
        for (const auto& d : e.details) std::printf("      %s\n", d.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  qbench::tune_allocator();  // before any tensor exists; recorded in each run's environment
  auto logger = spdlog::stderr_color_mt("qbench");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");

  CLI::App app{"qbench: a benchmark harness for neural-network quantization"};
  app.set_version_flag("--version", std::string("qbench ") + QBENCH_VERSION + " (git " + QBENCH_GIT_REV +
                                        ", LibTorch " + TORCH_VERSION + ")");
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logs and backtraces on stderr");
  app.require_subcommand(1);

  RunArgs ra;
  ra.opt.command_line = joined_args(argc, argv);
  auto* run = app.add_subcommand("run", "run an experiment matrix and record every cell in the store");
  run->add_option("matrix", ra.matrix, "matrix YAML file")->required();
  run->add_option("--size", ra.size, "apply this entry of the matrix's `sizes:` map (e.g. cpu)");
  run->add_option("--db", ra.opt.db_path, "results store (SQLite)")->capture_default_str();
  run->add_option("--cache-dir", ra.opt.cache_dir, "folder for cached FP32 baseline checkpoints")->capture_default_str();
  run->add_option("--data-root", ra.opt.data_root, "dataset folder (overrides dataset.root)");
  run->add_option("--threads", ra.opt.threads, "intra-op threads (default: pipeline.threads)")->check(CLI::Range(1, 256));
  run->add_option("--device", ra.opt.device, "where models run: cpu | cuda | cuda:N | auto (cuda when available)")
      ->capture_default_str();
  run->add_option("--cell", ra.opt.cells, "run only the cells whose key starts with this (repeatable)");
  run->add_flag("--force", ra.opt.force, "rerun cells already finished in the store");
  run->add_flag("--dry-run", ra.dry_run, "validate the matrix and print its cells; run nothing");
  run->add_flag("--progress", ra.progress, "show progress on stderr even when it is not a terminal");
  run->add_flag("--no-progress", ra.no_progress, "never show progress");

  ReportArgs rp;
  auto* rep = app.add_subcommand("report", "render a run from the store");
  rep->add_option("--db", rp.db, "results store")->capture_default_str();
  rep->add_option("--run", rp.run, "run id or 'latest'")->capture_default_str();
  std::string format_names;
  for (const auto& f : qbench::report::formats()) format_names += (format_names.empty() ? "" : " | ") + f.name;
  rep->add_option("--format", rp.format, format_names)->capture_default_str();
  rep->add_option("--out", rp.out, "write to this file instead of stdout");
  rep->add_option("--filter", rp.filters, "keep cells with KEY=VALUE (repeatable; dataset, arch, algorithm, profile, bits, seed, kind, status)");
  rep->add_option("--group-by", rp.group_by, "one table per value of these axes (comma-separated or repeated)")
      ->delimiter(',');
  rep->add_option("--table", rp.tables, "only these tables (csv: exactly one, instead of the rows):\n" + qbench::report::table_help())
      ->delimiter(',');

  CompareArgs ca;
  auto* cmp = app.add_subcommand("compare", "compare a run with a baseline file; exit 1 on a regressed, failed or missing cell");
  cmp->add_option("--baseline", ca.baseline, "baseline JSON (written by `qbench baseline write`)")->required();
  cmp->add_option("--db", ca.db, "results store")->capture_default_str();
  cmp->add_option("--run", ca.run, "run id or 'latest'")->capture_default_str();
  cmp->add_option("--format", ca.format, "text | json")->capture_default_str();
  cmp->add_option("--out", ca.out, "write to this file instead of stdout");

  CompareArgs ba;
  auto* base = app.add_subcommand("baseline", "manage regression baselines");
  base->require_subcommand(1);
  auto* base_write = base->add_subcommand("write", "write a baseline file from a finished run");
  base_write->add_option("--db", ba.db, "results store")->capture_default_str();
  base_write->add_option("--run", ba.run, "run id or 'latest'")->capture_default_str();
  base_write->add_option("--out", ba.out, "baseline file to write (its tolerances are kept if it exists)")->required();
  base_write->add_option("--tolerance", ba.tolerance, "default allowed drop of top-1 in points (default 1.0, or the existing file's)")
      ->check(CLI::NonNegativeNumber);
  base_write->add_flag("--allow-incomplete", ba.allow_incomplete, "leave out failed and pending cells instead of refusing");

  InspectArgs ia;
  auto* insp = app.add_subcommand("inspect", "show how an ONNX file imports: nodes, layers, BN partners, quantizers, blocks");
  insp->add_option("file", ia.file, "ONNX model file")->required();
  insp->add_option("--profile", ia.profile, "also where this profile puts the quantizers");
  insp->add_option("--input", ia.input, "C,H,W of one input sample, for files whose dimensions are dynamic");

  qbench::runner::ExportCellOptions ea;
  auto* exp = app.add_subcommand("export", "write a finished cell as an ONNX file (QDQ, FP32 or TensorRT's QDQ) from its key");
  exp->add_option("--db", ea.db_path, "results store");
  exp->add_option("--cache-dir", ea.cache_dir, "cache holding the cell's saved state (results/cache)");
  exp->add_option("--cell", ea.cell, "the cell's key prefix")->required();
  exp->add_option("--out", ea.out, "the .onnx file to write")->required();
  exp->add_option("--format", ea.format, "qdq (default) | fp32 | tensorrt (also writes <out>.ranges.json)");
  exp->add_option("--input", ea.input, "C,H,W for a baseline checkpoint that does not record its input shape");

  SubmitArgs sa;
  auto* sub = app.add_subcommand("submit", "plan a matrix into a work directory and run it as job arrays (Slurm or local processes)");
  sub->add_option("matrix", sa.matrix, "matrix YAML file (not with --resume)");
  sa.opts["--workdir"] = sub->add_option("--workdir", sa.workdir, "shared folder: plan, matrix copy, cache, shards, scripts, logs")->required();
  sa.opts["--resume"] = sub->add_flag("--resume", sa.resume, "submit the plan's cells that have no ok result and are not queued or running");
  sa.opts["--backend"] = sub->add_option("--backend", sa.backend, "local (default) | slurm");
  sa.opts["--jobs"] = sub->add_option("--jobs", sa.jobs, "local: tasks at once (default: cores / threads)")->check(CLI::Range(1, 1024));
  sa.opts["--partition"] = sub->add_option("--partition", sa.partition, "slurm: partition");
  sa.opts["--time"] = sub->add_option("--time", sa.time, "slurm: time limit per task (e.g. 04:00:00)");
  sa.opts["--array-parallelism"] = sub->add_option("--array-parallelism", sa.array_parallelism, "slurm: tasks of an array at once (--array=...%N)")
      ->check(CLI::Range(1, 100000));
  sa.opts["--gpus-per-task"] = sub->add_option("--gpus-per-task", sa.gpus_per_task, "slurm: --gres=gpu:N, and the cells run with --device cuda")
      ->check(CLI::Range(1, 64));
  sa.opts["--sbatch-arg"] = sub->add_option("--sbatch-arg", sa.sbatch_args, "slurm: one more #SBATCH option, e.g. --mem=8G (repeatable)")
      ->allow_extra_args(false);
  sa.opts["--requeue"] = sub->add_flag("--requeue", sa.requeue, "slurm: pass --requeue (preempted or failed-node tasks are requeued)");
  sa.opts["--local-dir"] = sub->add_option("--local-dir", sa.local_dir, "node-local folder for a task's shard until it is published ($TMPDIR or /tmp)");
  sa.opts["--size"] = sub->add_option("--size", sa.size, "apply this entry of the matrix's `sizes:` map");
  sa.opts["--data-root"] = sub->add_option("--data-root", sa.data_root, "dataset folder as the nodes see it (overrides dataset.root)");
  sa.opts["--cache-dir"] = sub->add_option("--cache-dir", sa.cache_dir, "shared baseline / QAT checkpoint cache (default <workdir>/cache)");
  sa.opts["--threads"] = sub->add_option("--threads", sa.threads, "intra-op threads = CPUs per task (default: pipeline.threads)")
      ->check(CLI::Range(1, 256));

  std::string status_workdir;
  auto* stat = app.add_subcommand("status", "cells of a submitted plan: done, failed (with errors), running (node, elapsed), pending, missing");
  stat->add_option("--workdir", status_workdir, "the work directory given to qbench submit")->required();

  std::vector<std::string> merge_sources;
  std::string merge_into;
  auto* mrg = app.add_subcommand("merge", "fold work directories' shards (or other stores) into one store, with a merged run per plan");
  mrg->add_option("sources", merge_sources, "work directories (qbench submit --workdir) or store files")->required();
  mrg->add_option("--into", merge_into, "the store to merge into (created when missing)")->required();

  qbench::cluster::TaskOptions ta;
  auto* task = app.add_subcommand("task", "one array task of a submitted plan (run by the generated sbatch scripts and the local backend)");
  task->group("");  // internal: not listed in --help
  task->add_option("--workdir", ta.workdir, "work directory")->required();
  task->add_option("--submission", ta.submission, "submission number")->required();
  task->add_option("--array", ta.array, "baselines | cells")->required();
  task->add_option("--index", ta.index, "the array task id")->required();

  std::string list_what;
  bool list_verbose = false;
  auto* list = app.add_subcommand("list", "show the registered algorithms, archs, datasets, profiles, observers");
  list->add_option("what", list_what, "algorithms | archs | datasets | profiles | observers");
  list->add_flag("--verbose", list_verbose, "also each algorithm's settings: range, default, the papers' value");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);

  try {
    if (*run) return cmd_run(ra);
    if (*rep) return cmd_report(rp);
    if (*cmp) return cmd_compare(ca);
    if (*base_write) return cmd_baseline_write(ba);
    if (*list) return cmd_list(list_what, list_verbose || verbose);
    if (*insp) return cmd_inspect(ia);
    if (*exp) return cmd_export(ea);
    if (*sub) return cmd_submit(sa);
    if (*stat) return cmd_status(status_workdir);
    if (*mrg) return cmd_merge(merge_sources, merge_into, joined_args(argc, argv));
    if (*task) return qbench::cluster::run_task(ta);
  } catch (const qbench::ConfigError& e) {
    qbench::Progress::global().clear();
    std::fprintf(stderr, "qbench: error: %s\n", e.what());
    return 2;
  } catch (const qbench::Error& e) {
    qbench::Progress::global().clear();
    std::fprintf(stderr, "qbench: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    qbench::Progress::global().clear();
    std::fprintf(stderr, "qbench: LibTorch error: %s\n", verbose ? e.what() : e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    qbench::Progress::global().clear();
    std::fprintf(stderr, "qbench: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
