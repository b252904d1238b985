// The stages that leave deployable artifacts: save (the quantized cell's state under the cache)
// and deploy on ONNX Runtime (the cell exported as ONNX QDQ, run by the runtime on the test split).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "qbench/buildinfo.h"
#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/data/loader.h"
#include "qbench/export/cell_state.h"
#include "qbench/export/diagnose.h"
#include "qbench/export/onnx_export.h"
#include "qbench/export/ort.h"
#include "session.h"

namespace qbench::runner::detail {
namespace fs = std::filesystem;
using config::Cell;

namespace {

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

/// The test split as raw float32 (written batch by batch) and the simulation's logits and labels,
/// from one pass over it on the CPU.
struct TestPass {
  at::Tensor sim_logits, labels;
  std::vector<int64_t> shape;  ///< N, C, H, W
};
TestPass write_test_split(quant::QuantModel& model, const data::Dataset& test, int64_t batch_size,
                          const std::string& path) {
  at::NoGradGuard ng;
  model.eval();
  TestPass t;
  const int64_t n = test.size();
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error("cannot write " + path);
  data::BatchLoader loader(test, data::plan_sequential(n, batch_size));
  std::vector<at::Tensor> logits, labels;
  for (int64_t start = 0; start < n; start += batch_size) {
    auto batch = loader.next();
    if (!batch) throw Error("onnxruntime: the data loader ended early at image " + std::to_string(start));
    at::Tensor x = batch->images.to(at::kFloat).contiguous();
    if (t.shape.empty()) t.shape = x.sizes().vec();
    f.write(static_cast<const char*>(x.data_ptr()), static_cast<std::streamsize>(x.numel() * 4));
    logits.push_back(model.forward(x).to(at::kFloat));
    labels.push_back(batch->labels);
  }
  if (!f.flush()) throw Error("cannot write " + path);
  t.shape[0] = n;
  t.sim_logits = at::cat(logits);
  t.labels = at::cat(labels);
  return t;
}

}  // namespace

std::map<std::string, std::string> Session::cell_meta(const Cell& cell) const {
  const auto& [shape, classes] = *ds_shape_;
  std::map<std::string, std::string> meta = {
      {"cell_key", cell.key},
      {"baseline_key", cell.baseline_key},
      {"dataset", cell.dataset},
      {"arch", cell.arch},
      {"algorithm", cell.algorithm},
      {"profile", cell.profile},
      {"w_bits", std::to_string(cell.bits.w)},
      {"a_bits", std::to_string(cell.bits.a)},
      {"seed", std::to_string(cell.seed)},
      {"sample_shape", std::to_string(shape.channels) + "," + std::to_string(shape.height) + "," +
                           std::to_string(shape.width)},
      {"num_classes", std::to_string(classes)},
      {"qbench_version", QBENCH_VERSION},
      {"git_rev", QBENCH_GIT_REV}};
  if (auto it = m_.arch_options.find(cell.arch); it != m_.arch_options.end()) {
    const auto& o = it->second;
    if (o.is_onnx()) {
      meta["onnx"] = fs::absolute(o.onnx).string();
      meta["onnx_sha256"] = o.onnx_sha256;
    } else {
      char w[32];
      std::snprintf(w, sizeof w, "%.17g", o.width);
      meta["width"] = w;
      meta["stem"] = o.stem;
    }
  }
  return meta;
}

void Session::save_state(CellRun& run) {
  if (run.cell.kind == CellKind::Fp32) return;
  report("saving the cell's state");
  const std::string path = exporter::cell_state_path(opt_.cache_dir, run.cell.key);
  const auto st = exporter::capture_cell_state(*run.model, run.cell.bn_fold, cell_meta(run.cell));
  exporter::save_cell_state(path, st);
  run.state_path = path;
  std::vector<std::string> not_affine = st.not_affine();
  run.row.details.push_back({"artifacts",
                             "state",
                             {{"quantizers", static_cast<double>(st.quantizers.size())},
                              {"not_affine", static_cast<double>(not_affine.size())}},
                             path});
}

bool Session::wants_ort(const CellRun& run) const {
  if (run.cell.kind == CellKind::Fp32 || !run.profile) return false;
  if (run.profile->spec.engine == "onnxruntime") return true;
  return std::find(m_.deploy.engines.begin(), m_.deploy.engines.end(), "onnxruntime") != m_.deploy.engines.end();
}

void Session::deploy_ort(CellRun& run, const Report& rep) {
  if (!wants_ort(run)) return;
  const bool primary = run.profile->spec.engine == "onnxruntime";
  const fs::path dir = fs::path(opt_.cache_dir) / "cells" / run.cell.key;
  store::CellResult& r = run.row;
  const auto& [shape, classes] = *ds_shape_;
  const bool on_device = !device_.is_cpu();
  if (on_device) run.model->to(at::kCPU);
  try {
    fs::create_directories(dir);
    exporter::ExportOptions eo;
    eo.sample_shape = {shape.channels, shape.height, shape.width};
    eo.graph_name = run.cell.arch;
    eo.metadata = {{"qbench_cell_key", run.cell.key}, {"qbench_git_rev", QBENCH_GIT_REV}};
    rep("exporting ONNX QDQ");
    const std::string qdq = (dir / "model.qdq.onnx").string(), fp32 = (dir / "model.fp32.onnx").string();
    const auto g = exporter::export_onnx(*run.model, qdq, eo);
    eo.format = exporter::Format::Fp32;
    exporter::export_onnx(*run.model, fp32, eo);

    rep("onnxruntime: writing the test split");
    const std::string images = (dir / "test_images.f32").string();
    struct Remove {
      std::string p;
      ~Remove() {
        std::error_code ec;
        fs::remove(p, ec);
      }
    } remove_images{images};
    const TestPass t = write_test_split(*run.model, *run.test, m_.eval.batch_size, images);
    exporter::OrtRequest req;
    req.model = qdq;
    req.images_file = images;
    req.images_shape = t.shape;
    req.batch_size = m_.eval.batch_size;
    req.threads = at::get_num_threads();
    req.optimized_model = (dir / "model.qdq.ort-optimized.onnx").string();
    at::Tensor lat_batch;
    if (m_.latency.enabled) {
      const int64_t b = std::min<int64_t>(m_.latency.batch_size, run.test->size());
      std::vector<int64_t> first(static_cast<size_t>(b));
      for (int64_t i = 0; i < b; ++i) first[static_cast<size_t>(i)] = i;
      lat_batch = run.test->load_batch(first, data::Mode::Eval, 0).images;
      req.latency_batch = lat_batch;
      req.warmup = m_.latency.warmup;
      req.repeats = m_.latency.repeats;
    }
    rep("onnxruntime: evaluating the QDQ model");
    const auto ort = exporter::run_ort(req);
    double fp32_p50 = 0;
    if (lat_batch.defined()) {
      rep("onnxruntime: timing the FP32 export");
      exporter::OrtRequest fr;
      fr.model = fp32;
      fr.latency_batch = lat_batch;
      fr.warmup = m_.latency.warmup;
      fr.repeats = m_.latency.repeats;
      fr.threads = req.threads;
      fp32_p50 = exporter::run_ort(fr).p50_ms;
    }
    const auto a = deploy::agreement_of(t.sim_logits, ort.logits, t.labels);
    std::map<std::string, double> v = {{"top1", a.deploy_top1},
                                       {"sim_top1", a.sim_top1},
                                       {"agreement", a.agreement},
                                       {"logit_cosine", a.logit_cosine},
                                       {"sqnr_db", a.sqnr_db},
                                       {"images", static_cast<double>(a.images)},
                                       {"int8_ops", static_cast<double>(ort.census.int8_compute)},
                                       {"float_ops", static_cast<double>(ort.census.float_compute)},
                                       {"int8_coverage", ort.census.int8_coverage()}};
    if (lat_batch.defined()) {
      v["latency_ms_p50"] = ort.p50_ms;
      v["latency_ms_p90"] = ort.p90_ms;
      v["latency_batch"] = static_cast<double>(ort.latency_batch);
      v["fp32_latency_ms_p50"] = fp32_p50;
    }
    std::string ops;
    for (const auto& [op, n] : ort.census.ops)
      if (op.find("Conv") != std::string::npos || op.find("Gemm") != std::string::npos ||
          op.find("MatMul") != std::string::npos || op.rfind("QLinear", 0) == 0 ||
          op.find(".QLinear") != std::string::npos)
        ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
    std::string text = "onnxruntime-node " + ort.version + ", QDQ opset 13, " + std::to_string(g.nodes.size()) +
                       " nodes; optimized graph: " + ops;
    for (const auto& n : g.notes) text += "; " + n;
    r.details.push_back({"deploy_engines", "onnxruntime", v, text});
    if (a.agreement < 100.0) {
      // Where the runtime departs from the simulation: a diagnostic copy of the graph with every
      // layer's output exposed, on the first test batch (the deployed numbers above came from the
      // unmodified file).
      rep("onnxruntime: per-layer diagnosis");
      const int64_t b = std::min<int64_t>(64, run.test->size());
      std::vector<int64_t> first(static_cast<size_t>(b));
      for (int64_t i = 0; i < b; ++i) first[static_cast<size_t>(i)] = i;
      const at::Tensor batch = run.test->load_batch(first, data::Mode::Eval, 0).images;
      for (auto& d : exporter::diagnose_layers(*run.model, g, (dir / "model.qdq.diagnostic.onnx").string(), batch,
                                               req.threads))
        r.details.push_back(std::move(d));
    }
    if (primary) {
      r.deploy_top1 = a.deploy_top1;
      r.deploy_agreement = a.agreement;
      r.logit_cosine = a.logit_cosine;
      r.sqnr_db = a.sqnr_db;
      r.deploy_engine = "onnxruntime";
      if (lat_batch.defined()) run.ort_latency = train::LatencyResult{ort.p50_ms, ort.p90_ms, static_cast<int>(ort.latency_batch)};
    }
    log_info(cell_label(run.cell) + ": onnxruntime top-1 " + fixed2(a.deploy_top1) + "% (simulated " +
             fixed2(a.sim_top1) + "%), agreement " + fixed2(a.agreement) + "%, " +
             std::to_string(ort.census.int8_compute) + "/" +
             std::to_string(ort.census.int8_compute + ort.census.float_compute) + " convs/matmuls in int8" +
             (lat_batch.defined() ? ", " + fixed2(ort.p50_ms) + " ms int8 vs " + fixed2(fp32_p50) + " ms fp32 at batch " +
                                        std::to_string(ort.latency_batch)
                                  : std::string()));
  } catch (const Interrupted&) {
    if (on_device) run.model->to(device_);
    throw;
  } catch (const Error& e) {
    r.details.push_back({"deploy_engines", "onnxruntime", {}, std::string("not deployed: ") + e.what()});
    Progress::global().note("warning: " + cell_label(run.cell) + ": not deployed on onnxruntime: " + e.what());
  }
  if (on_device) run.model->to(device_);
}

}  // namespace qbench::runner::detail
