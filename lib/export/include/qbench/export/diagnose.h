#pragma once
// Where ONNX Runtime departs from the simulation, layer by layer. Exposing intermediate tensors as
// graph outputs changes what the runtime fuses, so this runs a second, diagnostic copy of the
// exported graph (labelled as such); the deployed numbers always come from the unmodified file.
#include <ATen/core/Tensor.h>

#include <string>

#include "qbench/common/detail.h"
#include "qbench/export/graph.h"
#include "qbench/quant/qmodules.h"

namespace qbench::exporter {

/// Writes `graph` with every layer's output (before its activation) as an extra graph output to
/// `diagnostic_path`, runs `batch` through it in ONNX Runtime and through `model` (whose layers'
/// output taps capture the same tensors), and returns one "ort_layers" row per layer in execution
/// order: sqnr_db, max_abs_err, rel_err (max_abs_err / max |simulated|) and mismatch_pct (share of
/// elements off by more than 1e-4 of the layer's largest magnitude). `graph` must have been built
/// from `model` as it is now (eval mode, same quantizers).
CellDetails diagnose_layers(quant::QuantModel& model, const XGraph& graph, const std::string& diagnostic_path,
                            const at::Tensor& batch, int threads);

}  // namespace qbench::exporter
