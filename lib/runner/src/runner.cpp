#include "qbench/runner/runner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qbench/buildinfo.h"
#include "qbench/common/errors.h"
#include "qbench/common/memory.h"
#include "qbench/common/progress.h"
#include "qbench/common/strings.h"
#include "qbench/data/dataset.h"
#include "qbench/deploy/deploy.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/ptq/datafree.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/device.h"
#include "qbench/quant/profile.h"
#include "qbench/runner/baseline_cache.h"
#include "qbench/runner/device.h"
#include "qbench/runner/inputs.h"
#include "qbench/runner/registries.h"
#include "qbench/store/store.h"
#include "qbench/train/train.h"

namespace qbench::runner {
namespace fs = std::filesystem;
using config::Cell;
using config::Matrix;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void log_info(const std::string& msg) {
  Progress::global().clear();
  spdlog::info(msg);
}

void log_warning(const std::string& msg) {
  Progress::global().clear();
  spdlog::warn(msg);
}

std::string cell_label(const Cell& c) {
  if (c.kind == "fp32") return c.arch + " fp32 seed" + std::to_string(c.seed);
  return c.arch + " " + c.algorithm + " " + c.bits.label() + " " + c.profile + " seed" + std::to_string(c.seed);
}

// A results row with the cell's identity filled in and no metrics yet.
store::CellResult identity_row(const Cell& cell, const at::Device& device) {
  store::CellResult r;
  r.cell_key = cell.key;
  r.baseline_key = cell.baseline_key;
  r.dataset = cell.dataset;
  r.arch = cell.arch;
  r.algorithm = cell.algorithm;
  r.profile = cell.profile;
  r.w_bits = cell.bits.w;
  r.a_bits = cell.bits.a;
  r.seed = cell.seed;
  r.kind = cell.kind;
  r.threads = at::get_num_threads();
  r.device = device.str();
  r.config_json = cell.resolved.dump();
  r.started_at = utc_now_iso();
  return r;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "unknown";
}

// Everything one run needs besides the cells: data, baselines and their evaluations.
class Session {
 public:
  Session(const Matrix& m, const RunOptions& opt, store::Store& st, at::Device device)
      : m_(m), opt_(opt), store_(st), device_(device), device_info_(describe_device(device)) {}

  store::CellResult execute(const Cell& cell, int index, int total);

 private:
  config::DatasetSpec dataset_spec() const;
  const data::Dataset& train_split(uint64_t seed);
  const data::Dataset& test_split();
  models::ModelSpec model_spec(const Cell& cell);
  std::shared_ptr<quant::QuantModel> baseline_model(const Cell& cell, double* train_wall_s);
  std::shared_ptr<quant::QuantModel> train_baseline(const Cell& cell, std::shared_ptr<quant::QuantModel> model,
                                                    const fs::path& ckpt, double* train_wall_s);
  train::EvalResult baseline_eval(const Cell& cell);
  void finetune_qat(const Cell& cell, quant::QuantModel& model);
  void report(const std::string& what) { Progress::global().update(status_ + " | " + what); }
  /// Moves a model built (and initialised or loaded) on the CPU to the run's device.
  void place(quant::QuantModel& model) const {
    if (!device_.is_cpu()) model.to(device_);
  }

