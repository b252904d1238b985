// Loops of the fused unsigned QIL activation quantizer (see qil.h).
#include "qil.h"

#include "common.h"

namespace qbench::qat::kernels {

QBENCH_CLONES
void qil_act_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float edge, float width,
                            float q, float scale) {
  for (int64_t i = 0; i < n; ++i)
    po[i] = round_even(std::min(std::max((px[i] - edge) / width, 0.f), 1.f) * q) / q * scale;
}

QBENCH_CLONES
QilGradSums qil_act_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                    int64_t n, float edge, float width, float scale) {
  constexpr int kLanes = 16;
  float lanes_g[kLanes] = {}, lanes_p[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float t = (px[i + k] - edge) / width;
      const bool inside = std::min(std::max(t, 0.f), 1.f) == t;
      const float scaled = pg[i + k] * scale;
      const float gp = inside ? scaled : 0.f;
      pgx[i + k] = gp / width;
      lanes_g[k] += gp;
      lanes_p[k] += gp * (1.f - 2.f * t);
    }
  }
  QilGradSums sums;
  for (; i < n; ++i) {
    const float t = (px[i] - edge) / width;
    const bool inside = std::min(std::max(t, 0.f), 1.f) == t;
    const float gp = inside ? pg[i] * scale : 0.f;
    pgx[i] = gp / width;
    sums.sum_gp += static_cast<double>(gp);
    sums.sum_gp_pos += static_cast<double>(gp * (1.f - 2.f * t));
  }
  for (int k = 0; k < kLanes; ++k) {
    sums.sum_gp += static_cast<double>(lanes_g[k]);
    sums.sum_gp_pos += static_cast<double>(lanes_p[k]);
  }
  return sums;
}

}  // namespace qbench::qat::kernels
