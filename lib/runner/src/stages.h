#pragma once
// One cell through the aligned pipeline, as named stages (internal to the runner):
//
//   prepare   the FP32 baseline model (cached checkpoint, imported weights or trained) and the
//             cell's identity row                                              (Session::prepare)
//   quantize  the algorithm's inputs (calibration, synthesised or initialisation images, its
//             settings), BN folding, then the algorithm itself                 (Session::quantize)
//   evaluate  the test split, and the FP32 reference of the row                (evaluate)
//   save      the quantized cell's state under the cache                      (Session::save_state)
//   deploy    ONNX Runtime on the exported QDQ file (Session::deploy_ort), then integer lowering
//             on the profile's LibTorch engine, each with the sim-vs-deploy gap (deploy)
//   measure   latency: the first latency path that applies (int8 engine, roofline model,
//             measured float / fake-quant)                                    (measure)
//   record    status and wall time                                            (record)
//
// Each stage is a function of its own inputs and of the CellRun it advances; a new stage (export,
// ONNX Runtime, noise evaluation, mixed-precision allocation) is one more function and one more
// line in Session::execute.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/deploy/deploy.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"
#include "qbench/runner/device.h"
#include "qbench/store/store.h"
#include "qbench/train/train.h"

namespace qbench::runner::detail {

/// Progress sink of a stage: a short "what is happening" line.
using Report = std::function<void(const std::string&)>;

/// What a cell carries from one stage to the next.
struct CellRun {
  explicit CellRun(const config::Cell& c) : cell(c) {}
  const config::Cell& cell;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  store::CellResult row;                         ///< filled stage by stage
  std::shared_ptr<quant::QuantModel> model;      ///< the baseline, then the quantized model
  const quant::Profile* profile = nullptr;       ///< null for the FP32 baseline
  at::Tensor deploy_calib;                       ///< calibration (PTQ) or initialisation (QAT) images
  std::string latency_source = "measured-fp32";  ///< of the model as simulated (float or fake-quant)
  std::unique_ptr<deploy::Lowered> lowered;      ///< set by deploy() when the engine took the model
  std::optional<train::LatencyResult> ort_latency;  ///< ONNX Runtime int8 latency (profile engine onnxruntime)
  std::string state_path;                        ///< the saved cell state (quantized cells)
  const data::Dataset* test = nullptr;           ///< the test split evaluate() used
};

/// An info / warning line on stderr that does not tear the progress line.
void log_info(const std::string& msg);
void log_warning(const std::string& msg);
/// "resnet20 minmax w4a4 academic seed0" (and "resnet20 fp32 seed0").
std::string cell_label(const config::Cell& c);
/// A results row with the cell's identity filled in and no metrics yet.
store::CellResult identity_row(const config::Cell& cell, const at::Device& device);

/// Top-1/top-5/loss on the test split; `fp32_top1` is the row's reference (the cell's own top-1
/// for the baseline).
void evaluate(CellRun& run, const data::Dataset& test, const config::EvalRecipe& eval,
              const std::function<double()>& fp32_top1, const Report& report);

/// The sim-to-deploy gap: a profile with an integer engine on this machine lowers the quantized
/// model to LibTorch's quantized operators with the same scales and zero points and runs the test
/// set through both. A model that cannot be lowered keeps its simulated row, with the reason as a
/// `deploy` detail row. The engines are CPU-only: a GPU run's model comes back to `device` when it
/// cannot be lowered.
void deploy(CellRun& run, const config::Matrix& m, const at::Device& device, const Report& report);

/// One way to time a cell: `applies` says whether it can, `measure` fills the row's latency.
struct LatencyPath {
  const char* name;
  std::function<bool(const CellRun&)> applies;
  std::function<void(CellRun&, const config::LatencyRecipe&, const Report&)> measure;
};
/// In order of preference: the int8 engine the cell was lowered to, the profile's roofline model,
/// then the simulated model timed where it runs (CPU or GPU, labelled so).
std::vector<LatencyPath> latency_paths(const at::Device& device, const DeviceInfo& info);
/// The first path that applies (none when latency is disabled).
void measure(CellRun& run, const config::LatencyRecipe& latency, const std::vector<LatencyPath>& paths,
             const Report& report);

/// Closes the row: status ok, wall time, finish time; restores the fake-quant model.
store::CellResult record(CellRun& run);

}  // namespace qbench::runner::detail
