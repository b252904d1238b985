// Loops of the fused reconstruction pieces (see recon.h). Sums run in kLanes independent float
// lanes, a fixed order whatever the vector width, then the tail and the lanes in double: the QAT
// kernels' scheme, so the compiler vectorises without reassociating anything.
#include "recon.h"

#include <cmath>
#include <cstring>

// round_even and QBENCH_CLONES: the QAT kernels' shared header (same flags, same reasons).
#include "../../../qat/src/kernels/common.h"
#include "qbench/quant/kernel_math.h"

// Every helper of a QBENCH_CLONES function must be inlined into it: a helper compiled on its own
// is built for the baseline target only, so an AVX2 clone calling it would run baseline code.
#if defined(__GNUC__)
#define QBENCH_INLINE inline __attribute__((always_inline))
#else
#define QBENCH_INLINE inline
#endif

namespace qbench::ptq::kernels {

using qat::kernels::round_even;

namespace {
constexpr int kLanes = 16;

// An aligned block of 16 elements starting at global index 16 B takes the eight hashes of pairs
// 8 B .. 8 B + 7: the low half decides element l, the high half element l + 8 (drop_keep). The
// loops run in two passes: the blocks' 16-bit keep words, one block per vector lane (eight hashes
// each, so a 512-bit vector runs 128 hashes at a time), then the elements, one block per step,
// element l of the block in lane l, its keep bit (w >> l) & 1 (GCC vectorises that form, not w & (1 << l)).

/// bits[b] = the keep word of block block0 + b, for b < nb: bit l says whether element l of the
/// block is quantized.
QBENCH_INLINE void drop_words(uint32_t* __restrict bits, int64_t nb, uint32_t block0, uint32_t k0, uint32_t k1,
                              uint32_t thr) {
  const uint32_t m = k1 | 1u;
  for (int64_t b = 0; b < nb; ++b) {
    // (pair0 + l) m + k0 as base + l m (mod 2^32): one multiply per block, not per hash.
    const uint32_t base = ((block0 + static_cast<uint32_t>(b)) << 3) * m + k0;
    uint32_t w = 0;
    for (uint32_t l = 0; l < 8; ++l) {
      const uint32_t h = mix32(base + l * m);
      w |= ((h & 0xffffu) < thr ? 1u : 0u) << l;
      w |= ((h >> 16) < thr ? 1u : 0u) << (l + 8);
    }
    bits[b] = w;
  }
}

/// Runs elem(j, l, keep) for the 16 nb elements j of nb whole blocks (l = j % 16, keep 0 or 1: a
/// bool there keeps GCC from vectorising the callers' selects), keep words in bits.
template <typename Elem>
QBENCH_INLINE void word_blocks(const uint32_t* __restrict bits, int64_t nb, Elem&& elem) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint32_t w = bits[b];
    const int64_t base = b * 16;
    for (int l = 0; l < 16; ++l) elem(base + l, l, (w >> l) & 1u);
  }
}

constexpr int64_t kWordBatch = 256;  // keep words per first pass of masked_loop: 4,096 elements

/// Runs elem(j, keep) (keep 0 or 1) for j < n: one element at a time up to the first aligned block, then whole
/// blocks kWordBatch at a time (words into a stack buffer, then the elements), then the rest.
template <typename Elem>
QBENCH_INLINE void masked_loop(int64_t n, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr, Elem&& elem) {
  int64_t j = 0;
  for (; j < n && ((first + static_cast<uint32_t>(j)) & 15u) != 0; ++j)
    elem(j, drop_keep(k0, k1, thr, first + static_cast<uint32_t>(j)) ? 1u : 0u);
  uint32_t bits[kWordBatch];
  while (j + 16 <= n) {
    const int64_t nb = std::min<int64_t>(kWordBatch, (n - j) / 16);
    drop_words(bits, nb, (first + static_cast<uint32_t>(j)) >> 4, k0, k1, thr);
    const int64_t j0 = j;
    word_blocks(bits, nb, [&](int64_t jj, int, uint32_t keep) { elem(j0 + jj, keep); });
    j += nb * 16;
  }
  for (; j < n; ++j) elem(j, drop_keep(k0, k1, thr, first + static_cast<uint32_t>(j)) ? 1u : 0u);
}

