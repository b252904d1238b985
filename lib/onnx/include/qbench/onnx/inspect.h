#pragma once
// `qbench inspect FILE.onnx [--profile P]`: what the importer made of a file.
#include <string>

#include "qbench/onnx/import.h"
#include "qbench/quant/profile.h"

namespace qbench::onnx {

/// A plain-text report: the file (opset, producer, input shape, nodes run and folded); every plan
/// step with its ONNX op(s), node, per-sample output shape, parameters and MACs; the quantizable
/// layers with BN partner, fused activation, block and first/last marks; with a profile, where
/// attach_quantizers puts weight and activation quantizers (at w8a8, the profile's first/last
/// rule applied) and on which add operands/outputs; the reconstruction units (BRECQ/QDrop blocks,
/// AdaRound/BRECQ single layers). Builds the model with the file's weights (make_model).
std::string inspect(const ImportedGraph& g, const quant::Profile* profile = nullptr);

}  // namespace qbench::onnx
