#pragma once
// The aligned pipeline's training, evaluation and latency measurement, shared by the FP32
// baseline, PTQ and QAT.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "qbench/common/files.h"
#include "qbench/config/matrix.h"
#include "qbench/data/dataset.h"
#include "qbench/quant/qmodules.h"

namespace torch::optim {
class Optimizer;
}

namespace qbench::train {

/// Called with (epoch 1-based, epochs, step in epoch, steps per epoch, running loss).
using TrainProgress = std::function<void(int, int, int64_t, int64_t, double)>;

struct TrainResult {
  double final_loss = 0;  ///< mean training loss of the last epoch
  double wall_s = 0;
  int64_t steps = 0;
};

/// Learning rate at `step` of `total_steps`: linear warm-up from warmup_start_lr to lr over the
/// warm-up steps, then cosine decay to 0 (MQBench's aligned schedule).
double lr_at(const config::TrainRecipe& r, int64_t step, int64_t steps_per_epoch, int64_t total_steps);

/// Cross-entropy with label smoothing eps: (1 - eps) * NLL + eps * mean over classes of -log p.
at::Tensor smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& target, double eps);

struct TrainHooks {
  TrainProgress progress;
  /// Called after each epoch (1-based) with the optimizer, e.g. to write a checkpoint.
  std::function<void(int, torch::optim::Optimizer&)> on_epoch_end;
  /// Called once before the first step, e.g. to restore optimizer state when resuming.
  std::function<void(torch::optim::Optimizer&)> on_start;
  /// Called after each optimiser step with the global step (0-based) and that batch's loss, e.g.
  /// to keep the loss trace (where two runs of one cell part ways).
  std::function<void(int64_t, double)> on_step;
  int start_epoch = 1;       ///< resume point: epochs before it are skipped (same shuffles after)
  std::string tag = "fp32";  ///< mixed into the shuffle/augmentation seeds
};

/// Trains `model` with SGD (Nesterov momentum) on the model's device (batches are loaded on the CPU
/// and moved there). Parameter groups: conv/linear weights with the
/// recipe's weight decay; BatchNorm parameters and biases without; the learnable quantizer
/// parameters in a group of their own with each quantizer's own decay (0 unless its paper says).
/// Shuffles per epoch from (seed, tag); batches come through a data::BatchLoader (decoded in the
/// background for streaming datasets), in Mode::Train when the recipe augments, each with the seed
/// derive_seed(seed, tag + "-augment-" + global step). Throws qbench::Error when the loss turns NaN/Inf.
TrainResult train_model(quant::QuantModel& model, const data::Dataset& train, const config::TrainRecipe& r,
                        uint64_t seed, const TrainHooks& hooks);
TrainResult train_model(quant::QuantModel& model, const data::TensorDataset& train, const config::TrainRecipe& r,
                        uint64_t seed, const TrainHooks& hooks);

/// train_model with the "fp32" tag and only a progress callback.
TrainResult train_fp32(quant::QuantModel& model, const data::Dataset& train, const config::TrainRecipe& r,
                       uint64_t seed, const TrainProgress& progress = {});
TrainResult train_fp32(quant::QuantModel& model, const data::TensorDataset& train, const config::TrainRecipe& r,
                       uint64_t seed, const TrainProgress& progress = {});

struct EvalResult {
  double top1 = 0, top5 = 0, loss = 0;  ///< percent, percent, mean plain cross-entropy
  int64_t images = 0;
  double wall_s = 0;
};

/// Evaluates in eval mode without gradients over the whole dataset, in order (Mode::Eval batches
/// through a data::BatchLoader, moved to the model's device).
EvalResult evaluate(quant::QuantModel& model, const data::Dataset& test, int64_t batch_size,
                    const std::function<void(int64_t, int64_t)>& progress = {});
EvalResult evaluate(quant::QuantModel& model, const data::TensorDataset& test, int64_t batch_size,
                    const std::function<void(int64_t, int64_t)>& progress = {});

struct LatencyResult {
  double p50_ms = 0, p90_ms = 0;
  int batch = 0;
};

/// Times `repeats` forward passes of a batch after `warmup` untimed ones (eval mode, no grad,
/// steady clock); returns the 50th and 90th percentiles. Runs on the model's device (the batch is
/// moved there before timing); on CUDA the device is synchronised before and after each timed
/// pass (torch::cuda::synchronize), so the time covers the kernels, not their launch.
LatencyResult measure_latency(quant::QuantModel& model, const at::Tensor& batch, int warmup, int repeats);

/// Training checkpoints (QAT epoch checkpoints, results/cache/cells/<key>/epoch_N.pt) are a
/// 80-byte qbench header and a LibTorch archive: bytes 0-7 kCheckpointMagic, 8-15 the archive's
/// length (little-endian), 16-79 the archive's SHA-256 (64 lowercase hex digits), then the
/// archive, whose root holds "model" (Module::save's layout) and "optimizer" (Optimizer::save).
/// `tail -c +81 FILE | sha256sum` reproduces the hash.
inline constexpr char kCheckpointMagic[9] = "QBCKPT01";
inline constexpr std::size_t kCheckpointHeaderBytes = 80;

/// Writes a training checkpoint atomically (common::atomic_write_file: temporary file in the same
/// folder, fsync, rename, fsync of the folder; the "checkpoint" of the test-only fault hook): a
/// reader finds the old file or the whole new one. Every tensor is copied to the CPU first (SGD
/// momentum buffers included), so a checkpoint written on a GPU reads on any machine.
void save_checkpoint(const torch::nn::Module& model, torch::optim::Optimizer& opt, const std::string& path);

/// Checks a checkpoint without loading it into a model. Verified: the qbench header's length and
/// SHA-256 match the archive. Unhashed: a bare LibTorch archive (written before checkpoints carried
/// a hash) that LibTorch reads and that holds "model" and "optimizer". Corrupt: check.problem names
/// the file and what is wrong (bad magic, truncated, length or hash mismatch, unreadable archive).
/// Throws qbench::DataError only when the file cannot be opened.
IntegrityCheck verify_checkpoint(const std::string& path);

/// Gives an Unhashed checkpoint its qbench header (the same archive bytes, rewritten atomically)
/// and returns the check of the result. Throws qbench::DataError when the file is not Unhashed.
IntegrityCheck add_checkpoint_hash(const std::string& path);

/// Reads save_checkpoint's file into `model` and `opt`, its tensors placed on the model's device,
/// after verifying it (an Unhashed one is accepted as it is). Throws qbench::DataError naming the
/// file for a Corrupt one, before anything is loaded. Returns what the check found.
Integrity load_checkpoint(torch::nn::Module& model, torch::optim::Optimizer& opt, const std::string& path);

/// Applies the training augmentation in place of a copy: random crop with 2-pixel padding (pad
/// value = the batch minimum, i.e. the background) and a horizontal flip with p = 0.5
/// (data::augment_pad_crop_flip, which in-memory datasets apply in Mode::Train).
at::Tensor augment_batch(const at::Tensor& images, uint64_t seed);

}  // namespace qbench::train
