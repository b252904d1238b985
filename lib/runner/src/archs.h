#pragma once
// The network of a cell's architecture (internal to the runner): a zoo model from lib/models, or
// the graph of an ONNX file the matrix names (`architectures: {mynet: {onnx: FILE, train: BOOL}}`),
// imported for the dataset's item shape and checked against its class count.
#include <memory>
#include <string>

#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/onnx/import.h"
#include "qbench/quant/qmodules.h"

namespace qbench::runner::detail {

/// Imports the ONNX architecture `arch` of `m` for one sample of `shape` (C, H, W) and `classes`
/// outputs, and builds it once to probe that the executor runs it. Throws ConfigError located at
/// the matrix entry (`FILE:LINE:COL: architectures.<arch>.onnx: mynet.onnx: ...`): the importer's
/// refusals, an input shape or class count that does not match the dataset (both shapes named),
/// a graph that ends in Softmax (qbench trains and evaluates logits).
onnx::ImportedGraph import_onnx_arch(const config::Matrix& m, const std::string& arch, const data::ItemShape& shape,
                                     int64_t classes);

/// True when the architecture's FP32 model comes from a file (imported weights, or an ONNX file
/// with train: false) rather than from training.
bool weights_from_file(const config::Matrix& m, const std::string& arch);

/// A fresh network for `arch`, weights from torch's global generator (seed it first) or, for an
/// ONNX architecture with train: false, the file's own. `graph` is the imported graph of an ONNX
/// architecture (import_onnx_arch), null for the zoo's.
std::shared_ptr<quant::QuantModel> build_arch(const config::Matrix& m, const std::string& arch,
                                              const data::ItemShape& shape, int64_t classes,
                                              const onnx::ImportedGraph* graph);

}  // namespace qbench::runner::detail
