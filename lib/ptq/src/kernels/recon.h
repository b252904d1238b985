// The fused CPU loops of reconstruction PTQ (AdaRound's soft-rounded weight and its regulariser,
// the LSQ activation quantizer with QDrop's drop mask, the batch draw, the reconstruction loss,
// Adam): raw-array loops, torch-free, compiled with the flags that let them vectorise (the QAT
// kernels' common.h says why: -fno-trapping-math, target_clones avx512f/avx2/default,
// -ffp-contract=off, so every clone gives the same bits). Driven chunk by chunk by src/recon_fused.cpp, which sums chunk
// results in chunk order, so nothing here depends on the thread count.
#pragma once

#include <cstdint>

namespace qbench::ptq::kernels {

// ---------------------------------------------------------------------------------------------
// QDrop's drop mask: a counter-based stream. Every hash gives two elements 16 bits each. Element i
// of a draw with 64-bit key (k0, k1) uses the hash of its pair j = (i / 16) * 8 + i % 8, the low
// half for i % 16 < 8 and the high half for the rest, and is quantized iff that half < thr,
// thr = round(p * 2^16): a block of 16 elements takes 8 consecutive hashes, low halves first
// (what lets the loops run 8 hashes per vector without shuffles). The hash is mix32(j * (k1 | 1)
// + k0), mix32 C. Wellons' "lowbias32", a bijection of 32-bit words with full avalanche; the key's
// affine map of the pair index (odd slope, offset) makes each key's stream its own permutation of
// the hash's outputs, so two draws are unrelated, not shifted copies of each other.

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
/// Whether element i is quantized (the definition; the loops compute it 16 at a time).
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline bool drop_keep(uint32_t k0, uint32_t k1, uint32_t thr, uint32_t i) {
  const uint32_t h = mix32((((i >> 4) << 3) | (i & 7u)) * (k1 | 1u) + k0);
  return ((i & 8u) ? (h >> 16) : (h & 0xffffu)) < thr;
}

/// m[j] = 1 if element first + j is quantized, else 0, for j < n.
void drop_mask_kernel(uint8_t* m, int64_t n, uint32_t first, uint32_t k0, uint32_t k1, uint32_t thr);

/// out[j] = keep(first + j) ? a[j] : b[j] (QDrop's unit input: quantized-model or FP32 input).
void drop_select_kernel(const float* a, const float* b, float* out, int64_t n, uint32_t first, uint32_t k0,
                        uint32_t k1, uint32_t thr);

// ---------------------------------------------------------------------------------------------
// LSQ activation quantizer with QDrop's mask (drop = false: every element quantized). The forward
// writes the mask as one keep word per aligned block of 16 (16 bits used, held in 32 so that the
// AVX-512 clone computes 16 blocks per vector: n / 4 bytes), which the backward reads instead of
// hashing again.

/// y[j] = keep ? round_half_even(clamp(x[j] / s, lo, hi)) * s : x[j]. bits not null (the mask):
/// first is a multiple of 16 and bits receives the keep words of the ceil(n / 16) blocks from
/// first / 16 (bit l of word b: element 16 b + l; the last word whole, also past n). bits null:
/// every element quantized, the key unused.
void act_drop_forward_kernel(const float* x, float* y, uint32_t* bits, int64_t n, uint32_t first, uint32_t k0,
                             uint32_t k1, uint32_t thr, float s, float lo, float hi);

/// dx[j] (when dx is not null) = kept: dy inside [lo, hi], 0 outside; dropped: dy; keep from the
/// forward's words (null: every element kept). Returns the sum over kept elements of dy * (round(v)
/// - v inside, the clipped bound outside), v = x / s: the step's gradient before LSQ's scale g,
/// summed in 16 float lanes over the whole blocks of 16 (lane = position in the block), the
/// elements after the last block in double, then the lanes (the order of the QAT LSQ kernel, so
/// one chunk gives its bits).
double act_drop_backward_kernel(const float* x, const float* dy, float* dx, const uint32_t* bits, int64_t n, float s,
                                float lo, float hi);

// ---------------------------------------------------------------------------------------------
// A residual add whose two operands each pass an LSQ activation quantizer with QDrop's mask (the
// TensorRT placement), then optionally ReLU: out = relu(qa(a) + qb(b)) in one pass forward and
// one backward, with each quantizer's values, gradients and step sums exactly as two
// act_drop_*_kernel calls, an add and a ReLU give them.

/// One operand's quantizer: step s, clip range [lo, hi] (zero point removed), and its mask's key
/// (used only where the kernels get mask words).
struct ActKey {
  float s = 1.f, lo = 0.f, hi = 0.f;
  uint32_t k0 = 0, k1 = 0, thr = 0;
};

/// out[j] = relu?(qa(a[j]) + qb(b[j])); with drop, first is a multiple of 16 and wa / wb (not
/// null) receive each mask's keep words as in act_drop_forward_kernel; null words: no drop.
void quant_add_forward_kernel(const float* a, const float* b, float* out, uint32_t* wa, uint32_t* wb, int64_t n,
                              uint32_t first, const ActKey& ka, const ActKey& kb, bool relu);

/// da / db (each when not null): each operand's input gradient for dy through the ReLU (dy where
/// out > 0) and its quantizer; sums[0], sums[1]: each quantizer's step sum, in
/// act_drop_backward_kernel's order. Words null: no drop (both or neither).
void quant_add_backward_kernel(const float* a, const float* b, const float* out, const float* dy, float* da, float* db,
                               const uint32_t* wa, const uint32_t* wb, int64_t n, const ActKey& ka, const ActKey& kb,
                               bool relu, double* sums);

// ---------------------------------------------------------------------------------------------
// AdaRound's soft-rounded weight for one output channel (scale s, zero point z), with sig =
// sigmoid(V) given: h = clamp(sig * 1.2 - 0.1, 0, 1), W~ = (clamp(floor(w / s) + h + z, qmin,
// qmax) - z) * s, in the float operations and order of the composed ATen form.

/// out = W~; returns sum(1 - |2h - 1|^beta) over the row when reg, else 0.
double adaround_forward_kernel(const float* w, const float* sig, float* out, int64_t n, float s, float z, float qmin,
                               float qmax, bool reg, float beta);

/// dv = the V-gradient of dy . W~ + greg * sum(1 - |2h - 1|^beta) (greg = 0: no regulariser):
/// the composed form's chain (W~'s clamp, h's clamp, the 1.2 stretch, sigmoid'(V) = (1 - sig) sig)
/// in its order of float operations.
/// beta and beta_m1 = beta - 1 are each rounded to float from double, as ATen's pow backward does.
void adaround_backward_kernel(const float* w, const float* sig, const float* dy, float* dv, int64_t n, float s,
                              float z, float qmin, float qmax, float greg, float beta, float beta_m1);

/// a^e for a in [0, 1] (exp2(e log2 a), float polynomials; 0^e = 0 for e > 0, 1 for e = 0, inf
/// for e < 0). Exposed for the tests.
float pow01(float a, float e);
/// pow01 for e > 0, as the regulariser's loops run it when the exponent is positive (the same
/// value; the exponent's cases out of the loop). Exposed for the tests.
float pow01_pos(float a, float e);

// ---------------------------------------------------------------------------------------------
// Reconstruction loss sum((a - b)^2) and its gradient, Adam.

/// sum of (a - b)^2 in 16 float lanes, tail and lanes in double.
double sq_err_kernel(const float* a, const float* b, int64_t n);
/// sq_err_kernel's sum, and in the same pass sq_err_backward_kernel's da.
double sq_err_with_grad_kernel(const float* a, const float* b, float* da, int64_t n, float inv);
/// da = inv * (2 * (a - b)).
void sq_err_backward_kernel(const float* a, const float* b, float* da, int64_t n, float inv);

/// One Adam step (torch::optim::Adam, no weight decay, no amsgrad) on n elements:
/// m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g g; p -= step_size * m / (sqrt(v) / bc2_sqrt + eps).
void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, float b1, float one_minus_b1, float b2,
                 float one_minus_b2, float bc2_sqrt, float eps, float step_size);

}  // namespace qbench::ptq::kernels
