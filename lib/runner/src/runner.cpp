#include "qbench/runner/runner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

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
#include "session.h"
#include "stages.h"

namespace qbench::runner {
namespace fs = std::filesystem;
using config::Cell;
using config::Matrix;
using detail::cell_label;
using detail::identity_row;
using detail::log_info;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

// The BLAS and LAPACK libraries this process loaded, as files (Debian's alternatives pick them at
// run time: OpenBLAS, BLIS or the reference BLAS give different float sums, and a minmax w4a4
// cell moved by points between them), from /proc/self/maps.
std::vector<std::string> loaded_blas() {
  std::ifstream f("/proc/self/maps");
  std::string line;
  std::vector<std::string> out;
  while (std::getline(f, line)) {
    const auto p = line.find('/');
    if (p == std::string::npos) continue;
    const std::string path = line.substr(p);
    const std::string base = fs::path(path).filename().string();
    if (base.rfind("libblas", 0) != 0 && base.rfind("libopenblas", 0) != 0 && base.rfind("liblapack", 0) != 0 &&
        base.rfind("libblis", 0) != 0)
      continue;
    if (std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
  }
  return out;
}

// The widest vector extension the CPU offers (what oneDNN and qbench's kernel clones dispatch to,
// unless ONEDNN_MAX_CPU_ISA caps oneDNN).
std::string cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  return "x86-64";
#else
  return "unknown";
#endif
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
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
  j["cpu_isa"] = cpu_isa();
  j["blas"] = loaded_blas();
  j["onednn_max_cpu_isa"] = env_or("ONEDNN_MAX_CPU_ISA", env_or("DNNL_MAX_CPU_ISA", "default").c_str());
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

  detail::Session session(m, opt, st, device);
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
        r.status = to_string(CellStatus::Failed);
        r.error = std::string("LibTorch error: ") + e.what_without_backtrace();
      } catch (const std::exception& e) {
        r.status = to_string(CellStatus::Failed);
        r.error = e.what();
      }
      if (r.status == to_string(CellStatus::Failed)) {
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
      if (r.status == to_string(CellStatus::Ok)) {
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
