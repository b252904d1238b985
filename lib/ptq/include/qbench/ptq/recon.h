#pragma once
// Post-training reconstruction: AdaRound (Nagel et al. 2020, arXiv:2004.10568), BRECQ (Li et al.
// 2021, arXiv:2102.05426) and QDrop (Wei et al. 2022, arXiv:2203.05740) on one engine.
//
// The engine runs the FP32 model and the quantized model side by side (one model; the FP32 pass
// has every quantizer off) over the calibration images. For each unit in execution order it
// caches the unit's FP32 input and output (the teacher) and the unit's input in the quantized
// model (everything before the unit already quantized and reconstructed, as BRECQ's and QDrop's
// code do), in memory or, above ReconParams::cache_mb, in an unlinked temp file under $TMPDIR;
// then it optimises that unit alone:
//   adaround  units = every conv/linear layer; learns the weight rounding on the layer output
//             (conv -> BN as folded -> activation); activation scales stay the MSE-calibrated ones.
//   brecq     units = every declared block (layers outside blocks are their own units); learns
//             the rounding on the block output MSE, and the step sizes of the activation
//             quantizers inside the unit with LSQ (Adam, act_lr, cosine to 0).
//   qdrop     as brecq, but during reconstruction every activation quantizer inside the unit
//             quantizes each element with probability drop_prob and passes it in float otherwise,
//             and the unit's input mixes the quantized-model input (probability drop_prob) with
//             the FP32 input element-wise (QDrop's and MQBench's code).
// The first layer is not reconstructed (it keeps round-to-nearest at the profile's width).
// Weights and activations start from MSE observers (Lp norm ReconParams::mse_p). When all units
// are done, the hard rounding (h >= 0.5) is baked into the layers' weights, so the model ends
// with its ordinary fixed quantizers (QuantizerImpl) whose round-to-nearest reproduces it.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/common/options.h"
#include "qbench/ptq/recon_fused.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/quantizer.h"

namespace qbench::ptq {

/// Layer/block reconstruction settings of adaround, brecq and qdrop (YAML
/// pipeline.ptq.reconstruction). No defaults here: they are declared once, with their bounds and
/// the papers' values, in recon_options() (docs/algorithms.md, "Post-training reconstruction").
struct ReconParams {
  int64_t iters;      ///< optimisation steps per unit
  int batch_size;
  double lambda;      ///< rounding regulariser weight
  double beta_start;  ///< annealed linearly to beta_end after the warm-up
  double beta_end;
  double warmup;      ///< fraction of iters without the regulariser
  double lr;          ///< Adam on the rounding variables
  double act_lr;      ///< Adam (cosine) on LSQ activation step sizes
  double drop_prob;   ///< QDrop: probability an input element is quantized
  double mse_p;       ///< Lp norm of the MSE observers that initialise the scales
  int64_t cache_mb;   ///< unit caches above this size go to disk (not in the key)
};
/// The table that declares ReconParams: validation, key, `qbench list algorithms --verbose` and
/// the values reconstruct() receives all come from it.
const OptionTable<ReconParams>& recon_options();

/// How the pieces of a reconstruction iteration run (recon_fused.h). Fused (the default): the
/// float32 CPU kernels, one pass per piece (soft-rounded weight with its regulariser, activation
/// quantizer with QDrop's mask, batch draw, loss, Adam); anything else (another device or dtype,
/// caches on disk) takes that piece's composed form. Composed: every piece as ATen ops and
/// torch::optim::Adam, the reference the numeric tests and qbench_bench_recon compare against.
/// The two learn the same thing; they differ in the last bits of the regulariser's gradient (its
/// power function), the loss value's summation order and Adam's rounding (ATen's kernels may fuse
/// a multiply-add). Not a setting, in no key: a run always uses Fused.
enum class ReconKernels { Fused, Composed };

// ---------------------------------------------------------------------------------------------
// AdaRound's pieces (exposed for the numeric tests)

constexpr double kAdaRoundZeta = 1.1;   ///< stretch of the rectified sigmoid (upper end)
constexpr double kAdaRoundGamma = -0.1; ///< (lower end)

/// h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1).
at::Tensor rectified_sigmoid(const at::Tensor& v);

/// V such that h(V) = frac(w / s) = w/s - floor(w/s): V = -log((zeta - gamma) / (frac - gamma) - 1).
/// `scale` broadcasts against w (per-tensor: 0-d or one element; per-channel: shaped for w).
at::Tensor adaround_init_v(const at::Tensor& w, const at::Tensor& scale);

/// AdaRound's rounding regulariser sum(1 - |2 h(V) - 1|^beta) (summed over every element).
at::Tensor rounding_regularizer(const at::Tensor& v, double beta);

/// W~ = s * (clip(floor(w/s) + h + z, qmin, qmax) - z): the soft-rounded weight for a rounding
/// variable h in [0, 1] (h(V) while learning, 1[h(V) >= 0.5] at the end). scale/zero_point
/// broadcast against w.
at::Tensor adaround_weight(const at::Tensor& w, const at::Tensor& h, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t qmin, int64_t qmax);

/// The beta of the annealing at step `it` (0-based) of `iters`: beta_start during the warm-up
/// (the first warmup * iters steps), then linear to beta_end at the last step (BRECQ's
/// LinearTempDecay).
double anneal_beta(int64_t it, int64_t iters, const ReconParams& p);
/// Whether the rounding regulariser is on at step `it` (after the warm-up).
bool regularizer_on(int64_t it, int64_t iters, const ReconParams& p);

/// The learnable weight quantizer of AdaRound: holds V (one per weight element) and the frozen
/// scale/zero point of the MSE-calibrated quantizer it replaces while a unit is reconstructed.
/// soft: W~ with h(V); hard: W~ with 1[h(V) >= 0.5]. Quantizing off: identity (the FP32 pass).
class AdaRoundQuantizer : public quant::FakeQuantizer {
 public:
  /// `w` is what the layer feeds its weight quantizer (for a conv with BN folded on the fly, the
  /// folded weight); V is initialised so that h(V) = frac(w / s).
  AdaRoundQuantizer(const quant::QuantScheme& scheme, const quant::QParams& qp, const at::Tensor& w);
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override {}
  std::optional<quant::QParams> affine_qparams() const override { return qp_; }
  std::string describe() const override;
  void set_hard(bool on) { hard_ = on; }
  bool hard() const { return hard_; }
  at::Tensor& v() { return v_; }
  /// h(V), same shape as the weight.
  at::Tensor h() const;
  const quant::QParams& qparams() const { return qp_; }
  void set_kernels(ReconKernels k) { kernels_ = k; }
  /// Fused kernels: the soft forward also computes rounding_regularizer(V, beta) in the same pass
  /// when beta > 0 (0: off), handed out once by take_regularizer(); undefined when this forward
  /// took the composed form (the caller then computes it).
  void set_regularizer(double beta) { reg_beta_ = beta; }
  at::Tensor take_regularizer() { return std::move(reg_); }

