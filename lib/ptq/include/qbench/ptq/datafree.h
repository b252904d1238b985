#pragma once
// Data-free calibration images: inputs optimised so that the FP32 model's BatchNorm layers see
// statistics that match their running statistics.
//   zeroq  Cai et al. 2020, "ZeroQ" (arXiv:2001.00852), Eq. 2: sum over BN layers of
//          ||mu_run - mu||^2 + ||sigma_run - sigma||^2 on the BN inputs, plus the same on the
//          network input against the normalisation statistics (mean 0, std 1).
//   dsg    Zhang et al. 2021, "Diversifying Sample Generation for Accurate Data-Free
//          Quantization" (arXiv:2103.01049): the same statistics with a slack margin (slack
//          distribution alignment, SDA) and one BN layer emphasised per image (layerwise sample
//          enhancement, LSE).
// As in both reference implementations, the statistics are per image (each image's per-channel
// spatial mean and standard deviation), so the images of a batch do not interact through them.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qbench/config/matrix.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/qmodules.h"

namespace qbench::ptq {

/// Synthesised calibration images and what they cost.
struct Synthesis {
  at::Tensor images;           ///< N x C x H x W, float, in the model's (normalised) input space
  double seconds = 0;          ///< wall time of the whole synthesis
  double initial_bn_loss = 0;  ///< ZeroQ loss of the initial N(0,1) images, per image (mean over batches)
  double final_bn_loss = 0;    ///< ZeroQ loss of the returned images, per image (for dsg too)
  int64_t iters = 0;           ///< optimisation steps run, summed over batches
};

/// Synthesises `n` images shaped like `item_shape` (C, H, W) from the BatchNorm running statistics
/// of `fp32_model` (every conv with a declared BN partner; the BN input is that conv's output).
/// `method` is "zeroq" or "dsg"; `p` gives iters (per batch), lr (Adam) and batch_size (p.source is
/// not read). `seed` drives all randomness: the same seed gives the same images. `progress`
/// (may be empty) receives (fraction, label) every few steps. The model is used in eval mode
/// with its parameters frozen, and is returned in its previous mode with nothing changed
/// (parameters, requires_grad flags, layer hooks), also when an exception leaves.
/// Throws qbench::Error on an unknown method, a bad shape, or a model with no BN partner or a
/// conv whose BN is merged away (fold 0) or that is deployed.
Synthesis synthesize_calibration(quant::QuantModel& fp32_model, const std::string& method,
                                 const config::CalibrationRecipe& p, int64_t n,
                                 std::vector<int64_t> item_shape, uint64_t seed,
                                 std::function<void(double, const std::string&)> progress);

// ---- building blocks, exposed for tests ------------------------------------------------------

/// One BN layer's view of a batch: the per-image statistics of its input and its targets.
struct BnLayerStats {
  std::string name;         ///< the conv's module path
  at::Tensor mean, std;     ///< N x C: per-image spatial mean and sqrt(unbiased var + bn eps)
  at::Tensor run_mean;      ///< C: running_mean
  at::Tensor run_std;       ///< C: sqrt(running_var + bn eps)
  int64_t spatial = 0;      ///< H * W of the conv output
};

/// Runs `images` through `model` (which must already be in eval mode) and records, for every conv
/// with a BN partner, the statistics of its output. Differentiable with respect to `images` when
/// grad mode is on. The layers' deploy hooks are restored before returning or throwing.
std::vector<BnLayerStats> bn_input_statistics(quant::QuantModel& model, const at::Tensor& images);

/// Per-image spatial mean and std of an N x C x H x W tensor (the network-input term uses mean 0,
/// std 1 as its targets).
std::pair<at::Tensor, at::Tensor> per_image_stats(const at::Tensor& x, double eps);

/// ZeroQ's loss on a batch (reference code: ||target - stat||_F^2 / N per statistic and layer,
/// summed), including the network-input term on `images`. A scalar tensor.
at::Tensor zeroq_loss(const std::vector<BnLayerStats>& layers, const at::Tensor& images);

/// DSG's slack alignment of one statistic (N x C) to its target (C) with margin `margin`:
/// per image j, sum_c max(|stat_jc - target_c| - margin, 0)^2. Returns N values.
at::Tensor slack_alignment(const at::Tensor& stat, const at::Tensor& target, double margin);

/// DSG margins per BN layer: `delta` for the mean and `gamma` for the std (see datafree.cpp for
/// how they are set from the running statistics alone).
struct SlackMargins {
  std::vector<double> delta, gamma;
};
/// Margins at quantile `q` (the paper's epsilon) of the per-channel deviation |stat - target|
/// that per-image statistics of a Gaussian feature map with the BN's running statistics show at
/// the layer's spatial size. Deterministic for a given seed.
SlackMargins dsg_margins(const std::vector<BnLayerStats>& layers, double q, uint64_t seed);

/// The quantile DSG margins use (epsilon).
inline constexpr double kDsgMarginQuantile = 0.9;

/// DSG's loss on a batch (slack alignment with margins `m`, and each image j weighting its
/// enhanced layer enhanced_layer[j] (N, int64) twice; the formula is in datafree.cpp), including
/// the network-input term on `images`. A scalar tensor.
at::Tensor dsg_loss(const std::vector<BnLayerStats>& layers, const at::Tensor& images, const SlackMargins& m,
                    const at::Tensor& enhanced_layer);

}  // namespace qbench::ptq
