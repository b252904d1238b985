#pragma once
// A quantized cell's final state, saved with the cell under the cache
// (`<cache>/cells/<cell key>/state.safetensors`) so that export and deployment can happen later,
// on another machine, from the cell's key alone: the model's weights as the algorithm left them
// (AdaRound's baked rounding, QAT's trained weights, BN partners), the BN-fold strategy, and every
// fake quantizer's site, scheme, scale, zero point and integer range. Restoring it into a freshly
// built model of the same architecture gives the simulated model back with fixed quantizers.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qbench/models/safetensors.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/quant/qmodules.h"

namespace qbench::exporter {

/// One fake quantizer of the cell.
struct QuantizerRecord {
  std::string site;          ///< "layer1.0.conv1:weight", "layer1.0.conv1:input", "layer1.0.add:in0|in1|out"
  quant::QuantScheme scheme;
  std::string describe;      ///< the quantizer's own description (method, bits, learned values)
  /// The affine grid it computes, when it is one: nullopt for non-uniform quantizers (APoT
  /// weights, DSQ, DoReFa's tanh weights) and for those whose grid has no integer zero point
  /// (LSQ+'s continuous offset); `why_not` then says why.
  std::optional<quant::QParams> qparams;
  std::string why_not;
};

struct CellState {
  std::map<std::string, std::string> meta;  ///< cell_key, arch, algorithm, profile, bits, sample shape, ...
  int bn_fold = -1;
  std::vector<std::string> bias_int32_layers;  ///< layers whose bias is rounded to s_in * s_w (profile bias: int32)
  models::NamedTensors weights;             ///< the model's state dict (quantizers excluded)
  std::vector<QuantizerRecord> quantizers;  ///< in QuantModel::quant_layers / adds order

  /// The records that are not affine, as "site: why" lines (empty: every quantizer exports).
  std::vector<std::string> not_affine() const;
};

/// `<cache_dir>/cells/<cell_key>/state.safetensors`.
std::string cell_state_path(const std::string& cache_dir, const std::string& cell_key);

/// Reads the model's state and every attached quantizer (eval mode, no gradients). Each affine
/// quantizer is checked against the fixed quantizer its qparams describe, on its weight or on a
/// probe spanning its range: one that computes something else (LSQ+'s offset between integers) is
/// recorded without qparams, with the largest difference in steps.
CellState capture_cell_state(quant::QuantModel& model, int bn_fold, std::map<std::string, std::string> meta);

/// Written atomically as safetensors: weights under "model/<name>", quantizer parameters under
/// "quant/<site>/scale|zero_point", everything else as JSON in the `__metadata__` key
/// "qbench_cell_state".
void save_cell_state(const std::string& path, const CellState& state);

/// Reads and verifies a saved state. Throws DataError naming the file for a missing, damaged or
/// foreign file.
CellState load_cell_state(const std::string& path);

/// Into a model freshly built for the same architecture and input: the BN-fold strategy, the
/// weights (strict names and shapes), then a fixed affine quantizer at every recorded site, in
/// quantizing mode. Throws ExportError naming the site when a quantizer is not affine, and
/// DataError when the weights do not fit the model.
void restore_cell_state(quant::QuantModel& model, const CellState& state);

}  // namespace qbench::exporter
