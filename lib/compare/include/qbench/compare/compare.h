#pragma once
// Regression tracking: a small, reviewable JSON baseline written from a run, and the comparison
// of a later run against it (what `qbench compare` prints and its exit code). Torch-free.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qbench/report/report.h"

namespace qbench::compare {

/// One expected cell. `cell` is its readable identity,
/// "dataset/arch/algorithm/profile/bits/seedN" (e.g.
/// "fashion-mnist/resnet8-w0.5/minmax/academic/w8a8/seed0"), which is what runs are matched on:
/// a recipe change that changes the cell key is still compared (and noted).
struct BaselineCell {
  std::string cell;
  std::string key;                  ///< the cell key's first 12 hex digits when written
  double top1 = 0;                  ///< percent
  std::optional<double> tolerance;  ///< overrides the file's default, in points of top-1
};

struct Baseline {
  std::string matrix;       ///< the matrix name of the run it was written from
  std::string source_run;   ///< "run 3, git abc123, host h, 2026-11-23T10:00:00.000Z"
  double tolerance = 1.0;   ///< default allowed drop of top-1, in points
  /// What of the run's environment can move a cell's top-1 without any commit (libtorch, the
  /// loaded BLAS, the CPU's vector ISA, a oneDNN ISA cap, the CPU): compare warns when the
  /// current run's differs. Optional in the file (older baselines have none).
  std::map<std::string, std::string> environment;
  std::vector<BaselineCell> cells;
};

/// The entries of a run's environment_json that Baseline::environment records.
std::map<std::string, std::string> numeric_environment(const std::string& environment_json);

/// "dataset/arch/algorithm/profile/bits/seedN" for a cell.
std::string cell_identity(const report::CellView& c);

/// A baseline from a run's cells. Every planned cell must have finished ok, unless
/// `allow_incomplete` (then failed and pending cells are left out); throws ConfigError naming
/// them otherwise. Per-cell tolerances (and the default, when `tolerance` is empty) carry over
/// from `previous` when given, matched by identity, so refreshing the numbers keeps reviewed
/// tolerances.
Baseline baseline_from_run(const report::ReportInput& run, std::optional<double> tolerance, bool allow_incomplete,
                           const Baseline* previous = nullptr);
/// The file's text: sorted keys at the top, one line per cell, so a diff shows one line per
/// changed cell.
std::string to_json(const Baseline& b);
/// Parses and validates a baseline; every error names `file` and the key path
/// ("nightly.json: cells[2].top1: expected a number, got \"x\"") and throws ConfigError.
Baseline parse_baseline(const std::string& text, const std::string& file);
/// Reads `path` and parses it; ConfigError when it cannot be read.
Baseline load_baseline(const std::string& path);

enum class Verdict { Ok, Improved, Regressed, Failed, Missing, New };
/// "ok", "improved", "REGRESSED", "FAILED", "MISSING", "new".
const char* verdict_name(Verdict v);

struct CellComparison {
  std::string cell;
  Verdict verdict = Verdict::Ok;
  std::optional<double> baseline, current, tolerance;
  std::string note;  ///< the error of a failed cell, why a cell is missing, a changed key...
};

struct Comparison {
  std::string baseline_file;
  std::string baseline_source;  ///< Baseline::source_run
  std::string current_run;      ///< "run 7 (nightly), git abc123"
  /// Set when the baseline was written from another matrix than the run's (usually the wrong
  /// --db or --baseline); shown above the table.
  std::string warning;
  std::vector<CellComparison> cells;  ///< baseline order, then cells new in the run
  int count(Verdict v) const;
  /// No cell regressed, failed or is missing.
  bool passed() const;
};

/// Matches the run's cells to the baseline's by identity. A cell regresses when its top-1 is
/// more than its tolerance below the baseline; a failed cell fails; a baseline cell the run did
/// not finish (absent or pending) is missing; cells the baseline does not know are new (not a
/// failure). An improvement beyond the tolerance is reported, not failed.
Comparison compare_run(const Baseline& baseline, const std::string& baseline_file, const report::ReportInput& run);

/// A fixed-width table, one line per cell, then a summary line ending in PASS or FAIL.
std::string render_text(const Comparison& c);
/// The same as JSON: {"passed", "counts", "cells": [...]}.
std::string render_json(const Comparison& c);

}  // namespace qbench::compare
