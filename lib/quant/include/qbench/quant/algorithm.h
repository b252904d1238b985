#pragma once
// The interface every quantization algorithm (PTQ or QAT) implements, and their registry.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "qbench/common/cell.h"
#include "qbench/common/detail.h"
#include "qbench/common/options.h"
#include "qbench/common/registry.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"

namespace qbench::quant {

struct AlgorithmContext {
  const Profile* profile = nullptr;
  int w_bits = 8, a_bits = 8;
  uint64_t seed = 0;
  at::Tensor calib_images;  ///< PTQ calibration images (N x C x H x W), drawn per seed
  int64_t calib_batch_size = 256;
  /// Observers chosen in the matrix (pipeline.ptq.observer) for algorithms that take them.
  std::string weight_observer = "minmax", activation_observer = "minmax";
  at::Tensor init_images;   ///< QAT quantizer initialisation images, drawn per seed
  /// QAT: where the learnable ranges start (pipeline.qat.range_init): "paper" or "mse".
  std::string qat_range_init = "paper";
  /// QAT: fine-tunes the prepared model with the aligned recipe (provided by the runner, which
  /// owns data, checkpoints and progress).
  std::function<void(QuantModel&)> finetune;
  /// The BN folding strategy in effect (-1..4, MQBench's ids), already applied to the model by
  /// the runner (quant::apply_bn_fold) before apply().
  int bn_fold = -1;
  /// The algorithm's own settings as the matrix resolved them (every option of its declared
  /// section, typed; empty when it declares none): the algorithm reads them through its
  /// OptionTable (e.g. ptq::recon_options().read(ctx.settings)).
  nlohmann::json settings = nlohmann::json::object();
  /// Detail rows the algorithm wants stored with the cell (e.g. per-unit reconstruction loss).
  CellDetails details;
  /// Progress sink: fraction done in [0, 1] and a short label.
  std::function<void(double, const std::string&)> progress;
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  /// Quantizes `model` in place (it arrives as the FP32 baseline, in eval mode).
  virtual void apply(QuantModel& model, AlgorithmContext& ctx) = 0;
};

struct AlgorithmEntry {
  CellKind kind = CellKind::Ptq;
  std::string description;
  std::function<std::unique_ptr<Algorithm>()> make;  ///< null for fp32
  /// The settings it reads (YAML pipeline.<stage>.<section>), declared by its OptionTable; empty
  /// when it has none. They join its cells' keys and reach it as AlgorithmContext::settings.
  SettingsSection settings;
  /// Why its quantizers are not a uniform grid (empty: they are); a `mixed` bits entry refuses it.
  std::string nonuniform;
};

/// Filled by the components that implement algorithms (see runner/registries.cpp).
Registry<AlgorithmEntry>& algorithm_registry();

}  // namespace qbench::quant
