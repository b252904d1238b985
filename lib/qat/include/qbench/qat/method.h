#pragma once
// QAT methods: each pairs the paper's weight quantizer with its activation quantizer. The
// quantizers themselves are quant::FakeQuantizer subclasses with the paper's forward, gradients
// (custom autograd where the paper defines them), learnable parameters and initialisation, one
// file per paper under src/methods/ (their fused CPU loops under src/kernels/). A method is
// registered by a `qbench_qat_method(...)` line in lib/qat/CMakeLists.txt: the file defines
// `void register_<file name>(Registry<QatMethod>&)`.
#include <functional>
#include <memory>
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/quantizer.h"

namespace qbench::qat {

// The shared quantizer library's types these quantizers are built from.
using quant::FakeQuantizer;
using quant::QParams;
using quant::QRange;
using quant::QuantScheme;

struct QatMethod {
  std::string description;
  std::string paper;  ///< citation: authors, year, arXiv id
  /// Weight quantizer for a conv/linear weight; `scheme` comes from the profile with bits set.
  std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> make_weight;
  /// Quantizer for a conv/linear input activation (scheme.signedness Auto: decided at init).
  std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> make_activation;
  /// Why its quantizer is not a uniform grid (empty: it is): mixed precision measures the
  /// uniform grid's error, so a `mixed` bits entry refuses the method.
  std::string nonuniform;
};

/// lsq, lsq+, pact, dsq, dorefa, apot, qil.
Registry<QatMethod>& qat_method_registry();

/// STE helpers shared by the quantizers.
/// round with a straight-through gradient: forward round(x) (half to even), backward identity.
at::Tensor round_ste(const at::Tensor& x);
/// LSQ's gradient scaling: forward returns x unchanged, backward multiplies the gradient by g.
at::Tensor grad_scale(const at::Tensor& x, double g);

}  // namespace qbench::qat
