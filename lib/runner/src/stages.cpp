// The stages after quantization: evaluate, deploy, measure, record (see stages.h).
#include "stages.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/common/strings.h"
#include "qbench/profiles/profiles.h"
#include "qbench/train/train.h"

namespace qbench::runner::detail {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

/// The first test images at the matrix's latency batch size: every latency path times the same
/// batch.
at::Tensor latency_batch(const CellRun& run, const config::LatencyRecipe& latency) {
  const data::Dataset& test = *run.test;
  std::vector<int64_t> first(static_cast<std::size_t>(std::min<int64_t>(latency.batch_size, test.size())));
  for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<int64_t>(i);
  return test.load_batch(first, data::Mode::Eval, 0).images;
}

void set_latency(store::CellResult& r, const train::LatencyResult& lat, const std::string& source) {
  r.latency_ms_p50 = lat.p50_ms;
  r.latency_ms_p90 = lat.p90_ms;
  r.latency_batch = lat.batch;
  r.latency_source = source;
}

}  // namespace

void log_info(const std::string& msg) {
  Progress::global().clear();
  spdlog::info(msg);
}

void log_warning(const std::string& msg) {
  Progress::global().clear();
  spdlog::warn(msg);
}

std::string cell_label(const config::Cell& c) {
  const std::string noise = c.has_noise() ? " noise " + c.noise : "";
  if (c.kind == CellKind::Fp32) return c.arch + " fp32 seed" + std::to_string(c.seed) + noise;
  return c.arch + " " + c.algorithm + " " + c.bits.label() + " " + c.profile + " seed" + std::to_string(c.seed) + noise;
}

store::CellResult identity_row(const config::Cell& cell, const at::Device& device) {
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
  r.kind = to_string(cell.kind);
  r.threads = at::get_num_threads();
  r.device = device.str();
  r.config_json = cell.resolved.dump();
  r.started_at = utc_now_iso();
  return r;
}

void evaluate(CellRun& run, const data::Dataset& test, const config::EvalRecipe& eval,
              const std::function<double()>& fp32_top1, const Report& report) {
  run.test = &test;
  auto ev = train::evaluate(*run.model, test, eval.batch_size, [&](int64_t done, int64_t n) {
    report("evaluating " + std::to_string(done) + "/" + std::to_string(n));
  });
  store::CellResult& r = run.row;
  r.top1 = ev.top1;
  r.top5 = ev.top5;
  r.loss = ev.loss;
  r.eval_images = ev.images;
  r.eval_wall_s = ev.wall_s;
  r.fp32_top1 = run.cell.kind == CellKind::Fp32 ? ev.top1 : fp32_top1();
}