using quant::kernel_math::bits_to_float;
using quant::kernel_math::exp2_any;
using quant::kernel_math::float_to_bits;
using quant::kernel_math::log2_pos;

QBENCH_INLINE float pow01_inline(float a, float e) {
  const float zero_pow = e > 0.0f ? 0.0f : (e == 0.0f ? 1.0f : INFINITY);
  const float safe = a > 0.0f ? a : 1.0f;
  const float r = e == 0.0f ? 1.0f : exp2_any(e * log2_pos(safe));
  return a > 0.0f ? r : zero_pow;
}

/// pow01_inline for an exponent known to be > 0 (the caller checks once per call): the same
/// value, with the exponent's cases out of the loop. GCC if-converts pow01_inline's nested
/// selects on a loop-invariant e in the AVX2 clone but not in the AVX-512 and baseline ones,
/// which then ran the regulariser's loops one element at a time.
QBENCH_INLINE float pow01_pos_inline(float a, float e) {
  const float r = exp2_any(e * log2_pos(a > 0.0f ? a : 1.0f));
  return a > 0.0f ? r : 0.0f;
}

/// The pow01 for a loop whose exponent's sign is fixed: kPos picks the positive-exponent form.
template <bool kPos>
QBENCH_INLINE float pow01_loop(float a, float e) {
  if constexpr (kPos) return pow01_pos_inline(a, e);
  return pow01_inline(a, e);
}
}  // namespace

float pow01(float a, float e) { return pow01_inline(a, e); }
float pow01_pos(float a, float e) { return pow01_pos_inline(a, e); }

QBENCH_CLONES
void drop_mask_kernel(uint8_t* __restrict m, int64_t n, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr) {
  masked_loop(n, first, k0, k1, thr, [&](int64_t j, uint32_t keep) { m[j] = static_cast<uint8_t>(keep); });
}

QBENCH_CLONES
void drop_select_kernel(const float* __restrict a, const float* __restrict b, float* __restrict out, int64_t n,
                        uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr) {
  masked_loop(n, first, k0, k1, thr, [&](int64_t j, uint32_t keep) {
    const float av = a[j], bv = b[j];
    out[j] = keep ? av : bv;
  });
}

// One LSQ activation quantizer: its forward value, and per element its input gradient and step
// term (inside <=> clamp(v) == v; v is finite: the activations are).
namespace {
struct ActGrad {
  float s, lo, hi;
  QBENCH_INLINE float quant(float xv) const { return round_even(std::min(std::max(xv / s, lo), hi)) * s; }
  // dx of one element, and its term of the step's sum (gq * term).
  QBENCH_INLINE float term(float xv, float dyv, uint32_t keep, float& dxv) const {
    const float v = xv / s;
    const float vc = std::min(std::max(v, lo), hi);
    const bool inside = vc == v;
    const float t = inside ? round_even(vc) - vc : vc;
    const float gq = keep ? dyv : 0.f;
    dxv = keep ? (inside ? gq : 0.f) : dyv;
    return gq * t;
  }
};
}  // namespace

QBENCH_CLONES
void act_drop_forward_kernel(const float* __restrict x, float* __restrict y, uint32_t* __restrict bits, int64_t n,
                             uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr, float s, float lo, float hi) {
  const ActGrad q{s, lo, hi};
  if (bits) {
    const int64_t full = n / 16;
    drop_words(bits, (n + 15) / 16, first >> 4, k0, k1, thr);
    // Both arms computed, then selected: a conditional quant(x[j]) would be a masked load.
    auto one = [&](int64_t j, uint32_t keep) {
      const float xv = x[j], qv = q.quant(xv);
      y[j] = keep ? qv : xv;
    };
    word_blocks(bits, full, [&](int64_t j, int, uint32_t keep) { one(j, keep); });
    for (int64_t j = full * 16; j < n; ++j) one(j, (bits[full] >> (j & 15)) & 1u);
    return;
  }
  for (int64_t j = 0; j < n; ++j) y[j] = q.quant(x[j]);
}

