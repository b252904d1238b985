#include "qbench/quant/qat.h"

#include <ATen/ATen.h>

namespace qbench::quant {

Registry<QatMethod>& qat_method_registry() {
  static Registry<QatMethod> reg = [] {
    Registry<QatMethod> r("QAT method");
    register_qat_lsq(r);
    register_qat_pact_dorefa(r);
    register_qat_dsq(r);
    register_qat_apot(r);
    register_qat_qil(r);
    return r;
  }();
  return reg;
}

// (x.round() - x).detach() + x: the forward value is round(x), the gradient flows as identity.
at::Tensor round_ste(const at::Tensor& x) { return (at::round(x) - x).detach() + x; }

// Esser et al. 2019 (LSQ), Sec. 2.2: y = (x - x*g).detach() + x*g has value x and gradient g.
at::Tensor grad_scale(const at::Tensor& x, double g) { return (x - x * g).detach() + x * g; }

}  // namespace qbench::quant
