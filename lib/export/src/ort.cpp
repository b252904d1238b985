// ONNX Runtime through Node.js (see ort.h and scripts/ort/qbench_ort.js).
#include "qbench/export/ort.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qbench/common/errors.h"

namespace qbench::exporter {

namespace fs = std::filesystem;

namespace {

std::string env_or(const char* name, const std::string& dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : dflt;
}

/// The first executable `name` on PATH ("" when none).
std::string which(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  std::stringstream path(env_or("PATH", "/usr/bin:/bin"));
  std::string dir;
  while (std::getline(path, dir, ':')) {
    const std::string p = (fs::path(dir.empty() ? "." : dir) / name).string();
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

void write_f32(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * 4));
  if (!f) throw Error("onnxruntime: cannot write " + path);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json shape_of(const at::Tensor& t) {
  nlohmann::json s = nlohmann::json::array();
  for (auto d : t.sizes()) s.push_back(d);
  return s;
}

/// A scratch folder removed when the request is done.
struct Scratch {
  explicit Scratch(std::string dir) : path(std::move(dir)) {
    if (path.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "qbench-ort-XXXXXX").string();
      if (!::mkdtemp(tmpl.data())) throw Error("onnxruntime: cannot create a scratch folder in /tmp");
      path = tmpl;
      owned = true;
    } else {
      fs::create_directories(path);
    }
  }
  ~Scratch() {
    std::error_code ec;
    if (owned) fs::remove_all(path, ec);
  }
  std::string path;
  bool owned = false;
};

}  // namespace

OrtSetup ort_setup() {
#ifdef QBENCH_ORT_SCRIPT_DIR
  const std::string dflt = QBENCH_ORT_SCRIPT_DIR;
#else
  const std::string dflt = "scripts/ort";
#endif
  return {env_or("QBENCH_ORT_DIR", dflt), which(env_or("QBENCH_NODE", "node"))};
}

std::string ort_unavailable_reason() {
  const OrtSetup s = ort_setup();
  if (s.node.empty())
    return "Node.js (node) is not on PATH (install it with scripts/install-deps.sh, or set QBENCH_NODE)";
  if (!fs::exists(fs::path(s.script_dir) / "qbench_ort.js"))
    return s.script_dir + "/qbench_ort.js is missing (set QBENCH_ORT_DIR to the folder that holds it)";
  if (!fs::exists(fs::path(s.script_dir) / "node_modules" / "onnxruntime-node" / "package.json"))
    return "onnxruntime-node is not installed in " + s.script_dir +
           " (run scripts/install-deps.sh, or: cd " + s.script_dir + " && ONNXRUNTIME_NODE_INSTALL=skip npm ci)";
  return "";
}

namespace {

/// Writes `request` to dir/request.json, runs qbench_ort.js on it and returns the JSON it printed.
/// `what` names the model(s) in the error thrown when the script fails.
nlohmann::json run_script(const fs::path& dir, const nlohmann::json& request, const std::string& what) {
  const OrtSetup setup = ort_setup();
  {
    std::ofstream f(dir / "request.json");
    f << request.dump();
  }
  const std::string cmd = shell_quote(setup.node) + " " + shell_quote((fs::path(setup.script_dir) / "qbench_ort.js").string()) +
                          " " + shell_quote((dir / "request.json").string()) + " > " +
                          shell_quote((dir / "result.json").string()) + " 2> " + shell_quote((dir / "stderr.txt").string());
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::string err = slurp((dir / "stderr.txt").string());
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (WIFSIGNALED(rc) && (WTERMSIG(rc) == SIGINT || WTERMSIG(rc) == SIGTERM)) throw Interrupted();
    throw Error("onnxruntime failed on " + what + " (exit " + std::to_string(code) + "): " +
                (err.empty() ? std::string("no message") : err));
  }
  try {
    return nlohmann::json::parse(slurp((dir / "result.json").string()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("onnxruntime: unreadable result: ") + e.what());
  }
}

void require_ort() {
  if (const std::string why = ort_unavailable_reason(); !why.empty())
    throw ConfigError("onnxruntime: not available: " + why);
}

}  // namespace

OrtResult run_ort(const OrtRequest& req) {
  require_ort();
  Scratch scratch(req.work_dir);
  const fs::path dir = scratch.path;
  nlohmann::json j;
  j["model"] = fs::absolute(req.model).string();
  j["threads"] = req.threads;
  if (!req.optimized_model.empty()) j["optimized_model"] = fs::absolute(req.optimized_model).string();
  const bool eval = req.images.defined() || !req.images_file.empty();
  const std::vector<int64_t> eval_shape = req.images.defined() ? req.images.sizes().vec() : req.images_shape;
  if (eval) {
    std::string input = req.images_file;
    if (req.images.defined()) {
      input = (dir / "images.f32").string();
      write_f32(input, req.images);
    }
    j["eval"] = {{"input", fs::absolute(input).string()},
                 {"shape", eval_shape},
                 {"batch", req.batch_size},
                 {"logits_out", (dir / "logits.f32").string()}};
  }
  if (req.latency_batch.defined()) {
    write_f32((dir / "latency.f32").string(), req.latency_batch);
    j["latency"] = {{"input", (dir / "latency.f32").string()},
                    {"shape", shape_of(req.latency_batch)},
                    {"warmup", req.warmup},
                    {"repeats", req.repeats}};
  }
  const nlohmann::json out = run_script(dir, j, req.model);
  OrtResult r;
  r.version = out.value("ort_version", std::string());
  if (eval) {
    const auto shape = out.at("eval").at("output_shape").get<std::vector<int64_t>>();
    if (shape.size() < 2) throw Error("onnxruntime: the model's output has no batch dimension");
    int64_t classes = 1;  // per sample (a classifier's logits; more dimensions for a diagnostic output)
    for (size_t i = 1; i < shape.size(); ++i) classes *= shape[i];
    const int64_t n = eval_shape.at(0);
    const std::string bytes = slurp((dir / "logits.f32").string());
    if (static_cast<int64_t>(bytes.size()) != n * classes * 4)
      throw Error("onnxruntime: " + std::to_string(bytes.size()) + " bytes of logits, expected " +
                  std::to_string(n * classes * 4));
    r.logits = at::empty({n, classes}, at::kFloat);
    std::memcpy(r.logits.data_ptr(), bytes.data(), bytes.size());
    r.eval_seconds = out.at("eval").at("seconds").get<double>();
  }
  if (req.latency_batch.defined()) {
    r.p50_ms = out.at("latency").at("p50_ms").get<double>();
    r.p90_ms = out.at("latency").at("p90_ms").get<double>();
    r.latency_batch = out.at("latency").at("batch").get<int64_t>();
  }
  if (!req.optimized_model.empty()) r.census = census(req.optimized_model);
  return r;
}

std::vector<at::Tensor> probe_ort(const std::string& model, const at::Tensor& batch,
                                  const std::vector<std::string>& outputs, int threads) {
  require_ort();
  Scratch scratch("");
  const fs::path dir = scratch.path;
  write_f32((dir / "batch.f32").string(), batch);
  nlohmann::json j;
  j["model"] = fs::absolute(model).string();
  j["threads"] = threads;
  j["probe"] = {{"input", (dir / "batch.f32").string()},
                {"shape", shape_of(batch)},
                {"outputs", outputs},
                {"out_dir", dir.string()}};
  const nlohmann::json out = run_script(dir, j, model);
  std::vector<at::Tensor> tensors;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto shape = out.at("probe").at(i).at("shape").get<std::vector<int64_t>>();
    at::Tensor t = at::empty(shape, at::kFloat);
    const std::string bytes = slurp((dir / (std::to_string(i) + ".f32")).string());
    if (static_cast<int64_t>(bytes.size()) != t.numel() * 4)
      throw Error("onnxruntime: output " + outputs[i] + " has " + std::to_string(bytes.size()) + " bytes, expected " +
                  std::to_string(t.numel() * 4));
    std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
    tensors.push_back(t);
  }
  return tensors;
}

