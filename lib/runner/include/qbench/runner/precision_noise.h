#pragma once
// The SysNoise precision noises (issue 20) on a built model: every conv/linear layer runs in
// reduced precision through its deploy hook (QuantLayer::set_deploy), so the FP32 and the
// fake-quant models of any cell take them alike and nothing else in the model changes.
#include "qbench/quant/qmodules.h"

namespace qbench::runner {

enum class ReducedPrecision {
  /// bfloat16: each conv/linear runs natively in bfloat16 (LibTorch's CPU kernels, float
  /// accumulation), its output rounded to bfloat16.
  kBf16,
  /// IEEE half, emulated (LibTorch 1.13 has no half conv on the CPU): each conv/linear layer's
  /// input, weight, bias and output rounded to half at the layer boundary, float32 inside.
  kFp16Emulated,
};

/// Sets every conv/linear layer of `model` to run in `precision`. Per layer: the input is rounded
/// (then fake-quantized when the layer has an input quantizer), the weight and bias are those the
/// layer uses at inference (BN folded when its strategy folds; fake-quantized when it has a weight
/// quantizer) rounded, the conv or linear runs (bf16 natively, fp16 in float on rounded operands),
/// an unfolded BatchNorm and the activation run in float on the rounded result, and the output is
/// rounded again. Pooling, adds and the rest see only rounded values. A profile's int32 bias
/// rounding is not applied on this path. Undo with clear_reduced_precision.
void set_reduced_precision(quant::QuantModel& model, ReducedPrecision precision);
void clear_reduced_precision(quant::QuantModel& model);

/// `x` with every element rounded to the nearest `precision` value (ties to even), as float32.
at::Tensor round_to(const at::Tensor& x, ReducedPrecision precision);

}  // namespace qbench::runner
