#pragma once
// Renders a run from the store as markdown, HTML, LaTeX, CSV or JSON. Torch-free.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qbench/store/store.h"

namespace qbench::report {

struct ReportInput {
  store::RunInfo run;
  std::vector<store::ReportRow> rows;
  /// Result id -> its `deploy_layers` detail rows, for deployed cells (load_input fills it; may be
  /// empty, and then the report has no deploy-layers table).
  std::map<int64_t, CellDetails> deploy_layers;
  /// Result id -> its `deploy_engines` detail rows (one per engine the cell ran on, or a "not
  /// deployed: ..." row where an engine refused it), for quantized cells (load_input fills it; may
  /// be empty, and then the engines table says so).
  std::map<int64_t, CellDetails> deploy_engines;
  /// Result id -> its `model_cost` detail row (size, BOPs, average widths of an ok quantized
  /// cell), and for mixed-precision cells their `bit_allocation` rows (load_input fills both).
  std::map<int64_t, CellDetails> model_cost, bit_allocation;
  /// Result id -> its `noise` detail row (a cell evaluated under a deployment noise, issue 20:
  /// top-1, the reference top-1, the flips), for the noise table (load_input fills it).
  std::map<int64_t, CellDetails> noise;
};

/// `--filter key=value`: keeps the cells whose axis `key` equals `value`. Filters on one key are
/// alternatives (OR); filters on different keys must all hold (AND).
struct Filter {
  std::string key;
  std::string value;
};

struct ReportOptions {
  /// Extra axes that split every table into one table per value (e.g. {"arch"}, {"seed"} for one
  /// table per seed instead of mean ± std over seeds). Valid names: axis_names().
  std::vector<std::string> group_by;
  std::vector<Filter> filters;
  /// Only these tables (ids from table_ids()); empty = all. CSV renders the rows without it, and
  /// exactly one table with it (its group axes as the first columns).
  std::vector<std::string> tables;
  /// HTML only: false writes a placeholder comment instead of each vendored charting library
  /// (for golden files and reviewing diffs); the page then draws no charts.
  bool html_inline_libraries = true;
};

/// The axes that --filter and --group-by accept: dataset, arch, algorithm, profile, bits, seed,
/// kind, status.
const std::vector<std::string>& axis_names();
/// "key=value" -> Filter; throws ConfigError naming the valid keys (with a "did you mean").
Filter parse_filter(const std::string& text);
/// Checks --group-by names; throws ConfigError with the valid names otherwise.
void check_group_by(const std::vector<std::string>& axes);
/// One table of the report: the id --table accepts and a line saying what it shows.
struct TableInfo {
  std::string id;
  std::string help;
};
/// Every table, in report order: the entries of the table registry (src/tables/, one file each).
const std::vector<TableInfo>& tables();
/// The table ids --table accepts, in report order (tables()' ids).
const std::vector<std::string>& table_ids();
/// One line per table, "  id  help", for --table's help.
std::string table_help();
/// Checks --table ids; throws ConfigError with the valid ids otherwise.
void check_tables(const std::vector<std::string>& ids);

using Renderer = std::string (*)(const ReportInput&, const ReportOptions&);
/// One output format: its name, other accepted spellings, a line for --help, the renderer.
struct FormatInfo {
  std::string name;
  std::vector<std::string> aliases;
  std::string description;
  Renderer render;
};
/// Every format, in the order --help lists them (markdown, html, latex, csv, json): the entries
/// of the format registry (src/formats/, one file each).
const std::vector<FormatInfo>& formats();
/// The format called `name` (case-insensitive, aliases included); throws ConfigError naming the
/// valid ones otherwise.
const FormatInfo& find_format(const std::string& name);
/// find_format(format).render(in, opt).
std::string render(const std::string& format, const ReportInput& in, const ReportOptions& opt = {});

/// Markdown: the provenance, then per group the academic track (rows arch x algorithm, columns
/// FP32 and the bit widths, "top-1 (delta vs FP32)", mean ± std over seeds with n), the hardware
/// track (columns profile; when the run has more than one), latency with its source,
/// sim-vs-deploy agreement with its engine (where measured), each deployed cell on every engine
/// it ran on, cost (wall time per cell, by kind) and the failures
/// with their errors.
std::string render_markdown(const ReportInput& in, const ReportOptions& opt = {});
/// The same tables as one self-contained HTML page (works offline), with Vega-Lite charts:
/// accuracy vs bit width per algorithm, accuracy vs latency per profile (Pareto front marked),
/// simulated vs deployed accuracy.
std::string render_html(const ReportInput& in, const ReportOptions& opt = {});
/// The same tables as a standalone LaTeX document (booktabs); compiles with pdflatex.
std::string render_latex(const ReportInput& in, const ReportOptions& opt = {});
/// CSV: one line per planned cell (after --filter), the JSON row fields as header; with one
/// --table, that table's cells instead (one line per table row, its group axes first).
std::string render_csv(const ReportInput& in, const ReportOptions& opt = {});
/// JSON: {"schema_version": 2, "run": {...}, "filters": ..., "group_by": ..., "rows": [...],
/// "tables": [{"id", "title", "group", "columns", "rows", "values", "notes"}]}.
std::string render_json(const ReportInput& in, const ReportOptions& opt = {});

/// One planned cell with its axes resolved the way the report resolves them (from its result, or
/// for a pending cell from its configuration), for components that work per cell (compare).
struct CellView {
  std::string cell_key;
  std::string dataset, arch, algorithm, profile, bits, kind;
  std::optional<uint64_t> seed;
  std::string status;  ///< ok | failed | pending
  std::string error;
  std::optional<double> top1, fp32_top1, deploy_top1;
};
std::vector<CellView> cell_views(const ReportInput& in);

/// The run `run_id` (the latest run when empty) and its rows, read from `store`. Throws
/// ConfigError when the store has no such run.
ReportInput load_input(const store::Store& store, std::optional<int64_t> run_id = std::nullopt);
/// "latest" or a run id -> the run id to read (nullopt for latest); throws ConfigError otherwise.
std::optional<int64_t> parse_run_id(const std::string& text);
/// "fp32" for 32/32, else "w{w}a{a}" (e.g. "w4a4").
std::string bits_label(int w_bits, int a_bits);

}  // namespace qbench::report