void deploy(CellRun& run, const config::Matrix& m, const at::Device& device, const Report& report) {
  if (!run.profile) return;
  const std::string& engine = run.profile->spec.engine;
  if (engine != "onednn" && engine != "qnnpack") return;  // none, or onnxruntime (Session::deploy_ort)
  store::CellResult& r = run.row;
  try {
    report("lowering to " + engine + " int8");
    run.lowered = deploy::lower(*run.model, *run.profile, run.deploy_calib, m.ptq.calib_batch_size);
    auto a = deploy::compare(*run.model, *run.lowered, *run.test, m.eval.batch_size);
    r.deploy_top1 = a.deploy_top1;
    r.deploy_agreement = a.agreement;
    r.logit_cosine = a.logit_cosine;
    r.sqnr_db = a.sqnr_db;
    r.deploy_engine = "libtorch-" + engine;
    r.details.push_back({"deploy_engines",
                         r.deploy_engine,
                         {{"top1", a.deploy_top1},
                          {"sim_top1", a.sim_top1},
                          {"agreement", a.agreement},
                          {"logit_cosine", a.logit_cosine},
                          {"sqnr_db", a.sqnr_db},
                          {"images", static_cast<double>(a.images)}},
                         "LibTorch " + engine + " quantized operators (qbench's integer lowering)"});
    for (auto& d : a.layers) r.details.push_back(std::move(d));
    log_info(cell_label(run.cell) + ": deployed on " + engine + " top-1 " + fixed2(a.deploy_top1) + "% (simulated " +
             fixed2(a.sim_top1) + "%), agreement " + fixed2(a.agreement) + "%");
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {
    run.lowered.reset();
    r.details.push_back({"deploy", engine, {}, std::string("not deployed: ") + e.what()});
    r.details.push_back({"deploy_engines", "libtorch-" + engine, {}, std::string("not deployed: ") + e.what()});
    Progress::global().note("warning: " + cell_label(run.cell) + ": not deployed on " + engine + ": " + e.what());
  }
  if (!run.lowered && !device.is_cpu()) run.model->to(device);
}

std::vector<LatencyPath> latency_paths(const at::Device& device, const DeviceInfo& info) {
  std::vector<LatencyPath> paths;
  // ONNX Runtime, the profile's engine: timed when the cell was deployed there (Session::deploy_ort).
  paths.push_back({"int8-ort", [](const CellRun& run) { return run.ort_latency.has_value(); },
                   [](CellRun& run, const config::LatencyRecipe&, const Report&) {
                     set_latency(run.row, *run.ort_latency, "measured-int8-ort");
                   }});
  // The integer engine the cell was lowered to.
  paths.push_back({"int8", [](const CellRun& run) { return run.lowered != nullptr; },
                   [](CellRun& run, const config::LatencyRecipe& l, const Report& report) {
                     report("measuring int8 latency");
                     set_latency(run.row,
                                 deploy::measure_latency(*run.lowered, latency_batch(run, l), l.warmup, l.repeats),
                                 "measured-int8");
                   }});
  // No engine for this target here: the roofline model over the layers' recorded work (the
  // evaluation's forward passes recorded each layer's MACs and tensor sizes).
  paths.push_back(
      {"roofline", [](const CellRun& run) { return run.profile && run.profile->spec.roofline.declared(); },
       [](CellRun& run, const config::LatencyRecipe& l, const Report&) {
         const quant::Profile& profile = *run.profile;
         const int64_t batch = l.batch_size;
         double total = 0;
         for (const auto& layer : run.model->quant_layers()) {
           profiles::LayerCost c{layer.name, layer.layer->macs_per_sample(), layer.layer->weight_tensor().numel(),
                                 layer.layer->in_elems_per_sample(), layer.layer->out_elems_per_sample()};
           const bool edge = (layer.is_first || layer.is_last) && profile.first_last_8bit;
           int wb = edge ? 8 : quant::effective_bits(profile, true, run.cell.bits.w);
           int ab = edge ? 8 : quant::effective_bits(profile, false, run.cell.bits.a);
           // A mixed-precision cell's layers carry their own widths.
           if (auto it = run.model->bit_allocation().find(layer.name); it != run.model->bit_allocation().end()) {
             wb = quant::effective_bits(profile, true, it->second.w);
             ab = quant::effective_bits(profile, false, it->second.a);
           }
           const double ms = profiles::roofline_layer_ms(profile.spec.roofline, c, batch, wb, ab);
           total += ms;
           run.row.details.push_back(
               {"roofline_layers",
                layer.name,
                {{"ms", ms}, {"macs", static_cast<double>(c.macs)}, {"w_bits", double(wb)}, {"a_bits", double(ab)}},
                profile.spec.roofline.device});
         }
         run.row.latency_ms_p50 = total;
         run.row.latency_ms_p90 = total;
         run.row.latency_batch = static_cast<int>(batch);
         run.row.latency_source = "modeled";
       }});
  // The simulated model where it runs. Times on a GPU are not CPU times: the source says so (the
  // report keeps sources apart) and a detail row names the device.
  paths.push_back({"measured", [](const CellRun&) { return true; },
                   [gpu = device.is_cuda(), info](CellRun& run, const config::LatencyRecipe& l, const Report& report) {
                     report("measuring latency");
                     set_latency(run.row,
                                 train::measure_latency(*run.model, latency_batch(run, l), l.warmup, l.repeats),
                                 gpu ? run.latency_source + "-cuda" : run.latency_source);
                     if (gpu)
                       run.row.details.push_back({"latency",
                                                  info.name,
                                                  {{"batch", static_cast<double>(run.row.latency_batch.value_or(0))}},
                                                  "measured on " + info.label()});
                   }});
  return paths;
}

void measure(CellRun& run, const config::LatencyRecipe& latency, const std::vector<LatencyPath>& paths,
             const Report& report) {
  if (!latency.enabled) return;
  for (const auto& p : paths)
    if (p.applies(run)) {
      p.measure(run, latency, report);
      return;
    }
}

store::CellResult record(CellRun& run) {
  run.lowered.reset();  // restores the fake-quant model before it goes
  run.row.status = to_string(CellStatus::Ok);
  run.row.wall_s = seconds_since(run.started);
  run.row.finished_at = utc_now_iso();
  return std::move(run.row);
}

}  // namespace qbench::runner::detail
