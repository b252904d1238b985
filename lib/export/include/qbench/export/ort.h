#pragma once
// ONNX Runtime as a deploy engine: npm's onnxruntime-node (pinned in scripts/ort/package.json,
// installed by scripts/install-deps.sh) run by Node.js on scripts/ort/qbench_ort.js. qbench writes
// the test tensors as raw float32, the script runs the unmodified exported file with ORT's full
// graph optimizations and writes back the logits, its latency and the optimized graph, whose
// operators say how much of the network ran as integer kernels.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "qbench/export/onnx_export.h"

namespace qbench::exporter {

/// Where the runtime is: the script folder ($QBENCH_ORT_DIR, else the source tree's scripts/ort)
/// and the node binary ($QBENCH_NODE, else `node` on PATH).
struct OrtSetup {
  std::string script_dir, node;
};
OrtSetup ort_setup();
/// Empty when ONNX Runtime can run here; else why not (no node, onnxruntime-node not installed).
std::string ort_unavailable_reason();

struct OrtRequest {
  std::string model;                ///< the ONNX file
  at::Tensor images;                ///< N x C x H x W float (evaluated in batches); may be undefined
  /// Instead of `images`: a file already holding them (raw float32, C order) and their shape,
  /// for test splits written batch by batch.
  std::string images_file;
  std::vector<int64_t> images_shape;
  int64_t batch_size = 256;
  at::Tensor latency_batch;         ///< B x C x H x W timed on its own; may be undefined
  int warmup = 5, repeats = 20;
  int threads = 1;
  std::string optimized_model;      ///< where ORT writes its optimized graph ("" = not written)
  std::string work_dir;             ///< scratch folder for the tensors (created, removed after)
};

struct OrtResult {
  std::string version;        ///< onnxruntime-node's version
  at::Tensor logits;          ///< N x classes (float) when images were given
  double eval_seconds = 0;
  double p50_ms = 0, p90_ms = 0;
  int64_t latency_batch = 0;  ///< 0 when no latency batch was given
  OpCensus census;            ///< of the optimized graph, when one was written
};

/// Runs one batch through `model` and returns the named outputs (a diagnostic model's
/// intermediate tensors, exposed as graph outputs), in order.
std::vector<at::Tensor> probe_ort(const std::string& model, const at::Tensor& batch,
                                  const std::vector<std::string>& outputs, int threads);

/// Runs one request. Throws Error with the runtime's message (and ConfigError when the runtime is
/// not installed, naming the install step).
OrtResult run_ort(const OrtRequest& request);

/// One model's latency from time_ort_models, milliseconds per batch.
struct OrtTiming {
  std::string model;
  double p50_ms = 0, p90_ms = 0;  ///< over all its timed runs
  std::vector<double> times_ms;   ///< every timed run, in the order they ran
};

/// Times several ONNX files on the same batch (B x C x H x W float) in one Node.js process,
/// interleaved so that load from other processes hits them alike: each model is loaded (full
/// graph optimizations, `threads` intra-op threads) and warmed up with `warmup` runs, then in each
/// of `rounds` rounds every model in turn runs `reps` timed runs. One entry per model, in order.
/// Throws as run_ort does.
std::vector<OrtTiming> time_ort_models(const std::vector<std::string>& models, const at::Tensor& batch, int threads,
                                       int warmup, int rounds, int reps);

}  // namespace qbench::exporter