std::vector<OrtTiming> time_ort_models(const std::vector<std::string>& models, const at::Tensor& batch, int threads,
                                       int warmup, int rounds, int reps) {
  require_ort();
  if (models.empty() || !batch.defined() || rounds < 1 || reps < 1 || warmup < 0)
    throw Error("onnxruntime: time_ort_models needs models, a batch, rounds >= 1, reps >= 1 and warmup >= 0");
  Scratch scratch("");
  const fs::path dir = scratch.path;
  write_f32((dir / "batch.f32").string(), batch);
  nlohmann::json paths = nlohmann::json::array();
  std::string what;
  for (const auto& m : models) {
    paths.push_back(fs::absolute(m).string());
    what += (what.empty() ? "" : ", ") + m;
  }
  nlohmann::json j;
  j["threads"] = threads;
  j["time"] = {{"models", paths}, {"input", (dir / "batch.f32").string()}, {"shape", shape_of(batch)},
               {"warmup", warmup}, {"rounds", rounds}, {"reps", reps}};
  const nlohmann::json out = run_script(dir, j, what);
  std::vector<OrtTiming> timings;
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& m = out.at("models").at(i);
    timings.push_back({models[i], m.at("p50_ms").get<double>(), m.at("p90_ms").get<double>(),
                       m.at("times_ms").get<std::vector<double>>()});
  }
  return timings;
}

}  // namespace qbench::exporter
