// Loops of the fused per-tensor LSQ (see lsq_kernels.h).
//
// Vectorisation. This file is compiled with -fno-trapping-math (lib/quant/CMakeLists.txt):
// without it GCC will not if-convert the backward's selects (it may not evaluate both arms of a
// float ?: when an arm could raise an FP exception), and the loop stays scalar. The flag only
// lets the compiler assume no FP trap is enabled, which is true in LibTorch; every value is the
// same as without it. target_clones adds an AVX2 copy beside the baseline x86-64 one, chosen at
// load time (glibc ifunc), so one binary runs on any x86-64 node and uses wide units where they
// exist. Both copies do the same IEEE operations in the same order (no -ffast-math, and
// -ffp-contract=off under -std=c++17, so no FMA), so their results are bit-identical.
#include "lsq_kernels.h"

#include <algorithm>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QBENCH_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QBENCH_CLONES
#endif

namespace qbench::quant {

namespace {
// Round half to even without a libm call: adding and subtracting 1.5 * 2^23 leaves the nearest
// integer under the default rounding mode (ties to even), exactly as std::nearbyint, for
// |v| < 2^22 (v is clamped to the integer range, at most 2^16, first). Valid because we never
// build with -ffast-math.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}
}  // namespace

QBENCH_CLONES
void lsq_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float s, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(px[i] / s, lo), hi);
    po[i] = round_even(v) * s;
  }
}

// The sum runs in kLanes independent float lanes, a fixed order whatever the vector width, so
// the compiler vectorises it without reassociating anything; the lanes and the tail are added
// in double at the end. inside <=> clamp(v) == v (v is finite: the quantizer input is checked).
QBENCH_CLONES
double lsq_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx, int64_t n,
                           float s, float lo, float hi) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = px[i + k] / s;
      const float vc = std::min(std::max(v, lo), hi);
      const bool inside = vc == v;
      const float term = inside ? round_even(vc) - vc : vc;
      pgx[i + k] = inside ? pg[i + k] : 0.f;
      lanes[k] += pg[i + k] * term;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const float v = px[i] / s;
    const float vc = std::min(std::max(v, lo), hi);
    const bool inside = vc == v;
    pgx[i] = inside ? pg[i] : 0.f;
    sum += static_cast<double>(pg[i] * (inside ? round_even(vc) - vc : vc));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}

QBENCH_CLONES
void lsq_plus_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, float s, float b, float lo,
                             float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float u = std::min(std::max((px[i] - b) / s, lo), hi);
    po[i] = round_even(u) * s + b;
  }
}

// As lsq_backward_kernel, with a second set of lanes for the offset's sum.
QBENCH_CLONES
LsqPlusGradSums lsq_plus_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                         int64_t n, float s, float b, float lo, float hi) {
  constexpr int kLanes = 16;
  float lanes_s[kLanes] = {}, lanes_b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float u = (px[i + k] - b) / s;
      const float uc = std::min(std::max(u, lo), hi);
      const bool inside = uc == u;
      const float term = inside ? round_even(uc) - uc : uc;
      const float pass = inside ? pg[i + k] : 0.f;
      pgx[i + k] = pass;
      lanes_s[k] += pg[i + k] * term;
      lanes_b[k] += pg[i + k] - pass;  // dy outside, exactly 0 inside (finite dy)
    }
  }
  LsqPlusGradSums sums;
  for (; i < n; ++i) {
    const float u = (px[i] - b) / s;
    const float uc = std::min(std::max(u, lo), hi);
    const bool inside = uc == u;
    pgx[i] = inside ? pg[i] : 0.f;
    sums.ds += static_cast<double>(pg[i] * (inside ? round_even(uc) - uc : uc));
    sums.dbeta += inside ? 0.0 : static_cast<double>(pg[i]);
  }
  for (int k = 0; k < kLanes; ++k) {
    sums.ds += static_cast<double>(lanes_s[k]);
    sums.dbeta += static_cast<double>(lanes_b[k]);
  }
  return sums;
}

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

}  // namespace qbench::quant
