#pragma once
// Per-cell detail rows: what a cell measured below the level of one number per row, e.g. the
// per-layer SQNR of an integer deployment ("deploy_layers") or each unit's final reconstruction
// loss ("recon_units"). Stored in the `cell_details` table beside the cell's result row. Torch-free.
#include <map>
#include <string>
#include <vector>

namespace qbench {

struct CellDetail {
  std::string section;  ///< what kind of detail: "deploy_layers", "recon_units", "calibration", ...
  std::string name;     ///< the item within the section, e.g. a module path "layer1.0.conv1"
  std::map<std::string, double> values;  ///< named measurements, e.g. {"sqnr_db": 31.2}
  std::string text;     ///< optional free text (a note on why, a setting)
};

using CellDetails = std::vector<CellDetail>;

}  // namespace qbench
