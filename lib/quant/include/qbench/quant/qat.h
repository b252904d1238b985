#pragma once
// QAT methods: each pairs the paper's weight quantizer with its activation quantizer. The
// quantizers themselves are FakeQuantizer subclasses with the paper's forward, gradients
// (custom autograd where the paper defines them), learnable parameters and initialisation.
#include <functional>
#include <memory>
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/quantizer.h"

namespace qbench::quant {

struct QatMethod {
  std::string description;
  std::string paper;  ///< citation: authors, year, arXiv id
  /// Weight quantizer for a conv/linear weight; `scheme` comes from the profile with bits set.
  std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> make_weight;
  /// Quantizer for a conv/linear input activation (scheme.signedness Auto: decided at init).
  std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> make_activation;
};

/// lsq, lsq+, pact, dsq, dorefa, apot, qil.
Registry<QatMethod>& qat_method_registry();

// Registration functions, one per implementation file.
void register_qat_lsq(Registry<QatMethod>& r);          // lsq, lsq+       (src/qat_lsq.cpp)
void register_qat_pact_dorefa(Registry<QatMethod>& r);  // pact, dorefa    (src/qat_pact_dorefa.cpp)
void register_qat_dsq(Registry<QatMethod>& r);          // dsq             (src/qat_dsq.cpp)
void register_qat_apot(Registry<QatMethod>& r);         // apot            (src/qat_apot.cpp)
void register_qat_qil(Registry<QatMethod>& r);          // qil             (src/qat_qil.cpp)

/// STE helpers shared by the quantizers.
/// round with a straight-through gradient: forward round(x) (half to even), backward identity.
at::Tensor round_ste(const at::Tensor& x);
/// LSQ's gradient scaling: forward returns x unchanged, backward multiplies the gradient by g.
at::Tensor grad_scale(const at::Tensor& x, double g);

}  // namespace qbench::quant
