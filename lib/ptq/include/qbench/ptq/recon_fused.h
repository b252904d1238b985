#pragma once
// The fused pieces of one reconstruction iteration (float32 CPU; lib/ptq/src/recon_fused.cpp over
// the loops of src/kernels/recon.cpp), each with the composed ATen form it replaces. The engine
// (recon.h, ReconKernels::Fused) uses them; tests/numeric/test_recon_fused.cpp checks each one
// against its composed form (bit for bit where that form is a fixed sequence of IEEE operations),
// plain double references and finite differences, at 1 and 2 threads.
//
// Work is split into chunks of kReconGrain elements; a sum is one double per chunk, added in
// chunk order, so no result depends on the thread count.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace qbench::ptq {

/// Elements per parallel chunk of the fused loops.
constexpr int64_t kReconGrain = 32768;

// ---------------------------------------------------------------------------------------------
// QDrop's drop mask. Every draw takes one 64-bit key from the reconstruction's seeded generator;
// element i of the draw is quantized iff 16 bits of a hash of (key, i) fall below p * 2^16 (a
// counter-based stream: any element can be computed alone, in any order, on any thread; p is
// used to the nearest multiple of 2^-16, 0.5 exactly; src/kernels/recon.h has the definition).

/// The next key from `gen` (a CPU generator), under its lock.
uint64_t next_drop_key(at::Generator& gen);
/// round(p * 2^16), p clamped to [0, 1]: element quantized iff its 16 hash bits < threshold.
uint32_t drop_threshold(double p);
/// The mask of one draw: a kBool CPU tensor of `numel` elements, true where quantized.
at::Tensor drop_mask(uint64_t key, int64_t numel, double p);

// ---------------------------------------------------------------------------------------------
// BRECQ's / QDrop's activation quantizer: LSQ with a learnable per-tensor step s (gradient scale
// g, integer range [qmin, qmax] relative to the zero point) and QDrop's mask (p >= 1: every element
// quantized, no key used).

/// Fused: one pass forward, one backward. x and s float32 on the CPU, s one element.
at::Tensor act_quant_drop(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g, double p,
                          uint64_t key);
/// Composed: where(drop_mask(key), qat::lsq_fake_quantize(x, s, qmin, qmax, g), x).
at::Tensor act_quant_drop_composed(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g,
                                   double p, uint64_t key);

/// One activation quantizer's arguments as act_quant_drop takes them (key: its mask's draw).
struct ActQuantArgs {
  at::Tensor s;
  int64_t qmin = 0, qmax = 0;
  double g = 1.0, p = 1.0;
  uint64_t key = 0;
};
/// A residual add whose operands each pass their quantizer, then ReLU when `relu`:
/// relu(act_quant_drop(a, qa...) + act_quant_drop(b, qb...)) in one pass each way; the same values
/// and gradients (input and step) as the three ops, bit for bit. a and b float32 CPU tensors of
/// one shape, both quantizers with the same p.
at::Tensor quant_add_fused(const at::Tensor& a, const at::Tensor& b, const ActQuantArgs& qa, const ActQuantArgs& qb,
                           bool relu);

// ---------------------------------------------------------------------------------------------
// AdaRound's soft-rounded weight and rounding regulariser in one pass per weight.

/// {W~, reg}: W~ = adaround_weight(w, rectified_sigmoid(v), scale, zero_point, qmin, qmax) and,
/// when beta > 0, reg = rounding_regularizer(v, beta) (else a 0 that takes no gradient). v, w float32
/// CPU of one shape; scale / zero_point float32 with one element (per tensor) or one per slice of
/// dimension 0 (per channel along axis 0). Gradient to v only (w is a constant, as in the composed
/// form, which rounds w.detach()).
std::pair<at::Tensor, at::Tensor> adaround_weight_fused(const at::Tensor& v, const at::Tensor& w,
                                                        const at::Tensor& scale, const at::Tensor& zero_point,
                                                        int64_t qmin, int64_t qmax, double beta);

/// The power the fused regulariser uses, a^e for a in [0, 1] (exp2(e log2 a) on float
/// polynomials, relative error < 2e-5 while a^e is a normal float; 0^e = 0 for e > 0, 1 for e = 0, inf for e < 0). For the tests.
float regularizer_pow(float a, float e);
/// The form the fused loops take when the exponent is known to be > 0 (beta, and beta - 1 in the
/// backward, above 0): it must give regularizer_pow's value bit for bit. For the tests.
float regularizer_pow_positive(float a, float e);

// ---------------------------------------------------------------------------------------------
// The reconstruction loss and the batch draw.

/// BRECQ's / QDrop's lp_loss (p = 2): sum over channels (dim 1) of (out - target)^2, mean over
/// the rest, in one pass forward and one backward (gradient to out only).
at::Tensor rec_loss_fused(const at::Tensor& out, const at::Tensor& target);
/// The composed form: (out - target).pow(2).sum(1).mean().
at::Tensor rec_loss_composed(const at::Tensor& out, const at::Tensor& target);

/// Rows idx of `a` into `out` (shape [idx.size(0), a's row shape], preallocated); with `b`
/// (same shape as a) and p < 1, QDrop's unit input: element i of out is a's where the draw `key`
/// quantizes i, else b's. a, b, out float32 contiguous CPU; idx int64.
void gather_rows(const at::Tensor& a, const at::Tensor* b, const at::Tensor& idx, double p, uint64_t key,
                 at::Tensor& out);

// ---------------------------------------------------------------------------------------------

/// torch::optim::Adam (no weight decay, no amsgrad, betas 0.9 / 0.999, eps 1e-8) over a few float32
/// CPU tensors in groups with their own lr, one pass per tensor per step; the grads are reset
/// (set to none) after the step.
class FusedAdam {
 public:
  /// Adds a group; returns its index.
  size_t add_group(std::vector<at::Tensor> params, double lr);
  void set_lr(size_t group, double lr) { groups_.at(group).lr = lr; }
  void step();
  /// Steps taken (calls of step()).
  int64_t steps() const { return step_; }

 private:
  struct Param {
    at::Tensor p, m, v;
    int64_t step;
  };
  struct Group {
    std::vector<Param> params;
    double lr;
  };
  std::vector<Group> groups_;
  int64_t step_ = 0;
};

}  // namespace qbench::ptq
