#include "qbench/qat/method.h"

#include <ATen/ATen.h>

namespace qbench::qat {

using namespace qbench::quant;  // the shared quantizer library these methods build on

// Generated from the qbench_qat_method lines of lib/qat/CMakeLists.txt.
void fill_qat_methods(Registry<QatMethod>& r);

Registry<QatMethod>& qat_method_registry() {
  static Registry<QatMethod> reg("QAT method", fill_qat_methods);
  return reg;
}

// (x.round() - x).detach() + x: the forward value is round(x), the gradient flows as identity.
at::Tensor round_ste(const at::Tensor& x) { return (at::round(x) - x).detach() + x; }

// Esser et al. 2019 (LSQ), Sec. 2.2: y = (x - x*g).detach() + x*g has value x and gradient g.
at::Tensor grad_scale(const at::Tensor& x, double g) { return (x - x * g).detach() + x * g; }

}  // namespace qbench::qat
