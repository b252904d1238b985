#pragma once
// The report tests' store: two runs with known rows, shared by the golden tests and the tool that
// writes the fixture's HTML and LaTeX for the browser and pdflatex checks. Every number the
// tests assert is derived by hand from the values below (see the comments in test_report.cpp).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "qbench/common/strings.h"
#include "qbench/report/report.h"
#include "qbench/store/store.h"

namespace qbench::report_test {

using store::CellResult;
using store::PlannedCell;
using store::RunInfo;
using store::Store;


inline const uint64_t kHugeSeed = (uint64_t{1} << 63) + 5;
inline const std::string kError = "calibration diverged: scale=0, \"nan\" in layer1.conv\nhint: more calibration images";

inline std::string key(const std::string& name) { return sha256_hex(name); }

inline RunInfo run_info(const std::string& started) {
  RunInfo r;
  r.matrix_name = "academic";
  r.matrix_file = "matrices/academic.yaml";
  r.yaml_text = "name: academic\n";
  r.yaml_hash = sha256_hex(r.yaml_text);
  r.started_at = started;
  r.host = "bench-box";
  r.git_rev = "0123abcd";
  r.qbench_version = "0.1.0";
  r.torch_version = "2.3.0";
  r.threads = 2;
  r.command_line = "qbench run matrices/academic.yaml --store results.db";
  r.environment_json = R"({"qengine":"fbgemm","cpu":"test"})";
  return r;
}

inline CellResult result(int64_t run_id, const std::string& arch, const std::string& algorithm, int bits,
                   uint64_t seed, std::optional<double> top1, std::optional<double> fp32_top1) {
  CellResult r;
  r.run_id = run_id;
  const bool fp32 = algorithm == "fp32";
  const std::string label = fp32 ? "fp32" : "w" + std::to_string(bits) + "a" + std::to_string(bits);
  r.cell_key = key(arch + "/" + algorithm + "/" + label + "/" + std::to_string(seed));
  r.baseline_key = key(arch + "/fp32/fp32/" + std::to_string(seed));
  r.dataset = "fashion-mnist";
  r.arch = arch;
  r.algorithm = algorithm;
  r.profile = fp32 ? "none" : "academic";
  r.w_bits = r.a_bits = fp32 ? 32 : bits;
  r.seed = seed;
  r.kind = fp32 ? "fp32" : "ptq";
  r.status = top1 ? "ok" : "failed";
  r.top1 = top1;
  if (top1) {
    r.top5 = 99.0;
    r.loss = 0.25;
  }
  r.fp32_top1 = fp32_top1;
  r.quant_wall_s = fp32 ? std::nullopt : std::optional<double>(2.5);
  r.eval_wall_s = 1.0;
  r.wall_s = 3.5;
  r.eval_images = 10000;
  r.threads = 2;
  r.started_at = "2026-11-23T10:00:01.000Z";
  r.finished_at = "2026-11-23T10:00:04.500Z";
  return r;
}

/// A latency measurement at batch 32: median and 90th percentile (ms) and where it came from.
inline void timed(CellResult& r, double p50, double p90, const std::string& source) {
  r.latency_ms_p50 = p50;
  r.latency_ms_p90 = p90;
  r.latency_batch = 32;
  r.latency_source = source;
}

/// The sim-to-deploy columns: deployed top-1, agreement (%), logit cosine, SQNR (dB).
inline void deployed_as(CellResult& r, double top1, double agreement, double cosine, double sqnr_db) {
  r.deploy_top1 = top1;
  r.deploy_agreement = agreement;
  r.logit_cosine = cosine;
  r.sqnr_db = sqnr_db;
}

inline PlannedCell planned(int64_t run_id, int pos, const CellResult& r) {
  nlohmann::json cfg = {{"dataset", r.dataset}, {"arch", r.arch},     {"algorithm", r.algorithm},
                        {"profile", r.profile}, {"kind", r.kind},     {"w_bits", r.w_bits},
                        {"a_bits", r.a_bits},   {"seed", r.seed}};
  return PlannedCell{run_id, pos, r.cell_key, "pending", std::nullopt, cfg.dump()};
}

inline const std::string kOrtRefusal =
    "not deployed: export: layer1.0.conv1 has w_bits=4 & ONNX QDQ needs 8 (100% of its convs)\nhint: use w8a8";

/// Two runs. Run 1 finished the FP32 baseline of resnet20 seed 0; run 2 reuses it (skipped),
/// runs resnet20 minmax at w8a8 for seeds 0 and 1 and at w4a4 (fails), and mlp (a huge seed) at
/// fp32 and w8a8, leaving mlp w4a4 and one cell without a configuration pending. It also runs
/// resnet20 lsq (QAT) at w4a4 for seeds 0 and 1, and resnet20 minmax w8a8 seed 0 under a second
/// profile, tensorrt, timed on an integer backend and with its simulated-vs-deployed gap (a row
/// from before engines were named: no deploy_engine, no deploy_engines rows). Then resnet20
/// minmax seed 0 on two deployment profiles (no wall times, so the cost tables stay as they
/// were): w8a8 on x86-onednn, deployed on LibTorch oneDNN (its deploy_* columns) and on ONNX
/// Runtime (deploy_engines rows only); w8a8 on ort-cpu, deployed and timed on ONNX Runtime alone;
/// w4a4 on ort-cpu, which ONNX Runtime refused (a "not deployed" row, no deploy_* columns).
struct Fixture {
  Store store{":memory:"};
  int64_t run1 = 0, run2 = 0;

