// Loops of the fused reconstruction pieces (see recon.h). Sums run in kLanes independent float
// lanes, a fixed order whatever the vector width, then the tail and the lanes in double: the QAT
// kernels' scheme, so the compiler vectorises without reassociating anything.
#include "recon.h"

#include <cmath>
#include <cstring>

// round_even and QBENCH_CLONES: the QAT kernels' shared header (same flags, same reasons).
#include "../../../qat/src/kernels/common.h"

namespace qbench::ptq::kernels {

using qat::kernels::round_even;

namespace {
constexpr int kLanes = 16;

template <bool kDrop>
inline bool keep_at(uint32_t k0, uint32_t k1, uint32_t thr, uint32_t i) {
  if constexpr (kDrop) return drop_bits(k0, k1, i) < thr;
  return true;
}

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// log2(a) for a normal, finite a > 0: a = m 2^e with m in [sqrt(1/2), sqrt(2)), log2(m) =
// 2 atanh(t) / ln 2, t = (m - 1) / (m + 1), |t| <= 0.1716, atanh's series to t^9 (error < 1e-9).
inline float log2_pos(float a) {
  const uint32_t b = float_to_bits(a);
  float e = static_cast<float>(static_cast<int32_t>((b >> 23) & 0xffu) - 127);
  float m = bits_to_float((b & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1.0f : e;
  const float t = (m - 1.0f) / (m + 1.0f);
  const float t2 = t * t;
  const float series = 1.0f + t2 * (0.333333333f + t2 * (0.2f + t2 * (0.142857143f + t2 * 0.111111111f)));
  return e + t * series * 2.88539008f;  // 2 / ln 2
}

// 2^y: y = n + f, n = round(y), |f| <= 1/2, 2^f = exp(f ln 2) by its Taylor series to degree 7
// (error < 1e-8); 0 below 2^-126 (no subnormals), inf above 2^127.
inline float exp2_any(float y) {
  const float yc = std::min(std::max(y, -126.0f), 127.0f);
  const float n = round_even(yc);
  const float x = (yc - n) * 0.693147181f;
  const float p =
      1.0f + x * (1.0f + x * (0.5f + x * (0.166666667f + x * (0.0416666667f + x * (0.00833333333f +
                                                                               x * (0.00138888889f + x * 0.000198412698f))))));
  const float scale = bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  const float r = p * scale;
  return y < -126.0f ? 0.0f : (y > 127.0f ? INFINITY : r);
}

inline float pow01_inline(float a, float e) {
  const float zero_pow = e > 0.0f ? 0.0f : (e == 0.0f ? 1.0f : INFINITY);
  const float safe = a > 0.0f ? a : 1.0f;
  const float r = e == 0.0f ? 1.0f : exp2_any(e * log2_pos(safe));
  return a > 0.0f ? r : zero_pow;
}
}  // namespace

float pow01(float a, float e) { return pow01_inline(a, e); }

QBENCH_CLONES
void drop_mask_kernel(uint8_t* __restrict m, int64_t n, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr) {
  for (int64_t j = 0; j < n; ++j) m[j] = drop_bits(k0, k1, first + static_cast<uint32_t>(j)) < thr ? 1 : 0;
}

QBENCH_CLONES
void drop_select_kernel(const float* __restrict a, const float* __restrict b, float* __restrict out, int64_t n,
                        uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr) {
  for (int64_t j = 0; j < n; ++j) out[j] = drop_bits(k0, k1, first + static_cast<uint32_t>(j)) < thr ? a[j] : b[j];
}

namespace {
template <bool kDrop>
inline void act_drop_forward_loop(const float* __restrict x, float* __restrict y, int64_t n, uint32_t first,
                                  uint32_t k0, uint32_t k1, uint32_t thr, float s, float lo, float hi) {
  for (int64_t j = 0; j < n; ++j) {
    const float v = std::min(std::max(x[j] / s, lo), hi);
    const float q = round_even(v) * s;
    y[j] = keep_at<kDrop>(k0, k1, thr, first + static_cast<uint32_t>(j)) ? q : x[j];
  }
}
}  // namespace

QBENCH_CLONES
void act_drop_forward_kernel(const float* __restrict x, float* __restrict y, int64_t n, bool drop, uint32_t first,
                             uint32_t k0, uint32_t k1, uint32_t thr, float s, float lo, float hi) {
  if (drop) return act_drop_forward_loop<true>(x, y, n, first, k0, k1, thr, s, lo, hi);
  act_drop_forward_loop<false>(x, y, n, first, k0, k1, thr, s, lo, hi);
}

// inside <=> clamp(v) == v (v is finite: the activations are). The where() of the composed form
// hands the quantizer dy where kept and 0 elsewhere, and x the rest. One loop per (dx wanted, mask
// drawn), so that none has a branch inside.
namespace {
template <bool kDx, bool kDrop>
inline double act_drop_backward_loop(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                     int64_t n, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr, float s,
                                     float lo, float hi) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const bool keep = keep_at<kDrop>(k0, k1, thr, first + static_cast<uint32_t>(i + k));
      const float v = x[i + k] / s;
      const float vc = std::min(std::max(v, lo), hi);
      const bool inside = vc == v;
      const float term = inside ? round_even(vc) - vc : vc;
      const float gq = keep ? dy[i + k] : 0.f;
      if constexpr (kDx) dx[i + k] = keep ? (inside ? gq : 0.f) : dy[i + k];
      lanes[k] += gq * term;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const bool keep = keep_at<kDrop>(k0, k1, thr, first + static_cast<uint32_t>(i));
    const float v = x[i] / s;
    const float vc = std::min(std::max(v, lo), hi);
    const bool inside = vc == v;
    const float gq = keep ? dy[i] : 0.f;
    if constexpr (kDx) dx[i] = keep ? (inside ? gq : 0.f) : dy[i];
    sum += static_cast<double>(gq * (inside ? round_even(vc) - vc : vc));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
double act_drop_backward_kernel(const float* __restrict x, const float* __restrict dy, float* __restrict dx, int64_t n,
                                bool drop, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr, float s, float lo,
                                float hi) {
  if (dx && drop) return act_drop_backward_loop<true, true>(x, dy, dx, n, first, k0, k1, thr, s, lo, hi);
  if (dx) return act_drop_backward_loop<true, false>(x, dy, dx, n, first, k0, k1, thr, s, lo, hi);
  if (drop) return act_drop_backward_loop<false, true>(x, dy, nullptr, n, first, k0, k1, thr, s, lo, hi);
  return act_drop_backward_loop<false, false>(x, dy, nullptr, n, first, k0, k1, thr, s, lo, hi);
}

// Composed: h = clamp(sigmoid(V) * 1.2 + (-0.1), 0, 1); clamp(floor(w / s) + h + z, qmin, qmax).
namespace {
inline float soft_weight(float wv, float sg, float s, float z, float qmin, float qmax, float& h) {
  const float hp = sg * 1.2f + -0.1f;
  h = std::min(std::max(hp, 0.0f), 1.0f);
  const float q = std::min(std::max(std::floor(wv / s) + h + z, qmin), qmax);
  return (q - z) * s;
}

template <bool kReg>
inline double adaround_forward_loop(const float* __restrict w, const float* __restrict sig, float* __restrict out,
                                    int64_t n, float s, float z, float qmin, float qmax, float beta) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      float h;
      out[i + k] = soft_weight(w[i + k], sig[i + k], s, z, qmin, qmax, h);
      if constexpr (kReg) lanes[k] += 1.0f - pow01_inline(std::fabs(2.0f * h - 1.0f), beta);
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    float h;
    out[i] = soft_weight(w[i], sig[i], s, z, qmin, qmax, h);
    if constexpr (kReg) sum += static_cast<double>(1.0f - pow01_inline(std::fabs(2.0f * h - 1.0f), beta));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
double adaround_forward_kernel(const float* __restrict w, const float* __restrict sig, float* __restrict out, int64_t n,
                               float s, float z, float qmin, float qmax, bool reg, float beta) {
  if (reg) return adaround_forward_loop<true>(w, sig, out, n, s, z, qmin, qmax, beta);
  return adaround_forward_loop<false>(w, sig, out, n, s, z, qmin, qmax, beta);
}

// The composed backward, node by node: W~ = (q - z) * s gives dy * s; q's clamp passes it where
// qmin <= floor(w/s) + h + z <= qmax; h's clamp where 0 <= hp <= 1; hp = sig * 1.2 - 0.1 gives
// * 1.2; sigmoid's backward g * (1 - sig) * sig. The regulariser 1 - |t|^beta, t = 2h - 1, with
// upstream greg: -greg, times beta |t|^(beta - 1) (pow's backward), times sign(t) (abs), times 2,
// then the same h clamp, stretch and sigmoid; the two contributions are added at V.
namespace {
template <bool kReg>
inline void adaround_backward_loop(const float* __restrict w, const float* __restrict sig, const float* __restrict dy,
                                   float* __restrict dv, int64_t n, float s, float z, float qmin, float qmax,
                                   float greg, float beta, float bm1) {
  const float neg_greg = -greg;
  for (int64_t i = 0; i < n; ++i) {
    const float sg = sig[i];
    const float hp = sg * 1.2f + -0.1f;
    const float h = std::min(std::max(hp, 0.0f), 1.0f);
    const float q0 = std::floor(w[i] / s) + h + z;
    const bool in_q = q0 >= qmin && q0 <= qmax;
    const bool in_h = hp >= 0.0f && hp <= 1.0f;
    const float g_q = in_q ? dy[i] * s : 0.0f;
    const float g_h = in_h ? g_q : 0.0f;
    const float g_v = ((g_h * 1.2f) * (1.0f - sg)) * sg;
    if constexpr (kReg) {
      const float t = 2.0f * h - 1.0f;
      const float a = std::fabs(t);
      const float sgn = t > 0.0f ? 1.0f : (t < 0.0f ? -1.0f : 0.0f);
      const float g_pow = neg_greg * (beta * pow01_inline(a, bm1));
      const float g_t = (g_pow * sgn) * 2.0f;
      const float r_h = in_h ? g_t : 0.0f;
      const float r_v = ((r_h * 1.2f) * (1.0f - sg)) * sg;
      dv[i] = g_v + r_v;
    } else {
      dv[i] = g_v;
    }
  }
}
}  // namespace

QBENCH_CLONES
void adaround_backward_kernel(const float* __restrict w, const float* __restrict sig, const float* __restrict dy,
                              float* __restrict dv, int64_t n, float s, float z, float qmin, float qmax, float greg,
                              float beta, float bm1) {
  if (greg != 0.0f) return adaround_backward_loop<true>(w, sig, dy, dv, n, s, z, qmin, qmax, greg, beta, bm1);
  adaround_backward_loop<false>(w, sig, dy, dv, n, s, z, qmin, qmax, greg, beta, bm1);
}

QBENCH_CLONES
double sq_err_kernel(const float* __restrict a, const float* __restrict b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float d = a[i + k] - b[i + k];
      lanes[k] += d * d;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const float d = a[i] - b[i];
    sum += static_cast<double>(d * d);
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}

QBENCH_CLONES
void sq_err_backward_kernel(const float* __restrict a, const float* __restrict b, float* __restrict da, int64_t n,
                            float inv) {
  for (int64_t i = 0; i < n; ++i) da[i] = inv * (2.0f * (a[i] - b[i]));
}

QBENCH_CLONES
void adam_kernel(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
                 float b1, float one_minus_b1, float b2, float one_minus_b2, float bc2_sqrt, float eps,
                 float step_size) {
  const float neg_step = -step_size;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * b1 + one_minus_b1 * gi;
    const float vi = v[i] * b2 + (one_minus_b2 * gi) * gi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] + neg_step * (mi / denom);
  }
}

}  // namespace qbench::ptq::kernels
