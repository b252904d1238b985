// Loops of the fused APoT activation quantizer (see apot.h).
#include "apot.h"

#include "common.h"

namespace qbench::qat::kernels {

QBENCH_CLONES
void apot_act_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float a, float m, float lo) {
  for (int64_t i = 0; i < n; ++i) po[i] = (a * round_even(std::min(std::max(px[i] / a, lo), 1.f) * m)) / m;
}

QBENCH_CLONES
double apot_act_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                int64_t n, float a, float m, float lo) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = px[i + k] / a;
      const float vc = std::min(std::max(v, lo), 1.f);
      const bool inside = vc == v;
      const float term = inside ? round_even(vc * m) / m - vc : vc;
      pgx[i + k] = inside ? pg[i + k] : 0.f;
      lanes[k] += pg[i + k] * term;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const float v = px[i] / a;
    const float vc = std::min(std::max(v, lo), 1.f);
    const bool inside = vc == v;
    pgx[i] = inside ? pg[i] : 0.f;
    sum += static_cast<double>(pg[i] * (inside ? round_even(vc * m) / m - vc : vc));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}

}  // namespace qbench::qat::kernels
