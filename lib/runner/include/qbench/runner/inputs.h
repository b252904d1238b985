#pragma once
// Input validation before any work: every file the cells of a run will read is checked once,
// structurally and in milliseconds, before the store is opened; a problem is a usage error
// (ConfigError, exit 2) naming the file, what is wrong and the option that points there.
#include <string>
#include <vector>

#include "qbench/config/matrix.h"
#include "qbench/runner/runner.h"

namespace qbench::runner {

struct InputsChecked {
  std::vector<std::string> splits;   ///< "test", and "train" when a cell may read it
  std::vector<std::string> files;    ///< every dataset file checked
  std::vector<std::string> weights;  ///< every imported weights file checked
  double seconds = 0;
};

/// Checks what `cells` will read, before anything is run or written:
///  - the dataset root (opt.data_root, else dataset.root, else the dataset's default location)
///    exists, and every split the cells need passes data::validate_dataset: the test split always;
///    the training split when a cell may train a baseline (an arch without imported weights: a
///    cached checkpoint can turn out damaged and be rebuilt), calibrates PTQ on data, or
///    fine-tunes QAT;
///  - every imported weights file (architectures: {arch: {weights: FILE}}) of an arch the cells
///    use reads as safetensors (models::read_safetensors: header, offsets, lengths, and its
///    content hash when it carries one) and fits the architecture built for this dataset (names,
///    shapes, dtypes: models::import_weights into a throwaway model).
/// Throws ConfigError naming the file and what is wrong, led by the option that points there:
/// `--data-root DIR: ...`, `MATRIX:LINE:COL: dataset.root: ...` (or the `sizes.<size>` entry that
/// set it), `MATRIX:LINE:COL: dataset: ... default location ...`, or
/// `MATRIX:LINE:COL: architectures.<arch>.weights: ...`.
InputsChecked validate_inputs(const config::Matrix& m, const std::vector<config::Cell>& cells, const RunOptions& opt);

}  // namespace qbench::runner
