// qbench: the command line. It only parses arguments and dispatches to the components; the
// one place that catches every exception and maps it to an exit code:
//   0 success, 1 some cell failed, 2 usage or configuration error, 130 interrupted.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <c10/util/Exception.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "qbench/buildinfo.h"
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
    std::printf("%-4s %-12s %-5s %-14s %-10s %-6s %-10s %-6s %s\n", "#", "key", "kind", "arch", "algorithm", "bits",
                "profile", "seed", "state");
    int i = 0;
    for (const auto& c : cells) {
      const bool done = !a.opt.force && st && st->finished_result(c.key).has_value();
      std::printf("%-4d %-12s %-5s %-14s %-10s %-6s %-10s %-6llu %s\n", ++i, c.short_key().c_str(), qbench::to_string(c.kind),
                  c.arch.c_str(), c.algorithm.c_str(), c.bits.label().c_str(), c.profile.c_str(),
                  static_cast<unsigned long long>(c.seed), done ? "finished (skip)" : "to run");
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
