#include "qbench/common/cell.h"

namespace qbench {

const char* to_string(CellKind k) {
  switch (k) {
    case CellKind::Fp32: return "fp32";
    case CellKind::Ptq: return "ptq";
    case CellKind::Qat: return "qat";
  }
  return "?";
}

const char* to_string(CellStatus s) {
  switch (s) {
    case CellStatus::Ok: return "ok";
    case CellStatus::Failed: return "failed";
    case CellStatus::Pending: return "pending";
  }
  return "?";
}

std::optional<CellKind> parse_cell_kind(const std::string& text) {
  for (CellKind k : {CellKind::Fp32, CellKind::Ptq, CellKind::Qat})
    if (text == to_string(k)) return k;
  return std::nullopt;
}

std::optional<CellStatus> parse_cell_status(const std::string& text) {
  for (CellStatus s : {CellStatus::Ok, CellStatus::Failed, CellStatus::Pending})
    if (text == to_string(s)) return s;
  return std::nullopt;
}

}  // namespace qbench
