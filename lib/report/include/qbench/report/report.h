#pragma once
// Renders a run from the store as markdown, CSV or JSON. Torch-free.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qbench/store/store.h"

namespace qbench::report {

enum class Format { Markdown, Csv, Json };
/// "markdown"|"md", "csv", "json"; throws ConfigError with the valid names otherwise.
Format parse_format(const std::string& name);

struct ReportInput {
  store::RunInfo run;
  std::vector<store::ReportRow> rows;
};

/// Markdown: provenance header, then per (dataset, profile) a pivot table with rows arch x
/// algorithm and columns bit widths ("top-1 (delta vs FP32)"), a latency table, then failed
/// cells with their errors.
std::string render_markdown(const ReportInput& in);
/// CSV: one line per planned cell with the documented JSON field names as header.
std::string render_csv(const ReportInput& in);
/// JSON: {"run": {...}, "rows": [{run_id, cell_key, dataset, arch, algorithm, profile, w_bits,
/// a_bits, seed, kind, status, top1, top5, loss, fp32_top1, latency_ms_p50, latency_ms_p90,
/// latency_batch, latency_source, quant_wall_s, eval_wall_s, wall_s, error, ...}, ...]}
std::string render_json(const ReportInput& in);
std::string render(Format f, const ReportInput& in);

/// The run `run_id` (the latest run when empty) and its rows, read from `store`. Throws
/// ConfigError when the store has no such run.
ReportInput load_input(const store::Store& store, std::optional<int64_t> run_id = std::nullopt);
/// "fp32" for 32/32, else "w{w}a{a}" (e.g. "w4a4").
std::string bits_label(int w_bits, int a_bits);

}  // namespace qbench::report