  const Matrix& m_;
  const RunOptions& opt_;
  store::Store& store_;
  const at::Device device_;
  const DeviceInfo device_info_;
  std::string status_;
  data::DatasetPtr full_train_, test_;
  std::map<uint64_t, data::DatasetPtr> train_by_seed_;
  std::optional<std::pair<data::ItemShape, int64_t>> ds_shape_;  ///< item shape and classes of the dataset
  std::map<std::string, train::EvalResult> baseline_evals_;
  std::map<std::string, std::string> baseline_errors_;  ///< baselines that failed in this run
  std::map<std::string, ptq::Synthesis> synthesized_;   ///< data-free calibration images per baseline and settings
};

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

models::ModelSpec Session::model_spec(const Cell& cell) {
  if (!ds_shape_) {
    const auto& ds = test_split();
    ds_shape_ = std::make_pair(ds.item_shape(), ds.num_classes());
  }
  const auto& [shape, classes] = *ds_shape_;
  models::ModelSpec spec{shape.channels, classes, shape.height};
  if (auto it = m_.arch_options.find(cell.arch); it != m_.arch_options.end()) {
    spec.width = it->second.width;
    spec.stem = models::resolve_stem(it->second.stem, shape.height);
  } else {
    spec.stem = models::resolve_stem("auto", shape.height);
  }
  return spec;
}

std::shared_ptr<quant::QuantModel> Session::baseline_model(const Cell& cell, double* train_wall_s) {
  // Same seed, same initial weights: the baseline is a pure function of (dataset, recipe, seed).
  // Built, initialised and loaded on the CPU (the same weights for every device), then placed.
  at::manual_seed(cell.seed);
  auto model = models::make_model(cell.arch, model_spec(cell));
  if (auto it = m_.arch_options.find(cell.arch); it != m_.arch_options.end() && !it->second.weights.empty()) {
    // Imported FP32 weights stand in for training; the key holds the file's sha256.
    auto res = models::import_weights(*model, it->second.weights);
    log_info("imported " + std::to_string(res.tensors) + " tensors for " + cell.arch + " from " + it->second.weights);
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
  auto res = train::train_fp32(*model, train, m_.fp32, cell.seed,
                               [&](int ep, int eps, int64_t step, int64_t steps, double loss) {
                                 const double done = (ep - 1) + static_cast<double>(step) / steps;
                                 const double el = seconds_since(t0);
                                 const double eta = el / done * (eps - done);
                                 std::ostringstream os;
                                 os << "fp32 epoch " << ep << "/" << eps << " step " << step << "/" << steps
                                    << " loss " << std::fixed;
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
void Session::finetune_qat(const Cell& cell, quant::QuantModel& model) {
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
  if (first <= recipe.epochs) {
    const auto data = data::seeded_subset(train_split(cell.seed), m_.qat.train_images,
                                          data::derive_seed(cell.seed, "qat-train"));
    train::train_model(model, *data, recipe, cell.seed, hooks);
  }
  remove_qat_checkpoints(dir.string());  // the row is what persists; checkpoints only serve resumption
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

store::CellResult Session::execute(const Cell& cell, int index, int total) {
  auto t0 = std::chrono::steady_clock::now();
  status_ = "[" + std::to_string(index) + "/" + std::to_string(total) + "] " + cell_label(cell);
  report("starting");
  store::CellResult r = identity_row(cell, device_);

  double quant_wall = 0;
  auto model = baseline_model(cell, &quant_wall);
  at::Tensor deploy_calib;  // calibration (PTQ) or initialisation (QAT) images, for integer lowering
  std::string latency_source = "measured-fp32";
  if (cell.kind == "fp32") {
    r.quant_wall_s = quant_wall;  // training time of the baseline (0 when loaded from cache)
  } else {
    const auto& entry = quant::algorithm_registry().get(cell.algorithm);
    if (!entry.make) throw Error("algorithm '" + cell.algorithm + "' has no implementation");
    auto algo = entry.make();
    quant::AlgorithmContext ctx;
    ctx.profile = &quant::profile_registry().get(cell.profile);
    ctx.w_bits = cell.bits.w;
    ctx.a_bits = cell.bits.a;
    ctx.seed = cell.seed;
    ctx.calib_batch_size = m_.ptq.calib_batch_size;
    ctx.weight_observer = m_.ptq.observer.weight;
    ctx.activation_observer = m_.ptq.observer.activation;
    ctx.recon = m_.ptq.reconstruction;
    ctx.calibration = m_.ptq.calibration;
    ctx.progress = [this](double f, const std::string& what) {
      report(what + " " + std::to_string(static_cast<int>(f * 100)) + "%");
    };
    auto tq = std::chrono::steady_clock::now();
    if (entry.kind == "ptq" && ctx.calibration.source != "data") {
      // Data-free calibration: images synthesised from the FP32 model's BN statistics (before
      // any folding merges the BNs away), as many as calibration on data would draw.
      // The images depend only on the baseline, the settings and the seed: synthesised once per
      // run and shared by that baseline's cells (the cost is recorded with each).
      const auto& shape = ds_shape_->first;
      const std::string syn_key = cell.baseline_key + "|" + cell.resolved.at("ptq").at("calibration").dump() + "|" +
                                  std::to_string(m_.ptq.calib_images);
      auto cached = synthesized_.find(syn_key);
      const bool fresh = cached == synthesized_.end();
      if (fresh)
        cached = synthesized_
                     .emplace(syn_key, ptq::synthesize_calibration(*model, ctx.calibration.source, ctx.calibration,
                                                                   m_.ptq.calib_images,
                                                                   {shape.channels, shape.height, shape.width},
                                                                   data::derive_seed(cell.seed, "synthetic-calib"),
                                                                   ctx.progress))
                     .first;
      const auto& syn = cached->second;
      ctx.calib_images = syn.images;
      r.details.push_back({"calibration", ctx.calibration.source,
                           {{"seconds", syn.seconds}, {"images", static_cast<double>(syn.images.size(0))},
                            {"iters", static_cast<double>(syn.iters)}, {"initial_bn_loss", syn.initial_bn_loss},
                            {"final_bn_loss", syn.final_bn_loss}},
                           "synthesised calibration images (no training data)"});
      if (fresh)
        log_info("synthesised " + std::to_string(syn.images.size(0)) + " calibration images with " +
                 ctx.calibration.source + " in " + std::to_string(syn.seconds) + " s");
    } else if (entry.kind == "ptq") {
      ctx.calib_images =
          data::load_all(*data::seeded_subset(train_split(cell.seed), m_.ptq.calib_images,
                                              data::derive_seed(cell.seed, "calib")))
              .images;
    } else if (entry.kind == "qat") {
      ctx.init_images = data::load_all(*data::seeded_subset(train_split(cell.seed), m_.qat.init_images,
                                                            data::derive_seed(cell.seed, "qat-init")))
                            .images;
      ctx.finetune = [this, &cell](quant::QuantModel& qm) { finetune_qat(cell, qm); };
    }
    // BN folding (the profile's strategy, or the matrix's bn_fold axis) before any quantizer sees
    // a weight: strategy 0 merges the BN into the conv once, 1..4 fold on the fly.
    ctx.bn_fold = cell.bn_fold;
    if (cell.bn_fold >= 0) quant::apply_bn_fold(*model, cell.bn_fold);
    algo->apply(*model, ctx);
    r.quant_wall_s = seconds_since(tq);  // synthesis of data-free calibration images included
    deploy_calib = ctx.calib_images.defined() ? ctx.calib_images : ctx.init_images;
    for (auto& d : ctx.details) r.details.push_back(std::move(d));
    latency_source = "measured-fakequant";
  }

  const auto& test = test_split();
  auto ev = train::evaluate(*model, test, m_.eval.batch_size, [this](int64_t done, int64_t n) {
    report("evaluating " + std::to_string(done) + "/" + std::to_string(n));
  });
  r.top1 = ev.top1;
  r.top5 = ev.top5;
  r.loss = ev.loss;
  r.eval_images = ev.images;
  r.eval_wall_s = ev.wall_s;
  if (cell.kind == "fp32") baseline_evals_[cell.baseline_key] = ev;
  r.fp32_top1 = cell.kind == "fp32" ? ev.top1 : baseline_eval(cell).top1;

  const quant::Profile* profile = cell.kind == "fp32" ? nullptr : &quant::profile_registry().get(cell.profile);
  // The sim-to-deploy gap: a profile with an integer engine on this machine lowers the quantized
  // model to LibTorch's quantized operators with the same scales and zero points, runs the test
  // set through both and measures its latency on the engine. A model that cannot be lowered
  // (e.g. an unfolded BN from the bn_fold axis, a non-uniform quantizer) keeps its simulated row,
  // with the reason as a detail row and no deployed metrics.
  std::unique_ptr<deploy::Lowered> lowered;
  // The integer engines are CPU-only: lowering moves a GPU run's model to the CPU (where the
  // comparison and the int8 latency then run); if it cannot be lowered it goes back.
  if (profile && profile->spec.engine != "none") {
    try {
      report("lowering to " + profile->spec.engine + " int8");
      lowered = deploy::lower(*model, *profile, deploy_calib, m_.ptq.calib_batch_size);
      auto a = deploy::compare(*model, *lowered, test, m_.eval.batch_size);
      r.deploy_top1 = a.deploy_top1;
      r.deploy_agreement = a.agreement;
      r.logit_cosine = a.logit_cosine;
      r.sqnr_db = a.sqnr_db;
      for (auto& d : a.layers) r.details.push_back(std::move(d));
      log_info(cell_label(cell) + ": deployed on " + profile->spec.engine + " top-1 " + fixed2(a.deploy_top1) +
               "% (simulated " + fixed2(a.sim_top1) + "%), agreement " + fixed2(a.agreement) + "%");
    } catch (const Interrupted&) {
      throw;
    } catch (const Error& e) {
      lowered.reset();
      r.details.push_back({"deploy", profile->spec.engine, {}, std::string("not deployed: ") + e.what()});
      Progress::global().note("warning: " + cell_label(cell) + ": not deployed on " + profile->spec.engine + ": " +
                              e.what());
    }
    if (!lowered) place(*model);
  }
  // Measured latency: the first test images at the matrix's batch size, the same method for the
  // FP32, fake-quant and int8 models.
  auto record_latency = [&](const train::LatencyResult& lat, const std::string& source) {
    r.latency_ms_p50 = lat.p50_ms;
    r.latency_ms_p90 = lat.p90_ms;
    r.latency_batch = lat.batch;
    r.latency_source = source;
  };
  auto latency_batch = [&] {
    std::vector<int64_t> first(static_cast<std::size_t>(std::min<int64_t>(m_.latency.batch_size, test.size())));
    for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<int64_t>(i);
    return test.load_batch(first, data::Mode::Eval, 0).images;
  };
  if (m_.latency.enabled && lowered) {
    report("measuring int8 latency");
    record_latency(deploy::measure_latency(*lowered, latency_batch(), m_.latency.warmup, m_.latency.repeats),
                   "measured-int8");
  } else if (m_.latency.enabled && profile && profile->spec.roofline.declared()) {
    // No engine for this target here: the roofline model over the layers' recorded work
    // (eval's forward passes recorded each layer's MACs and tensor sizes).
    const int64_t batch = m_.latency.batch_size;
    std::vector<profiles::LayerCost> costs;
    double total = 0;
    for (const auto& l : model->quant_layers()) {
      profiles::LayerCost c{l.name, l.layer->macs_per_sample(), l.layer->weight_tensor().numel(),
                            l.layer->in_elems_per_sample(), l.layer->out_elems_per_sample()};
      const bool edge = (l.is_first || l.is_last) && profile->first_last_8bit;
      const int wb = edge ? 8 : quant::effective_bits(*profile, true, cell.bits.w);
      const int ab = edge ? 8 : quant::effective_bits(*profile, false, cell.bits.a);
      const double ms = profiles::roofline_layer_ms(profile->spec.roofline, c, batch, wb, ab);
      total += ms;
      r.details.push_back({"roofline_layers", l.name,
                           {{"ms", ms}, {"macs", static_cast<double>(c.macs)}, {"w_bits", double(wb)},
                            {"a_bits", double(ab)}},
                           profile->spec.roofline.device});
    }
    r.latency_ms_p50 = total;
    r.latency_ms_p90 = total;
    r.latency_batch = static_cast<int>(batch);
    r.latency_source = "modeled";
  } else if (m_.latency.enabled) {
    report("measuring latency");
    // Times on a GPU are not CPU times: the source says so (the report keeps sources apart) and a
    // detail row names the device.
    const bool gpu = device_.is_cuda();
    record_latency(train::measure_latency(*model, latency_batch(), m_.latency.warmup, m_.latency.repeats),
                   gpu ? latency_source + "-cuda" : latency_source);
    if (gpu)
      r.details.push_back({"latency", device_info_.name, {{"batch", static_cast<double>(r.latency_batch.value_or(0))}},
                           "measured on " + device_info_.label()});
  }
  lowered.reset();  // restores the fake-quant model before it goes
  r.status = "ok";
  r.wall_s = seconds_since(t0);
  r.finished_at = utc_now_iso();
  return r;
}

}  // namespace

std::vector<Cell> select_cells(const std::vector<Cell>& all, const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return all;
  std::vector<bool> keep(all.size(), false);
  for (const auto& p : prefixes) {
    bool hit = false;
    for (std::size_t i = 0; i < all.size(); ++i)
      if (all[i].key.rfind(p, 0) == 0) keep[i] = hit = true;
    if (!hit) throw ConfigError("--cell " + p + ": no cell of this matrix has a key starting with it (see --dry-run)");
  }
  std::vector<Cell> out;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!keep[i]) continue;
    out.push_back(all[i]);
  }
  return out;
}

std::string environment_json(int threads, const std::string& device) {
  nlohmann::json j;
  j["torch_version"] = TORCH_VERSION;
  j["sqlite_version"] = sqlite3_libversion();
  j["spdlog_version"] = std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                        std::to_string(SPDLOG_VER_PATCH);
  j["compiler"] = std::string("gcc ") + __VERSION__;
  j["cpu"] = cpu_model();
  j["intra_op_threads"] = threads;
  j["allocator"] = allocator_setting().empty() ? std::string("system (not tuned)") : allocator_setting();
  const DeviceInfo dev = describe_device(at::Device(device));
  j["device"] = dev.name;
  j["cuda_device_count"] = dev.cuda_device_count;
  if (at::Device(device).is_cuda()) {
    if (!dev.gpu_name.empty()) j["gpu"] = dev.gpu_name;
    j["nvidia_gpus"] = nvidia_gpu_names();
    const auto& ctx = at::globalContext();
    j["cudnn_deterministic"] = ctx.deterministicCuDNN();
    j["cudnn_benchmark"] = ctx.benchmarkCuDNN();
    j["allow_tf32"] = ctx.allowTF32CuDNN() || ctx.allowTF32CuBLAS();
  }
  j["parallel_info"] = at::get_parallel_info();
  j["qbench_version"] = QBENCH_VERSION;
  j["git_rev"] = QBENCH_GIT_REV;
  return j.dump();
}

RunSummary run_matrix(const Matrix& m, const std::vector<Cell>& cells, const RunOptions& opt) {
  // The device first: a bad --device fails (ConfigError) before anything is run or written.
  const at::Device device = select_device(opt.device);
  ensure_registered();
  // Every file the cells will read, checked before the store is opened (ConfigError: exit 2).
  validate_inputs(m, cells, opt);
  configure_device(device);
  const int threads = opt.threads > 0 ? opt.threads : m.threads;
  at::set_num_threads(threads);
  store::Store st(opt.db_path);

  store::RunInfo info;
  info.matrix_name = m.name;
  info.matrix_file = m.file;
  info.yaml_text = m.yaml_text;
  info.yaml_hash = m.yaml_hash;
  info.started_at = utc_now_iso();
  info.status = "running";
  info.host = host_name();
  info.git_rev = QBENCH_GIT_REV;
  info.qbench_version = QBENCH_VERSION;
  info.torch_version = TORCH_VERSION;
  info.threads = threads;
  info.device = device.str();
  info.command_line = opt.command_line;
  info.environment_json = environment_json(threads, info.device);

  RunSummary sum;
  sum.run_id = st.begin_run(info);
  std::vector<store::PlannedCell> plan;
  std::vector<bool> to_run;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    store::PlannedCell p;
    p.run_id = sum.run_id;
    p.position = static_cast<int>(i);
    p.cell_key = cells[i].key;
    p.config_json = cells[i].resolved.dump();
    auto prev = opt.force ? std::nullopt : st.finished_result(cells[i].key);
    if (prev) {
      p.action = "skipped";
      p.result_id = prev->id;
      ++sum.skipped;
    } else {
      p.action = "pending";
    }
    to_run.push_back(!prev);
    plan.push_back(p);
  }
  st.plan_cells(sum.run_id, plan);
  sum.planned = static_cast<int>(cells.size());
  log_info("run " + std::to_string(sum.run_id) + ": " + std::to_string(cells.size()) + " cells, " +
           std::to_string(sum.skipped) + " already finished, " + std::to_string(threads) + " threads, device " +
           describe_device(device).label() + ", store " + opt.db_path);

  Session session(m, opt, st, device);
  const int total_to_run = static_cast<int>(cells.size()) - sum.skipped;
  int index = 0;
  auto t_run = std::chrono::steady_clock::now();
  try {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (!to_run[i]) continue;
      ++index;
      const Cell& cell = cells[i];
      store::CellResult r;
      try {
        r = session.execute(cell, index, total_to_run);
      } catch (const Interrupted&) {
        throw;
      } catch (const c10::Error& e) {
        r.status = "failed";
        r.error = std::string("LibTorch error: ") + e.what_without_backtrace();
      } catch (const std::exception& e) {
        r.status = "failed";
        r.error = e.what();
      }
      if (r.status == "failed") {
        // The failed cell's identity; its metrics stay NULL.
        const std::string status = r.status, error = r.error;
        r = identity_row(cell, device);
        r.status = status;
        r.error = error;
        r.finished_at = utc_now_iso();
        ++sum.failed;
        Progress::global().clear();
        spdlog::error("cell {} ({}) failed: {}", cell.short_key(), cell_label(cell), r.error);
      }
      r.run_id = sum.run_id;
      st.put_result(r);
      ++sum.ran;
      if (r.status == "ok") {
        char buf[160];
        std::snprintf(buf, sizeof buf, "[%d/%d] %s: top-1 %.2f%% (FP32 %.2f%%) in %s", index, total_to_run,
                      cell_label(cell).c_str(), r.top1.value_or(0), r.fp32_top1.value_or(0),
                      format_duration(r.wall_s.value_or(0)).c_str());
        log_info(buf);
      }
      const double el = seconds_since(t_run);
      Progress::global().update("cells " + std::to_string(index) + "/" + std::to_string(total_to_run) + " done | ETA " +
                                    format_duration(el / index * (total_to_run - index)),
                                true);
    }
  } catch (const Interrupted&) {
    Progress::global().clear();
    st.end_run(sum.run_id, "interrupted");
    sum.interrupted = true;
    return sum;
  }
  Progress::global().clear();
  st.end_run(sum.run_id, sum.failed ? "failed" : "finished");
  return sum;
}

}  // namespace qbench::runner