 private:
  at::Tensor bshape(const at::Tensor& t, int64_t dim) const;
  quant::QParams qp_;
  at::Tensor v_;
  at::Tensor s_b_, z_b_;  ///< scale and zero point (float) shaped to broadcast against the weight
  bool hard_ = false;
  ReconKernels kernels_ = ReconKernels::Fused;
  double reg_beta_ = 0.0;
  at::Tensor reg_;
};

/// The activation quantizer while a unit is reconstructed (brecq, qdrop): the MSE-calibrated
/// per-tensor scale made learnable with LSQ's forward and gradient (zero point and range fixed),
/// and QDrop's element-wise drop: with drop probability p set (< 1) each element is quantized
/// with probability p and passed in float otherwise. The masks come from `gen`.
class ReconActQuantizer : public quant::FakeQuantizer {
 public:
  ReconActQuantizer(const quant::QuantScheme& scheme, const quant::QParams& qp, bool learn_scale,
                    at::Generator gen);
  at::Tensor forward(const at::Tensor& x) override;
  void compute_qparams() override {}
  std::vector<at::Tensor> quant_parameters() override;
  std::optional<quant::QParams> affine_qparams() const override { return qparams(); }
  std::string describe() const override;
  /// The quantization parameters with the current (learned) scale.
  quant::QParams qparams() const;
  void set_drop_prob(double p) { drop_prob_ = p; }
  double drop_prob() const { return drop_prob_; }
  void set_kernels(ReconKernels k) { kernels_ = k; }
  /// Whether forward(x) would run the fused CPU kernel (quantizing, learned step, fused kernels,
  /// float32 CPU input): then fused_args(x) gives what it would pass act_quant_drop, drawing the
  /// mask's key as forward does (call it once, in place of forward).
  bool fused_ready(const at::Tensor& x) const;
  ActQuantArgs fused_args(const at::Tensor& x);

