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
#include "qbench/sysnoise/colour.h"
#include "qbench/sysnoise/image.h"
#include "qbench/sysnoise/jpeg.h"
#include "qbench/sysnoise/resize.h"
#include "qbench/train/train.h"
#include "stages.h"

namespace qbench::runner::detail {

/// How a noise cell's test images are made (noise_cell.cpp): the decoder of the JPEG bytes
/// (`reencode`: stored pixels encoded once at pipeline.noise.jpeg_quality; else an image folder's
/// own files), a resize kernel in place of lib/data's, a YUV round trip.
struct NoisePipeline {
  sysnoise::Decoder decoder = sysnoise::Decoder::kIslow;
  bool reencode = false;
  std::optional<sysnoise::ResizeKernel> kernel;
  std::optional<std::pair<sysnoise::YuvStandard, sysnoise::YuvRange>> yuv;
  std::string id() const;  ///< names the images in the session's cache
};

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
  /// Fine-tunes with the QAT recipe; the loss trace joins `details` (the cell's row).
  void finetune_qat(const config::Cell& cell, quant::QuantModel& model, CellDetails& details);
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
  /// evaluate under a deployment noise (noise_cell.cpp): the cell's top-1 through the noisy
  /// pipeline or precision, the reference it is measured against, and the prediction flips, as
  /// the row's top-1 and a `noise` detail row.
  void evaluate_noise(CellRun& run);
  /// The test images as a deployment stack receives them: 8-bit pixels (IDX datasets, with the
  /// dataset's float for each byte value) or an image folder's files (the test subset's).
  struct NoiseSource {
    std::vector<sysnoise::Image> images;
    std::vector<float> lut;
    std::vector<std::string> files;
    int64_t image_size = 0;
  };
  const NoiseSource& noise_source();
  /// The test images through pipeline `p` (null: the plain split), cached under `id` for the run.
  const at::Tensor& noise_images(const std::string& id, const NoisePipeline* p = nullptr);
  std::vector<int64_t> predictions(quant::QuantModel& model, const at::Tensor& images);
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
  std::optional<NoiseSource> noise_source_;
  std::map<std::string, at::Tensor> noise_images_;  ///< test images per noise pipeline
  std::map<int, std::vector<std::vector<uint8_t>>> jpeg_cache_;  ///< the test images' JPEG bytes per quality
  std::map<std::string, std::vector<int64_t>> noise_preds_;  ///< plain key | pipeline -> predictions
};

}  // namespace qbench::runner::detail
