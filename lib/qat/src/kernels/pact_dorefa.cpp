// Loops of the fused PACT and DoReFa activation quantizers (see pact_dorefa.h).
#include "pact_dorefa.h"

#include "common.h"

namespace qbench::qat::kernels {

namespace {
// y = clip(x, lo, a) as the composed form computes it (clamp_min or where(x <= -a), then
// where(x >= a)): NaN stays NaN.
template <bool Signed>
inline float pact_clip(float x, float a) {
  if (Signed) {
    const float y = x <= -a ? -a : x;
    return x >= a ? a : y;
  }
  const float y = std::max(x, 0.f);
  return x >= a ? a : y;
}

template <bool Signed>
inline void pact_forward_loop(const float* __restrict px, float* __restrict po, int64_t n, float a, float inv,
                              float step) {
  for (int64_t i = 0; i < n; ++i) {
    const float y = pact_clip<Signed>(px[i], a);
    const float q = round_even(y * inv) * step;
    po[i] = y + (q - y);
  }
}

// One element of Eq. 3: returns the input gradient, adds the alpha term to *da.
template <bool Signed>
inline float pact_grad(float x, float g, float a, float* da) {
  const float up = x >= a ? g : 0.f;
  const float down = Signed ? (x <= -a ? g : 0.f) : 0.f;
  const bool pass = Signed ? (x > -a) & (x < a) : (x >= 0.f) & (x < a);
  *da += up - down;
  return pass ? g : 0.f;
}

template <bool Signed>
inline double pact_backward_loop(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                 int64_t n, float a) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) pgx[i + k] = pact_grad<Signed>(px[i + k], pg[i + k], a, &lanes[k]);
  float tail = 0.f;
  for (; i < n; ++i) pgx[i] = pact_grad<Signed>(px[i], pg[i], a, &tail);
  double sum = static_cast<double>(tail);
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
void pact_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float a, float inv, float step,
                         bool is_signed) {
  if (is_signed)
    pact_forward_loop<true>(px, po, n, a, inv, step);
  else
    pact_forward_loop<false>(px, po, n, a, inv, step);
}

QBENCH_CLONES
double pact_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx, int64_t n,
                            float a, bool is_signed) {
  return is_signed ? pact_backward_loop<true>(px, pg, pgx, n, a) : pact_backward_loop<false>(px, pg, pgx, n, a);
}

QBENCH_CLONES
void dorefa_act_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float r, float levels,
                               float lo) {
  if (r == 1.f) {
    for (int64_t i = 0; i < n; ++i) po[i] = round_even(std::min(std::max(px[i], lo), 1.f) * levels) / levels;
    return;
  }
  for (int64_t i = 0; i < n; ++i) po[i] = round_even(std::min(std::max(px[i] / r, lo), 1.f) * levels) / levels * r;
}

QBENCH_CLONES
void dorefa_act_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                int64_t n, float r, float lo) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = r == 1.f ? px[i] : px[i] / r;
    pgx[i] = (a >= lo) & (a <= 1.f) ? pg[i] : 0.f;
  }
}

}  // namespace qbench::qat::kernels
