#pragma once
// A quantized (or FP32) QuantModel as an ONNX file (opset 13) that a runtime executes: the model's
// data flow is traced once with LibTorch's JIT tracer, every conv/linear layer and residual add
// standing in the trace as one marker operator (qbench_export::layer / ::add), and the trace is
// written as ONNX with each fake quantizer of the simulation as a QuantizeLinear/DequantizeLinear
// pair at the same place, weights as int8 initializers behind DequantizeLinear and biases as
// int32 at s_in * s_w. See lib/export/README.md for the format's rules.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qbench/export/graph.h"
#include "qbench/quant/qmodules.h"

namespace qbench::exporter {

enum class Format {
  Qdq,       ///< QuantizeLinear/DequantizeLinear, int8/uint8, per-channel or per-tensor, any zero point
  Fp32,      ///< the float network (quantizers ignored; BN folded as the layers compute it)
  TensorRT,  ///< QDQ as TensorRT's explicit quantization takes it: symmetric int8, zero points 0
};
/// "qdq" | "fp32" | "tensorrt"; throws ConfigError for anything else.
Format parse_format(const std::string& s);
const char* format_name(Format f);

struct ExportOptions {
  Format format = Format::Qdq;
  std::vector<int64_t> sample_shape;  ///< C, H, W of one input (the dataset's item shape)
  std::string graph_name = "qbench";
  std::map<std::string, std::string> metadata;  ///< written as the model's metadata_props
};

/// Builds the graph (no file written). The model is put in eval mode; its quantizers must be
/// frozen (quantizing, not observing) and no deploy hooks installed (deploy::Lowered::restore()).
/// Throws ExportError naming the layer and the reason for what the format cannot express:
/// non-affine quantizers (APoT weights, DSQ, DoReFa's tanh weights), more than 8 bits, per-channel
/// activations, an asymmetric or unsigned grid or a sub-8-bit grid under `tensorrt`, and aten
/// operators the exporter has no ONNX form for.
XGraph build_graph(quant::QuantModel& model, const ExportOptions& options);

/// Serializes `g`, runs the ONNX checker and shape inference (libonnx 1.12, strict) on the
/// result and writes it atomically to `path`. Throws ExportError when the checker or shape
/// inference rejects the graph (a bug, reported with libonnx's message).
void write_onnx(const XGraph& g, const std::string& path, const std::map<std::string, std::string>& metadata = {});

/// build_graph + write_onnx; for `tensorrt` also writes `<path minus .onnx>.ranges.json`
/// ({tensor name: amax}, TensorRT's setDynamicRange values). Returns the graph.
XGraph export_onnx(quant::QuantModel& model, const std::string& path, const ExportOptions& options);

/// The {tensor: amax} JSON for TensorRT (every quantized activation and weight tensor).
std::string tensorrt_ranges_json(const XGraph& g);

/// Operators of an ONNX file by kind, as a runtime's optimized graph holds them: the convs and
/// matmuls that run as integer kernels (QLinearConv, QGemm, QLinearMatMul, ConvInteger,
/// MatMulInteger, MatMulIntegerToFloat, DynamicQuantizeMatMul) against those left in float (Conv,
/// FusedConv, Gemm, FusedGemm, MatMul, FusedMatMul, NCHWc Conv), and every op type's count.
struct OpCensus {
  int int8_compute = 0, float_compute = 0;
  std::map<std::string, int> ops;  ///< "QLinearConv": 19, "com.microsoft.FusedConv": 2, ...
  double int8_coverage() const {
    const int n = int8_compute + float_compute;
    return n ? 100.0 * int8_compute / n : 0.0;
  }
};
OpCensus census(const std::string& onnx_path);

}  // namespace qbench::exporter
