#pragma once
// Real integer execution of a calibrated fake-quant model on LibTorch's quantized CPU engines
// (oneDNN, QNNPACK). lower() installs deploy hooks on every conv/linear layer and residual add
// (quant::QuantLayer::set_deploy, QAddImpl::set_deploy): each runs the layer as a quantized
// operator (quantized::conv2d(_relu), quantized::linear, quantized::add(_relu)) with the SAME
// scales and zero points the fake quantizers used. compare() runs the test set through both and
// reports how far the deployed network is from its simulation. See lib/deploy/README.md.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qbench/common/detail.h"
#include "qbench/data/dataset.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"
#include "qbench/train/train.h"

namespace qbench::deploy {

/// "onednn" | "qnnpack": whether this LibTorch build has that quantized engine
/// (at::globalContext().supportedQEngines()). Any other name: false.
bool engine_available(const std::string& engine);

/// How one lowered node (a conv/linear layer or an add) runs; filled by lower(), for reports and tests.
struct NodeInfo {
  std::string name;          ///< module path, e.g. "layer1.0.conv1"
  std::string kind;          ///< "conv2d" | "linear" | "add"
  std::string op;            ///< the operator, e.g. "quantized::conv2d_relu", "int32 matmul"
  double out_scale = 0;      ///< output qparams (quint8); 0 when the output is float
  int64_t out_zero_point = 0;
  int64_t out_qmax = 255;    ///< output integer range [0, out_qmax] (narrower below 8 bits)
  bool float_output = false; ///< the node hands a float (dequantized) tensor to the model code
  std::string out_source;    ///< where the output qparams come from (a consumer's quantizer, an observer...)
  std::vector<std::string> notes;  ///< e.g. requantization for a second consumer with other qparams
};

class Lowered {
 public:
  struct Impl;
  explicit Lowered(std::unique_ptr<Impl> impl);
  /// Removes the hooks (restore()). A Lowered must be destroyed before its model.
  ~Lowered();
  Lowered(const Lowered&) = delete;
  Lowered& operator=(const Lowered&) = delete;

  /// Float logits of the integer network (eval mode, no grad, the engine selected for the call
  /// and the previous one put back afterwards). Installs the hooks if restore() removed them.
  at::Tensor forward(const at::Tensor& x);
  /// Removes the hooks: the model is the fake-quant model again.
  void restore();
  /// Puts the hooks back after restore().
  void install();
  bool installed() const;
  const std::string& engine() const;  ///< "onednn" | "qnnpack"
  quant::QuantModel& model();
  /// Every lowered node in execution order.
  const std::vector<NodeInfo>& nodes() const;

  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// Lowers `model` (calibrated PTQ or trained QAT, quantizers frozen) in place by installing deploy
/// hooks, for the profile's engine (profile.spec.engine). Sets eval mode. `calib` (N x C x H x W)
/// are calibration images: one small batch traces the data flow (which quantizer consumes each
/// layer's output), and all of them calibrate the extra 8-bit output observers that layers whose
/// output reaches no quantizer need (e.g. a conv followed by average pooling). Throws
/// qbench::Error naming the layer for what cannot lower: non-affine quantizers (APoT weights,
/// DSQ), missing quantizers, more than 8 bits, activations other than none/ReLU/ReLU6, BN not
/// folded, an engine that is absent, or an operator the engine rejects. The engines are CPU-only:
/// a model on another device (a GPU run) is moved to the CPU first and stays there, `calib` may
/// be on any device, and Lowered::forward takes inputs on any device (it computes on the CPU).
std::unique_ptr<Lowered> lower(quant::QuantModel& model, const quant::Profile& profile, const at::Tensor& calib,
                               int64_t calib_batch_size = 256);

struct CompareOptions {
  int64_t max_images = 0;             ///< 0: the whole dataset
  double layer_sqnr_threshold_db = 30;///< per-layer rows run at least to the first node below this
  int min_layer_rows = 12;            ///< ... and at least this many nodes (all when fewer)
};

struct Agreement {
  double deploy_top1 = 0;   ///< percent, the integer network
  double sim_top1 = 0;      ///< percent, the fake-quant model on the same images
  double agreement = 0;     ///< percent of images with the same predicted class
  double logit_cosine = 0;  ///< mean over images of cos(deployed logits, simulated logits)
  double sqnr_db = 0;       ///< 10 log10(sum sim^2 / sum (deployed - sim)^2) over all logits
  int64_t images = 0;
  /// section "deploy_layers", one row per node (module path) in execution order, measured on the
  /// first batch: values sqnr_db / max_abs_err / max_err_steps / mismatch_pct (deployed network vs
  /// simulation, errors accumulated from earlier layers), op_sqnr_db / op_max_err_steps (the
  /// node alone, fed the simulation's own input), out_scale, out_zero_point; text = the operator
  /// and where its output qparams come from.
  CellDetails layers;
};

/// The same figures for logits computed elsewhere (another runtime): `sim` and `dep` are N x classes,
/// `labels` N class indices; `layers` stays empty.
Agreement agreement_of(const at::Tensor& sim, const at::Tensor& dep, const at::Tensor& labels);

/// Runs `test` batch by batch (eval transform, in index order) through the fake-quant model
/// (hooks removed) and the lowered one, and compares. Leaves the hooks installed.
Agreement compare(quant::QuantModel& model, Lowered& lowered, const data::Dataset& test, int64_t batch_size,
                  const CompareOptions& opt = {});

/// Integer latency with train::measure_latency's method (same batch, warm-up, repeats,
/// percentiles), the engine selected during the measurement.
train::LatencyResult measure_latency(Lowered& lowered, const at::Tensor& batch, int warmup, int repeats);

}  // namespace qbench::deploy