  Fixture() {
    run1 = store.begin_run(run_info("2026-11-22T09:00:00.000Z"));
    int64_t earlier = store.put_result(result(run1, "resnet20", "fp32", 32, 0, 91.50, std::nullopt));
    store.end_run(run1, "finished");

    run2 = store.begin_run(run_info("2026-11-23T10:00:00.000Z"));
    auto r_fp32_0 = result(run2, "resnet20", "fp32", 32, 0, 91.50, std::nullopt);
    auto r_w8_0 = result(run2, "resnet20", "minmax", 8, 0, 91.23, 91.50);
    timed(r_w8_0, 1.234, 1.5, "measured-fakequant");
    auto r_w4_0 = result(run2, "resnet20", "minmax", 4, 0, std::nullopt, std::nullopt);
    r_w4_0.error = kError;
    auto r_fp32_1 = result(run2, "resnet20", "fp32", 32, 1, 91.70, std::nullopt);
    auto r_w8_1 = result(run2, "resnet20", "minmax", 8, 1, 91.43, 91.70);
    auto m_fp32 = result(run2, "mlp", "fp32", 32, kHugeSeed, 88.00, std::nullopt);
    timed(m_fp32, 0.5, 0.61, "measured-fp32");
    auto m_w8 = result(run2, "mlp", "minmax", 8, kHugeSeed, 88.10, std::nullopt);  // FP32 from its baseline row
    timed(m_w8, 0.25, 0.3, "modeled");
    auto m_w4 = result(run2, "mlp", "minmax", 4, kHugeSeed, std::nullopt, std::nullopt);  // never run
    auto lsq_0 = result(run2, "resnet20", "lsq", 4, 0, 90.10, 91.50);
    auto lsq_1 = result(run2, "resnet20", "lsq", 4, 1, 90.50, 91.70);
    lsq_0.kind = lsq_1.kind = "qat";
    lsq_0.quant_wall_s = 120.0;
    lsq_0.wall_s = 125.0;
    lsq_1.quant_wall_s = 130.0;
    lsq_1.wall_s = 135.0;
    timed(lsq_0, 1.30, 1.50, "measured-fakequant");
    timed(lsq_1, 1.40, 1.60, "measured-fakequant");
    auto trt = result(run2, "resnet20", "minmax", 8, 0, 91.20, 91.50);
    trt.profile = "tensorrt";
    trt.cell_key = key("resnet20/minmax/w8a8/0/tensorrt");
    timed(trt, 0.40, 0.45, "measured-int8");
    deployed_as(trt, 91.00, 99.10, 0.9991, 28.4);

    auto deployed = [&](const std::string& profile, int bits, double top1) {
      auto r = result(run2, "resnet20", "minmax", bits, 0, top1, 91.50);
      r.profile = profile;
      r.cell_key = key("resnet20/minmax/w" + std::to_string(bits) + "a" + std::to_string(bits) + "/0/" + profile);
      r.quant_wall_s = r.eval_wall_s = r.wall_s = std::nullopt;
      return r;
    };
    auto onednn = deployed("x86-onednn", 8, 91.30);
    deployed_as(onednn, 91.10, 99.20, 0.9990, 27.5);
    onednn.deploy_engine = "libtorch-onednn";
    onednn.details = {
        {"deploy_engines", "libtorch-onednn",
         {{"top1", 91.10}, {"sim_top1", 91.30}, {"agreement", 99.20}, {"logit_cosine", 0.9990}, {"sqnr_db", 27.5},
          {"images", 10000}},
         "LibTorch onednn quantized operators (qbench's integer lowering)"},
        {"deploy_engines", "onnxruntime",
         {{"top1", 91.25}, {"sim_top1", 91.30}, {"agreement", 99.65}, {"logit_cosine", 0.9996}, {"sqnr_db", 31.0},
          {"images", 10000}, {"int8_ops", 19}, {"float_ops", 1}, {"int8_coverage", 95.0}},
         "onnxruntime-node 1.20.1, QDQ opset 13, 120 nodes; optimized graph: QLinearConv 19, Gemm 1"}};
    auto ort = deployed("ort-cpu", 8, 91.28);
    deployed_as(ort, 91.18, 99.40, 0.9995, 30.2);
    ort.deploy_engine = "onnxruntime";
    timed(ort, 0.80, 0.90, "measured-int8-ort");
    ort.details = {{"deploy_engines", "onnxruntime",
                    {{"top1", 91.18}, {"sim_top1", 91.28}, {"agreement", 99.40}, {"logit_cosine", 0.9995},
                     {"sqnr_db", 30.2}, {"images", 10000}, {"int8_ops", 20}, {"float_ops", 0},
                     {"int8_coverage", 100.0}, {"latency_ms_p50", 0.80}, {"latency_ms_p90", 0.90},
                     {"latency_batch", 32}, {"fp32_latency_ms_p50", 2.00}},
                    "onnxruntime-node 1.20.1, QDQ opset 13, 120 nodes; optimized graph: QLinearConv 20"}};
    auto ort_refused = deployed("ort-cpu", 4, 89.00);
    ort_refused.details = {{"deploy_engines", "onnxruntime", {}, kOrtRefusal}};

    auto skipped = planned(run2, 0, r_fp32_0);
    skipped.action = "skipped";
    skipped.result_id = earlier;
    PlannedCell unknown{run2, 8, key("no-config"), "pending", std::nullopt, ""};
    store.plan_cells(run2, {skipped, planned(run2, 1, r_w8_0), planned(run2, 2, r_w4_0), planned(run2, 3, r_fp32_1),
                            planned(run2, 4, r_w8_1), planned(run2, 5, m_fp32), planned(run2, 6, m_w8),
                            planned(run2, 7, m_w4), unknown, planned(run2, 9, lsq_0), planned(run2, 10, lsq_1),
                            planned(run2, 11, trt), planned(run2, 12, onednn), planned(run2, 13, ort),
                            planned(run2, 14, ort_refused)});
    for (const auto& r : {r_w8_0, r_w4_0, r_fp32_1, r_w8_1, m_fp32, m_w8, lsq_0, lsq_1, trt, onednn, ort, ort_refused})
      store.put_result(r);
    store.end_run(run2, "finished");
  }

  report::ReportInput input() const {
    auto in = report::load_input(store, run2);
    in.run.ended_at = "2026-11-23T11:00:00.000Z";  // end_run stamps the current time
    return in;
  }
};

}  // namespace qbench::report_test
