#pragma once
// What one run shares between its cells (internal to the runner): the dataset splits, the FP32
// baselines (cached, imported or trained) and their evaluations, and the data-free calibration
// images per baseline. Session::execute advances one cell through the stages of stages.h.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/mixed/search.h"
#include "qbench/mixed/sensitivity.h"
#include "qbench/models/models.h"
#include "qbench/onnx/import.h"
#include "qbench/ptq/datafree.h"
#include "qbench/quant/algorithm.h"
#include "qbench/runner/device.h"
#include "qbench/runner/runner.h"
#include "qbench/store/store.h"
#include "qbench/train/train.h"
#include "stages.h"

namespace qbench::runner::detail {

class Session {
 public:
  Session(const config::Matrix& m, const RunOptions& opt, store::Store& st, at::Device device);

  /// prepare -> quantize -> evaluate -> deploy -> measure -> record.
  store::CellResult execute(const config::Cell& cell, int index, int total);

 private:
  // Stages that need what the session holds.
  CellRun prepare(const config::Cell& cell);
  void quantize(CellRun& run);
  /// Mixed precision (mixed_cell.cpp): the layers' widths for a `mixed` budget, set on the
  /// model before the algorithm attaches its quantizers; detail rows bit_allocation,
  /// mixed_budget, pareto_size and pareto_bops.
  void allocate_bits(CellRun& run);
  struct MixedProblem {
    mixed::Sensitivity sensitivity;
    std::vector<mixed::LayerChoices> layers;
    std::vector<mixed::FrontPoint> size_front, bops_front;
    double front_seconds = 0;
    bool from_cache = false;  ///< sensitivities read from the cache directory
  };
  /// Sensitivities, the search's layers and the Pareto fronts, once per baseline, profile and
  /// mixed-precision settings in this run.
  const MixedProblem& mixed_problem(CellRun& run);
  /// The algorithm's inputs: profile, bits, settings, and its images (calibration on data,
  /// synthesised from BN statistics, or QAT initialisation images and the fine-tuning loop).
  quant::AlgorithmContext algorithm_context(CellRun& run, const quant::AlgorithmEntry& entry);

  config::DatasetSpec dataset_spec() const;
  const data::Dataset& train_split(uint64_t seed);
  const data::Dataset& test_split();
  /// The cell's network, freshly built (seed torch first): a zoo model or its ONNX graph.
  std::shared_ptr<quant::QuantModel> make_arch(const config::Cell& cell);
  std::shared_ptr<quant::QuantModel> baseline_model(const config::Cell& cell, double* train_wall_s);
  std::shared_ptr<quant::QuantModel> train_baseline(const config::Cell& cell, std::shared_ptr<quant::QuantModel> model,
                                                    const std::filesystem::path& ckpt, double* train_wall_s);
  train::EvalResult baseline_eval(const config::Cell& cell);
  void finetune_qat(const config::Cell& cell, quant::QuantModel& model);
  const ptq::Synthesis& synthesized(CellRun& run, const std::function<void(double, const std::string&)>& progress);
  // Deployable artifacts (artifacts.cpp).
  /// What a saved cell needs to be rebuilt anywhere: identity, input shape, class count, the
  /// architecture's options (an ONNX file's absolute path and sha256).
  std::map<std::string, std::string> cell_meta(const config::Cell& cell) const;
  /// save: the quantized cell's state under <cache>/cells/<key>/state.safetensors.
  void save_state(CellRun& run);
  /// Whether the cell deploys on ONNX Runtime: its profile's engine, or pipeline.deploy.engines.
  bool wants_ort(const CellRun& run) const;
  /// deploy on ONNX Runtime: export QDQ (and FP32), run the test split and the latency batch in
  /// the runtime, compare with the simulation; a `deploy_engines` detail row (and the row's
  /// deploy_* columns when the profile's engine is onnxruntime). What cannot export or run keeps
  /// its simulated row with the reason.
  void deploy_ort(CellRun& run, const Report& rep);
  void report(const std::string& what) const;
  /// Moves a model built (and initialised or loaded) on the CPU to the run's device.
  void place(quant::QuantModel& model) const {
    if (!device_.is_cpu()) model.to(device_);
  }

  const config::Matrix& m_;
  const RunOptions& opt_;
  store::Store& store_;
  const at::Device device_;
  const DeviceInfo device_info_;
  const std::vector<LatencyPath> latency_paths_;
  std::string status_;
  data::DatasetPtr full_train_, test_;
  std::map<uint64_t, data::DatasetPtr> train_by_seed_;
  std::optional<std::pair<data::ItemShape, int64_t>> ds_shape_;  ///< item shape and classes of the dataset
  std::map<std::string, train::EvalResult> baseline_evals_;
  std::map<std::string, std::string> baseline_errors_;  ///< baselines that failed in this run
  std::map<std::string, ptq::Synthesis> synthesized_;   ///< data-free calibration images per baseline and settings
  std::map<std::string, onnx::ImportedGraph> onnx_graphs_;  ///< ONNX architectures, imported once per run
  std::map<std::string, MixedProblem> mixed_;  ///< mixed-precision problems per baseline, profile and settings
};

}  // namespace qbench::runner::detail
