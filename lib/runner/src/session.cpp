// The session a run's cells share, and the stages that need it: prepare (the FP32 baseline) and
// quantize (the algorithm with its inputs). See session.h and stages.h.
#include "session.h"

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <locale>
#include <sstream>

#include "qbench/buildinfo.h"
#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/common/strings.h"
#include "qbench/mixed/allocate.h"
#include "qbench/models/safetensors.h"
#include "qbench/quant/device.h"
#include "qbench/quant/profile.h"
#include "qbench/runner/baseline_cache.h"
#include "archs.h"

namespace qbench::runner::detail {
namespace fs = std::filesystem;
using config::Cell;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Session::Session(const config::Matrix& m, const RunOptions& opt, store::Store& st, at::Device device)
    : m_(m),
      opt_(opt),
      store_(st),
      device_(device),
      device_info_(describe_device(device)),
      latency_paths_(latency_paths(device, device_info_)) {}

void Session::report(const std::string& what) const { Progress::global().update(status_ + " | " + what); }

config::DatasetSpec Session::dataset_spec() const {
  config::DatasetSpec spec = m_.dataset;
  if (!opt_.data_root.empty()) spec.root = opt_.data_root;
  return spec;
}

// Any registered dataset: in-memory ones hold their split, streaming ones (imagefolder,
// synthetic) only their index; subsets are views, so nothing is copied or decoded up front.
const data::Dataset& Session::test_split() {
  if (!test_) {
    auto full = data::open_dataset(dataset_spec(), data::Split::Test);
    // A fixed (seed-independent) test subset, so every cell of every seed sees the same images.
    test_ = data::seeded_subset(*full, m_.dataset.test_subset, 0);
  }
  return *test_;
}

const data::Dataset& Session::train_split(uint64_t seed) {
  if (!full_train_) full_train_ = data::open_dataset(dataset_spec(), data::Split::Train);
  auto it = train_by_seed_.find(seed);
  if (it == train_by_seed_.end())
    it = train_by_seed_
             .emplace(seed, data::seeded_subset(*full_train_, m_.dataset.train_subset,
                                                data::derive_seed(seed, "train-subset")))
             .first;
  return *it->second;
}

std::shared_ptr<quant::QuantModel> Session::make_arch(const Cell& cell) {
  if (!ds_shape_) {
    const auto& ds = test_split();
    ds_shape_ = std::make_pair(ds.item_shape(), ds.num_classes());
  }
  const auto& [shape, classes] = *ds_shape_;
  const onnx::ImportedGraph* graph = nullptr;
  if (auto it = m_.arch_options.find(cell.arch); it != m_.arch_options.end() && it->second.is_onnx()) {
    auto g = onnx_graphs_.find(cell.arch);
    if (g == onnx_graphs_.end()) g = onnx_graphs_.emplace(cell.arch, import_onnx_arch(m_, cell.arch, shape, classes)).first;
    graph = &g->second;
  }
  return build_arch(m_, cell.arch, shape, classes, graph);
}

std::shared_ptr<quant::QuantModel> Session::baseline_model(const Cell& cell, double* train_wall_s) {
  // Same seed, same initial weights: the baseline is a pure function of (dataset, recipe, seed).
  // Built, initialised and loaded on the CPU (the same weights for every device), then placed.
  at::manual_seed(cell.seed);
  auto model = make_arch(cell);
  if (weights_from_file(m_, cell.arch)) {
    // Imported FP32 weights (a safetensors file, or an ONNX file's own initializers) stand in for
    // training; the key holds the file's sha256.
    const auto& o = m_.arch_options.at(cell.arch);
    if (!o.weights.empty()) {
      auto res = models::import_weights(*model, o.weights);
      log_info("imported " + std::to_string(res.tensors) + " tensors for " + cell.arch + " from " + o.weights);
    }
    model->eval();
    place(*model);
    if (train_wall_s) *train_wall_s = 0;
    return model;
  }
  // Baseline checkpoints are safetensors with torchvision / timm names: the cache doubles as the
  // export (PyTorch loads them with safetensors.torch.load_file).
  const fs::path ckpt = fs::path(opt_.cache_dir) / "baselines" / (cell.baseline_key + ".safetensors");
  // One builder per baseline on this machine: waits while another run builds it, verifies what
  // is cached (a damaged checkpoint is moved aside and built again), holds the lock until trained.
  BaselineCheckpoint cached(ckpt.string(), log_info, log_warning);
  if (cached.load_into(*model)) {
    model->eval();
    place(*model);
    if (train_wall_s) *train_wall_s = 0;
    return model;
  }
  if (auto err = baseline_errors_.find(cell.baseline_key); err != baseline_errors_.end())
    throw Error("the FP32 baseline (" + cell.arch + ", seed " + std::to_string(cell.seed) +
                ") failed earlier in this run: " + err->second);
  try {
    place(*model);
    return train_baseline(cell, model, ckpt, train_wall_s);
  } catch (const Interrupted&) {
    throw;
  } catch (const std::exception& e) {
    baseline_errors_[cell.baseline_key] = e.what();
    throw;
  }
}

std::shared_ptr<quant::QuantModel> Session::train_baseline(const Cell& cell, std::shared_ptr<quant::QuantModel> model,
                                                           const fs::path& ckpt, double* train_wall_s) {
  const auto& train = train_split(cell.seed);
  log_info("training FP32 baseline " + cell.arch + " seed " + std::to_string(cell.seed) + " on " +
           std::to_string(train.size()) + " images, " + std::to_string(m_.fp32.epochs) + " epochs");
  auto t0 = std::chrono::steady_clock::now();
  auto res = train::train_fp32(
      *model, train, m_.fp32, cell.seed, [&](int ep, int eps, int64_t step, int64_t steps, double loss) {
        const double done = (ep - 1) + static_cast<double>(step) / steps;
        const double el = seconds_since(t0);
        const double eta = el / done * (eps - done);
        std::ostringstream os;
        os << "fp32 epoch " << ep << "/" << eps << " step " << step << "/" << steps << " loss " << std::fixed;
        os.precision(4);
        os << loss << " | ETA " << format_duration(eta);
        report(os.str());
      });
  if (train_wall_s) *train_wall_s = res.wall_s;
  // Written to a temporary file then renamed: a checkpoint is whole or absent, even if we are killed.
  // The tensors are copied to the CPU as they are written, so the cache is the same on any device.
  models::export_weights(*model, ckpt.string(),
                         {{"format", "pt"},
                          {"qbench_baseline_key", cell.baseline_key},
                          {"arch", cell.arch},
                          {"dataset", m_.dataset.name},
                          {"seed", std::to_string(cell.seed)},
                          {"config", config::baseline_config(m_, cell.arch, cell.seed).dump()},
                          {"sample_shape", cell_meta(cell).at("sample_shape")},
                          {"num_classes", std::to_string(ds_shape_->second)},
                          {"qbench_version", QBENCH_VERSION},
                          {"git_rev", QBENCH_GIT_REV}});
  log_info("baseline trained in " + format_duration(res.wall_s) + " (final train loss " +
           std::to_string(res.final_loss) + "), cached at " + ckpt.string());
  return model;
}

train::EvalResult Session::baseline_eval(const Cell& cell) {
  auto it = baseline_evals_.find(cell.baseline_key);
  if (it != baseline_evals_.end()) return it->second;
  train::EvalResult ev;
  if (auto prev = store_.finished_result(cell.baseline_key); prev && prev->top1) {
    ev.top1 = *prev->top1;
    ev.top5 = prev->top5.value_or(0);
    ev.loss = prev->loss.value_or(0);
    ev.images = prev->eval_images;
  } else {
    // Running a cell alone (e.g. one array task) without its baseline row: evaluate it here.
    auto model = baseline_model(cell, nullptr);
    ev = train::evaluate(*model, test_split(), m_.eval.batch_size);
  }
  baseline_evals_[cell.baseline_key] = ev;
  return ev;
}

// QAT fine-tuning with per-epoch checkpoints under <cache>/cells/<cell key>/, so an interrupted
// cell resumes at its last finished epoch with the same shuffles and optimizer state.
void Session::finetune_qat(const Cell& cell, quant::QuantModel& model, CellDetails& details) {
  const config::TrainRecipe recipe = config::qat_recipe_for(m_, cell.algorithm);
  const fs::path dir = fs::path(opt_.cache_dir) / "cells" / cell.key;
  const int last = qat_resume_epoch(dir.string(), log_info, log_warning);  // the last checkpoint that verifies
  train::TrainHooks hooks;
  hooks.tag = "qat-" + cell.algorithm;
  hooks.start_epoch = last + 1;
  // Checkpoints hold CPU tensors and load onto the model's device (train::save_checkpoint).
  if (last > 0) {
    log_info("resuming QAT of " + cell.short_key() + " after epoch " + std::to_string(last));
    hooks.on_start = [&model, path = (dir / ("epoch_" + std::to_string(last) + ".pt")).string()](
                         torch::optim::Optimizer& opt) { train::load_checkpoint(model, opt, path); };
  }
  hooks.on_epoch_end = [&](int epoch, torch::optim::Optimizer& opt) {
    fs::create_directories(dir);
    train::save_checkpoint(model, opt, (dir / ("epoch_" + std::to_string(epoch) + ".pt")).string());
    if (epoch > 1) fs::remove(dir / ("epoch_" + std::to_string(epoch - 1) + ".pt"));
  };
  auto t0 = std::chrono::steady_clock::now();
  const int first = hooks.start_epoch;
  hooks.progress = [&, first](int ep, int eps, int64_t step, int64_t steps, double loss) {
    const double done = (ep - first) + static_cast<double>(step) / steps;
    const double eta = seconds_since(t0) / done * ((eps - first + 1) - done);
    char buf[160];
    std::snprintf(buf, sizeof buf, "qat epoch %d/%d step %lld/%lld loss %.4f | ETA %s", ep, eps,
                  static_cast<long long>(step), static_cast<long long>(steps), loss, format_duration(eta).c_str());
    report(buf);
  };
  // The loss of every step, kept with the row: a training curve to plot, and where two runs of
  // one cell (other threads, another machine) part ways (issue 21's thread study).
  std::vector<double> losses;
  int64_t first_step = -1;
  hooks.on_step = [&](int64_t step, double loss) {
    if (first_step < 0) first_step = step;
    losses.push_back(loss);
  };
  if (first <= recipe.epochs) {
    const auto data =
        data::seeded_subset(train_split(cell.seed), m_.qat.train_images, data::derive_seed(cell.seed, "qat-train"));
    train::train_model(model, *data, recipe, cell.seed, hooks);
  }
  if (!losses.empty()) {
    std::ostringstream trace;
    trace.imbue(std::locale::classic());
    trace.precision(9);
    for (size_t i = 0; i < losses.size(); ++i) trace << (i ? "," : "") << losses[i];
    details.push_back({"qat_loss_trace",
                       cell.algorithm,
                       {{"first_step", static_cast<double>(first_step)},
                        {"steps", static_cast<double>(losses.size())},
                        {"final_loss", losses.back()}},
                       trace.str()});
  }
  remove_qat_checkpoints(dir.string());  // the row is what persists; checkpoints only serve resumption
}

CellRun Session::prepare(const Cell& cell) {
  CellRun run(cell);
  run.row = identity_row(cell, device_);
  double train_wall = 0;
  run.model = baseline_model(cell, &train_wall);
  if (cell.kind == CellKind::Fp32)
    run.row.quant_wall_s = cell.is_baseline() ? train_wall : 0;  // training time of the baseline (0 when cached)
  else
    run.profile = &quant::profile_registry().get(cell.profile);
  return run;
}

const ptq::Synthesis& Session::synthesized(CellRun& run,
                                           const std::function<void(double, const std::string&)>& progress) {
  // Data-free calibration: images synthesised from the FP32 model's BN statistics (before any
  // folding merges the BNs away), as many as calibration on data would draw. They depend only on
  // the baseline, the settings and the seed: synthesised once per run and shared by that
  // baseline's cells (the cost is recorded with each).
  const Cell& cell = run.cell;
  const config::CalibrationRecipe& calibration = m_.ptq.calibration;
  const auto& shape = ds_shape_->first;
  const std::string syn_key = cell.baseline_key + "|" + cell.resolved.at("ptq").at("calibration").dump() + "|" +
                              std::to_string(m_.ptq.calib_images);
  auto cached = synthesized_.find(syn_key);
  if (cached == synthesized_.end()) {
    cached = synthesized_
                 .emplace(syn_key,
                          ptq::synthesize_calibration(*run.model, calibration.source, calibration, m_.ptq.calib_images,
                                                      {shape.channels, shape.height, shape.width},
                                                      data::derive_seed(cell.seed, "synthetic-calib"), progress))
                 .first;
    log_info("synthesised " + std::to_string(cached->second.images.size(0)) + " calibration images with " +
             calibration.source + " in " + std::to_string(cached->second.seconds) + " s");
  }
  const auto& syn = cached->second;
  run.row.details.push_back({"calibration",
                             calibration.source,
                             {{"seconds", syn.seconds},
                              {"images", static_cast<double>(syn.images.size(0))},
                              {"iters", static_cast<double>(syn.iters)},
                              {"initial_bn_loss", syn.initial_bn_loss},
                              {"final_bn_loss", syn.final_bn_loss}},
                             "synthesised calibration images (no training data)"});
  return syn;
}

quant::AlgorithmContext Session::algorithm_context(CellRun& run, const quant::AlgorithmEntry& entry) {
  const Cell& cell = run.cell;
  quant::AlgorithmContext ctx;
  ctx.profile = run.profile;
  ctx.w_bits = cell.bits.w;
  ctx.a_bits = cell.bits.a;
  ctx.seed = cell.seed;
  ctx.calib_batch_size = m_.ptq.calib_batch_size;
  ctx.weight_observer = m_.ptq.observer.weight;
  ctx.activation_observer = m_.ptq.observer.activation;
  if (!entry.settings.empty()) ctx.settings = m_.settings.at(entry.settings.id());
  ctx.progress = [this](double f, const std::string& what) {
    report(what + " " + std::to_string(static_cast<int>(f * 100)) + "%");
  };
  if (entry.kind == CellKind::Ptq && m_.ptq.calibration.source != "data") {
    ctx.calib_images = synthesized(run, ctx.progress).images;
  } else if (entry.kind == CellKind::Ptq) {
    ctx.calib_images = data::load_all(*data::seeded_subset(train_split(cell.seed), m_.ptq.calib_images,
                                                           data::derive_seed(cell.seed, "calib")))
                           .images;
  } else if (entry.kind == CellKind::Qat) {
    ctx.init_images = data::load_all(*data::seeded_subset(train_split(cell.seed), m_.qat.init_images,
                                                          data::derive_seed(cell.seed, "qat-init")))
                          .images;
    ctx.qat_range_init = m_.qat.range_init;
    ctx.finetune = [this, &cell, &run](quant::QuantModel& qm) { finetune_qat(cell, qm, run.row.details); };
  }
  return ctx;
}

void Session::quantize(CellRun& run) {
  if (run.cell.kind == CellKind::Fp32) return;
  const auto& entry = quant::algorithm_registry().get(run.cell.algorithm);
  if (!entry.make) throw Error("algorithm '" + run.cell.algorithm + "' has no implementation");
  auto algo = entry.make();
  auto t0 = std::chrono::steady_clock::now();
  // Mixed precision chooses each layer's widths on the FP32 model, before any folding or quantizer.
  if (run.cell.bits.is_mixed()) allocate_bits(run);
  quant::AlgorithmContext ctx = algorithm_context(run, entry);
  // BN folding (the profile's strategy, or the matrix's bn_fold axis) before any quantizer sees
  // a weight: strategy 0 merges the BN into the conv once, 1..4 fold on the fly.
  ctx.bn_fold = run.cell.bn_fold;
  if (run.cell.bn_fold >= 0 && quant::apply_bn_fold(*run.model, run.cell.bn_fold) == 0) {
    // A graph without BatchNorm (PyTorch's default export folds BN into the convs): the profile's
    // strategy has nothing to fold, which the row says; a strategy asked for by the bn_fold axis
    // is refused, since the cell would not be what it claims.
    if (run.cell.bn_fold_from_matrix)
      throw Error("bn_fold " + std::to_string(run.cell.bn_fold) + " needs BatchNorm layers, and " + run.cell.arch +
                  " has none (BN folded into its convs at export; export with "
                  "training=torch.onnx.TrainingMode.PRESERVE to keep them)");
    run.row.details.push_back({"bn_fold", run.cell.arch, {{"strategy", static_cast<double>(run.cell.bn_fold)}},
                               "no BatchNorm layers: the profile's folding strategy has nothing to fold"});
  }
  algo->apply(*run.model, ctx);
  run.row.quant_wall_s = seconds_since(t0);  // synthesis of data-free calibration images included
  run.deploy_calib = ctx.calib_images.defined() ? ctx.calib_images : ctx.init_images;
  for (auto& d : ctx.details) run.row.details.push_back(std::move(d));
  run.latency_source = "measured-fakequant";
}

store::CellResult Session::execute(const Cell& cell, int index, int total) {
  status_ = "[" + std::to_string(index) + "/" + std::to_string(total) + "] " + cell_label(cell);
  report("starting");
  const Report rep = [this](const std::string& what) { report(what); };
  CellRun run = prepare(cell);
  quantize(run);
  if (cell.has_noise()) {
    // A noise applies at evaluation only: the row is the noisy evaluation of the plain cell's
    // model; nothing is saved, deployed or timed (the plain cell's row has those).
    evaluate_noise(run);
    return record(run);
  }
  evaluate(
      run, test_split(), m_.eval, [&] { return baseline_eval(cell).top1; }, rep);
  if (cell.kind != CellKind::Fp32) {
    // What the quantized model costs (from its quantizers and the MACs the evaluation recorded):
    // a mixed cell's achieved budget, and the uniform cells' points of the same charts.
    const mixed::Cost c = mixed::model_cost(*run.model);
    run.row.details.push_back({"model_cost",
                               cell.bits.label(),
                               {{"size_kb", c.size_kb},
                                {"bops", c.bops},
                                {"bops_ratio", c.bops_ratio},
                                {"avg_w_bits", c.avg_w_bits},
                                {"avg_a_bits", c.avg_a_bits}},
                               "weights at their widths (biases and BN excluded), BOPs = MACs x w x a per sample"});
  }
  if (cell.kind == CellKind::Fp32) {
    train::EvalResult ev;
    ev.top1 = run.row.top1.value_or(0);
    ev.top5 = run.row.top5.value_or(0);
    ev.loss = run.row.loss.value_or(0);
    ev.images = run.row.eval_images;
    ev.wall_s = run.row.eval_wall_s.value_or(0);
    baseline_evals_[cell.baseline_key] = ev;
  }
  save_state(run);
  deploy_ort(run, rep);
  deploy(run, m_, device_, rep);
  measure(run, m_.latency, latency_paths_, rep);
  return record(run);
}

}  // namespace qbench::runner::detail
