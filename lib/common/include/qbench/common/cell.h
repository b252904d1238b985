#pragma once
// What kind of cell a row is and how it ended: typed in the code, spelled once here for the store,
// the reports and the matrix's resolved configuration ("fp32", "ptq", "qat"; "ok", "failed",
// "pending").
#include <optional>
#include <string>

namespace qbench {

/// The FP32 baseline, a post-training method, or quantization-aware training.
enum class CellKind { Fp32, Ptq, Qat };
/// ok: finished with metrics; failed: recorded with its error; pending: planned, not finished.
enum class CellStatus { Ok, Failed, Pending };

const char* to_string(CellKind k);
const char* to_string(CellStatus s);
/// The kind spelled `text`, or nothing.
std::optional<CellKind> parse_cell_kind(const std::string& text);
std::optional<CellStatus> parse_cell_status(const std::string& text);

}  // namespace qbench