 private:
  /// The learned step's arguments for x: keeps the step positive, draws the key when dropping.
  ActQuantArgs learn_args(const at::Tensor& x);
  quant::QParams qp_;
  at::Tensor scale_;
  bool learn_;
  int64_t zero_point_ = 0;
  double drop_prob_ = 1.0;
  at::Generator gen_;
  ReconKernels kernels_ = ReconKernels::Fused;
};

/// QDrop's mask: where(mask, quantized, x) element-wise, the mask of one draw (recon_fused.h:
/// drop_mask) with the next key from `gen`, computed on the CPU and moved (the same mask on every
/// device).
at::Tensor drop_mix(const at::Tensor& quantized, const at::Tensor& x, double p, at::Generator& gen);

// ---------------------------------------------------------------------------------------------
// The engine

enum class ReconMode { AdaRound, Brecq, QDrop };
const char* recon_mode_name(ReconMode m);

/// One unit of reconstruction, in execution order.
struct ReconUnit {
  std::string name;                 ///< module path of the layer or block
  bool is_block = false;
  std::vector<std::string> layers;  ///< quant layers inside (one for a layer unit)
  bool skipped = false;             ///< the model's first layer: not reconstructed
};

/// The units of `model` for `mode`: one per quant layer (adaround), or one per declared block plus
/// one per layer outside every block (brecq, qdrop). The first layer is marked skipped.
std::vector<ReconUnit> recon_units(quant::QuantModel& model, ReconMode mode);

/// What reconstruction did to one unit. Losses are the unit's output error against the FP32
/// teacher as BRECQ's and QDrop's lp_loss measures it (squared error summed over channels, mean
/// over images and positions) on all calibration images, with the quantized model's input: initial = the MSE-observer start (round-to-nearest), final = after learning and
/// hard rounding.
struct UnitResult {
  std::string name;
  double initial_loss = 0, final_loss = 0;
  int64_t iters = 0;
  double seconds = 0;
  /// Fraction of the unit's rounding variables still undecided (0.01 < h < 0.99) when rounding
  /// was made hard: near 0 when the schedule converged.
  double soft_fraction = 0;
  bool on_disk = false;  ///< its caches went to a temp file
};

/// Attaches MSE-calibrated quantizers (weights and activations, Lp norm `mse_p`) under
/// ctx.profile at ctx.w_bits/a_bits and calibrates them on ctx.calib_images: the start of
/// every reconstruction (and what a "no learning" run returns).
void prepare_for_reconstruction(quant::QuantModel& model, quant::AlgorithmContext& ctx, double mse_p);

/// Reconstructs a prepared model (prepare_for_reconstruction) unit by unit in place; one detail row
/// per unit goes to ctx.details (section "recon_units") and progress to ctx.progress. The result
/// depends only on the model, the images, `p` and ctx.seed (same seed, same result), not on the
/// thread count of the fused pieces.
std::vector<UnitResult> reconstruct(quant::QuantModel& model, quant::AlgorithmContext& ctx, ReconMode mode,
                                    const ReconParams& p, ReconKernels kernels = ReconKernels::Fused);

/// What reconstruct() runs, unit by unit and step by step; exposed so that qbench_bench_recon can
/// time single iterations and the tests can compare the kernels. Construction sets the model to
/// eval mode and freezes its parameters (until destruction); begin / step... / end runs one unit
/// (end puts the unit's activation quantizers back and keeps its weights' rounding hard in
/// AdaRound quantizers), bake() writes every ended unit's rounding into the weights and gives the
/// layers their fixed quantizers back.
class ReconSession {
 public:
  ReconSession(quant::QuantModel& model, quant::AlgorithmContext& ctx, ReconMode mode, const ReconParams& p,
               ReconKernels kernels = ReconKernels::Fused);
  ~ReconSession();
  ReconSession(const ReconSession&) = delete;
  ReconSession& operator=(const ReconSession&) = delete;
  /// The units in execution order (recon_units, less blocks without quant layers).
  const std::vector<ReconUnit>& units() const;
  /// Starts unit i (not skipped): caches its FP32 input and teacher output and its input in the
  /// quantized model, measures the initial loss, attaches the learnable quantizers and optimisers.
  void begin(size_t i);
  /// Optimisation steps of the current unit: p.iters, or 0 when it has nothing to learn.
  int64_t iters() const;
  /// Step `it` (0-based; the regulariser's schedule and the step sizes' cosine follow it).
  void step(int64_t it);
  /// The reconstruction loss of the last step (a read-back: a host sync on a GPU).
  double last_loss() const;
  /// The current unit's input and output shape per sample (what its caches hold per image).
  std::vector<int64_t> input_shape() const;
  std::vector<int64_t> output_shape() const;
  /// Ends the current unit: the share of undecided rounding, hard rounding, the learned step sizes
  /// back into the fixed quantizers, the final loss and the unit's detail row.
  UnitResult end();
  /// Bakes the hard rounding of every ended unit into its layer's weight.
  void bake();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ReconAlgorithm : public quant::Algorithm {
 public:
  explicit ReconAlgorithm(ReconMode mode) : mode_(mode) {}
  void apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) override;

 private:
  ReconMode mode_;
};


}  // namespace qbench::ptq