// The backward: the where() of the composed form hands the quantizer dy where kept and 0
// elsewhere, and x the rest. One loop per (dx wanted, mask drawn), so that none has a branch
// inside.
namespace {
template <bool kDx>
QBENCH_INLINE double act_backward_plain(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                        int64_t n, const ActGrad& a) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      float d;
      lanes[k] += a.term(x[i + k], dy[i + k], 1u, d);
      if constexpr (kDx) dx[i + k] = d;
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    float d;
    sum += static_cast<double>(a.term(x[i], dy[i], 1u, d));
    if constexpr (kDx) dx[i] = d;
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}

// With the mask (keep words from the forward; the first element starts a block): the whole blocks
// sum in the lanes (lane = position in the block), the elements after the last in double.
template <bool kDx>
QBENCH_INLINE double act_backward_masked(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                         const uint32_t* __restrict bits, int64_t n, const ActGrad& a) {
  float lanes[kLanes] = {};
  const int64_t full = n / 16;
  word_blocks(bits, full, [&](int64_t j, int l, uint32_t keep) {
    float d;
    lanes[l] += a.term(x[j], dy[j], keep, d);
    if constexpr (kDx) dx[j] = d;
  });
  double sum = 0.0;
  for (int64_t j = full * 16; j < n; ++j) {
    float d;
    sum += static_cast<double>(a.term(x[j], dy[j], (bits[full] >> (j & 15)) & 1u, d));
    if constexpr (kDx) dx[j] = d;
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
double act_drop_backward_kernel(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                const uint32_t* __restrict bits, int64_t n, float s, float lo, float hi) {
  const ActGrad a{s, lo, hi};
  if (bits) {
    if (dx) return act_backward_masked<true>(x, dy, dx, bits, n, a);
    return act_backward_masked<false>(x, dy, nullptr, bits, n, a);
  }
  if (dx) return act_backward_plain<true>(x, dy, dx, n, a);
  return act_backward_plain<false>(x, dy, nullptr, n, a);
}

// ---------------------------------------------------------------------------------------------
// A residual add with both operands' activation quantizers (and ReLU after): one pass each way.

QBENCH_CLONES
void quant_add_forward_kernel(const float* __restrict a, const float* __restrict b, float* __restrict out,
                              uint32_t* __restrict wa, uint32_t* __restrict wb, int64_t n, uint32_t first,
                              const ActKey& ka, const ActKey& kb, bool relu) {
  const ActGrad qa{ka.s, ka.lo, ka.hi}, qb{kb.s, kb.lo, kb.hi};
  const int64_t nb = (n + 15) / 16, full = n / 16;
  if (wa) drop_words(wa, nb, first >> 4, ka.k0, ka.k1, ka.thr);
  if (wb) drop_words(wb, nb, first >> 4, kb.k0, kb.k1, kb.thr);
  auto one = [&](int64_t j, uint32_t keep_a, uint32_t keep_b) {
    const float av = a[j], bv = b[j], qav = qa.quant(av), qbv = qb.quant(bv);
    const float sum = (keep_a ? qav : av) + (keep_b ? qbv : bv);
    out[j] = relu ? (sum > 0.0f ? sum : 0.0f) : sum;
  };
  if (wa && wb) {
    for (int64_t b0 = 0; b0 < full; ++b0) {
      const uint32_t xa = wa[b0], xb = wb[b0];
      for (int l = 0; l < 16; ++l) one(b0 * 16 + l, (xa >> l) & 1u, (xb >> l) & 1u);
    }
  } else {
    for (int64_t j = 0; j < full * 16; ++j) one(j, 1u, 1u);
  }
  for (int64_t j = full * 16; j < n; ++j)
    one(j, wa ? (wa[full] >> (j & 15)) & 1u : 1u, wb ? (wb[full] >> (j & 15)) & 1u : 1u);
}

namespace {
/// quant_add_backward_kernel's loop for one combination of (mask words, da wanted, db wanted,
/// ReLU), so that none tests them inside.
template <bool kWords, bool kDa, bool kDb, bool kRelu>
QBENCH_INLINE void quant_add_backward_loop(const float* __restrict a, const float* __restrict b,
                                           const float* __restrict out, const float* __restrict dy,
                                           float* __restrict da, float* __restrict db, const uint32_t* __restrict wa,
                                           const uint32_t* __restrict wb, int64_t n, const ActGrad& qa,
                                           const ActGrad& qb, double* sums) {
  float la[kLanes] = {}, lb[kLanes] = {};
  const int64_t full = n / 16;
  for (int64_t b0 = 0; b0 < full; ++b0) {
    const uint32_t xa = kWords ? wa[b0] : 0xffffu, xb = kWords ? wb[b0] : 0xffffu;
    const float* __restrict a16 = a + b0 * 16;
    const float* __restrict b16 = b + b0 * 16;
    const float* __restrict o16 = out + b0 * 16;
    const float* __restrict g16 = dy + b0 * 16;
    for (int l = 0; l < 16; ++l) {
      // dy through the ReLU as threshold_backward(dy, out, 0) does, then each operand's quantizer.
      const float g = kRelu ? (o16[l] <= 0.0f ? 0.0f : g16[l]) : g16[l];
      float dav, dbv;
      la[l] += qa.term(a16[l], g, (xa >> l) & 1u, dav);
      lb[l] += qb.term(b16[l], g, (xb >> l) & 1u, dbv);
      if constexpr (kDa) da[b0 * 16 + l] = dav;
      if constexpr (kDb) db[b0 * 16 + l] = dbv;
    }
  }
  double sa = 0.0, sb = 0.0;
  for (int64_t j = full * 16; j < n; ++j) {
    const float g = kRelu ? (out[j] <= 0.0f ? 0.0f : dy[j]) : dy[j];
    const uint32_t ka = kWords ? (wa[full] >> (j & 15)) & 1u : 1u, kb = kWords ? (wb[full] >> (j & 15)) & 1u : 1u;
    float dav, dbv;
    sa += static_cast<double>(qa.term(a[j], g, ka, dav));
    sb += static_cast<double>(qb.term(b[j], g, kb, dbv));
    if constexpr (kDa) da[j] = dav;
    if constexpr (kDb) db[j] = dbv;
  }
  for (int k = 0; k < kLanes; ++k) {
    sa += static_cast<double>(la[k]);
    sb += static_cast<double>(lb[k]);
  }
  sums[0] = sa;
  sums[1] = sb;
}

template <bool kWords, bool kRelu>
QBENCH_INLINE void quant_add_backward_by_grads(const float* a, const float* b, const float* out, const float* dy,
                                               float* da, float* db, const uint32_t* wa, const uint32_t* wb, int64_t n,
                                               const ActGrad& qa, const ActGrad& qb, double* sums) {
  if (da && db) return quant_add_backward_loop<kWords, true, true, kRelu>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  if (da) return quant_add_backward_loop<kWords, true, false, kRelu>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  if (db) return quant_add_backward_loop<kWords, false, true, kRelu>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  quant_add_backward_loop<kWords, false, false, kRelu>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
}
}  // namespace

QBENCH_CLONES
void quant_add_backward_kernel(const float* __restrict a, const float* __restrict b, const float* __restrict out,
                               const float* __restrict dy, float* __restrict da, float* __restrict db,
                               const uint32_t* __restrict wa, const uint32_t* __restrict wb, int64_t n,
                               const ActKey& ka, const ActKey& kb, bool relu, double* sums) {
  const ActGrad qa{ka.s, ka.lo, ka.hi}, qb{kb.s, kb.lo, kb.hi};
  const bool words = wa && wb;
  if (words && relu) return quant_add_backward_by_grads<true, true>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  if (words) return quant_add_backward_by_grads<true, false>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  if (relu) return quant_add_backward_by_grads<false, true>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
  quant_add_backward_by_grads<false, false>(a, b, out, dy, da, db, wa, wb, n, qa, qb, sums);
}

// Composed: h = clamp(sigmoid(V) * 1.2 + (-0.1), 0, 1); clamp(floor(w / s) + h + z, qmin, qmax).
namespace {
QBENCH_INLINE float soft_weight(float wv, float sg, float s, float z, float qmin, float qmax, float& h) {
  const float hp = sg * 1.2f + -0.1f;
  h = std::min(std::max(hp, 0.0f), 1.0f);
  const float q = std::min(std::max(std::floor(wv / s) + h + z, qmin), qmax);
  return (q - z) * s;
}

template <bool kReg, bool kPos = false>
QBENCH_INLINE double adaround_forward_loop(const float* __restrict w, const float* __restrict sig, float* __restrict out,
                                    int64_t n, float s, float z, float qmin, float qmax, float beta) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      float h;
      out[i + k] = soft_weight(w[i + k], sig[i + k], s, z, qmin, qmax, h);
      if constexpr (kReg) lanes[k] += 1.0f - pow01_loop<kPos>(std::fabs(2.0f * h - 1.0f), beta);
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    float h;
    out[i] = soft_weight(w[i], sig[i], s, z, qmin, qmax, h);
    if constexpr (kReg) sum += static_cast<double>(1.0f - pow01_loop<kPos>(std::fabs(2.0f * h - 1.0f), beta));
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
double adaround_forward_kernel(const float* __restrict w, const float* __restrict sig, float* __restrict out, int64_t n,
                               float s, float z, float qmin, float qmax, bool reg, float beta) {
  if (reg && beta > 0.0f) return adaround_forward_loop<true, true>(w, sig, out, n, s, z, qmin, qmax, beta);
  if (reg) return adaround_forward_loop<true>(w, sig, out, n, s, z, qmin, qmax, beta);
  return adaround_forward_loop<false>(w, sig, out, n, s, z, qmin, qmax, beta);
}

// The composed backward, node by node: W~ = (q - z) * s gives dy * s; q's clamp passes it where
// qmin <= floor(w/s) + h + z <= qmax; h's clamp where 0 <= hp <= 1; hp = sig * 1.2 - 0.1 gives
// * 1.2; sigmoid's backward g * (1 - sig) * sig. The regulariser 1 - |t|^beta, t = 2h - 1, with
// upstream greg: -greg, times beta |t|^(beta - 1) (pow's backward), times sign(t) (abs), times 2,
// then the same h clamp, stretch and sigmoid; the two contributions are added at V.
namespace {
template <bool kReg, bool kPos = false>
QBENCH_INLINE void adaround_backward_loop(const float* __restrict w, const float* __restrict sig, const float* __restrict dy,
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
      const float sgn = static_cast<float>(t > 0.0f) - static_cast<float>(t < 0.0f);  // 1, -1 or 0
      const float g_pow = neg_greg * (beta * pow01_loop<kPos>(a, bm1));
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
  if (greg != 0.0f && bm1 > 0.0f)
    return adaround_backward_loop<true, true>(w, sig, dy, dv, n, s, z, qmin, qmax, greg, beta, bm1);
  if (greg != 0.0f) return adaround_backward_loop<true>(w, sig, dy, dv, n, s, z, qmin, qmax, greg, beta, bm1);
  adaround_backward_loop<false>(w, sig, dy, dv, n, s, z, qmin, qmax, greg, beta, bm1);
}

namespace {
/// sum((a - b)^2) in the lanes; with kGrad also da = inv * (2 * (a - b)) in the same pass.
template <bool kGrad>
QBENCH_INLINE double sq_err_loop(const float* __restrict a, const float* __restrict b, float* __restrict da, int64_t n,
                                 float inv) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float d = a[i + k] - b[i + k];
      lanes[k] += d * d;
      if constexpr (kGrad) da[i + k] = inv * (2.0f * d);
    }
  }
  double sum = 0.0;
  for (; i < n; ++i) {
    const float d = a[i] - b[i];
    sum += static_cast<double>(d * d);
    if constexpr (kGrad) da[i] = inv * (2.0f * d);
  }
  for (float l : lanes) sum += static_cast<double>(l);
  return sum;
}
}  // namespace

QBENCH_CLONES
double sq_err_kernel(const float* __restrict a, const float* __restrict b, int64_t n) {
  return sq_err_loop<false>(a, b, nullptr, n, 0.0f);
}

QBENCH_CLONES
double sq_err_with_grad_kernel(const float* __restrict a, const float* __restrict b, float* __restrict da, int64_t n,
                               float inv) {
  return sq_err_loop<true>(a, b, da, n, inv);
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
