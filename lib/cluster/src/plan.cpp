// The plan: the matrix copied into the work directory and every cell with its key and baseline.
#include <filesystem>
#include <random>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::cluster {
namespace fs = std::filesystem;
using detail::path_in;

namespace {

constexpr int kPlanFormat = 1;

std::string random_id() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 4; ++i) {  // 128 bits
    uint32_t v = rd();
    for (int k = 0; k < 4; ++k, v >>= 8) {
      out += hex[(v >> 4) & 0xf];
      out += hex[v & 0xf];
    }
  }
  return out;
}

std::string cell_label(const config::Cell& c) {
  if (c.kind == CellKind::Fp32) return c.arch + " fp32 seed" + std::to_string(c.seed);
  return c.arch + " " + c.algorithm + " " + c.bits.label() + " " + c.profile + " seed" + std::to_string(c.seed);
}

nlohmann::json cell_json(const PlanCell& c) {
  return {{"position", c.position}, {"key", c.key},           {"baseline_key", c.baseline_key},
          {"kind", c.kind},         {"dataset", c.dataset},   {"arch", c.arch},
          {"algorithm", c.algorithm}, {"profile", c.profile}, {"w_bits", c.w_bits},
          {"a_bits", c.a_bits},     {"seed", std::to_string(c.seed)}, {"label", c.label},
          {"checkpoint", c.checkpoint}, {"config", nlohmann::json::parse(c.config_json)}};
}

PlanCell cell_from_json(const nlohmann::json& j) {
  PlanCell c;
  c.position = j.at("position").get<int>();
  c.key = j.at("key").get<std::string>();
  c.baseline_key = j.at("baseline_key").get<std::string>();
  c.kind = j.at("kind").get<std::string>();
  c.dataset = j.at("dataset").get<std::string>();
  c.arch = j.at("arch").get<std::string>();
  c.algorithm = j.at("algorithm").get<std::string>();
  c.profile = j.at("profile").get<std::string>();
  c.w_bits = j.at("w_bits").get<int>();
  c.a_bits = j.at("a_bits").get<int>();
  c.seed = std::stoull(j.at("seed").get<std::string>());
  c.label = j.at("label").get<std::string>();
  c.checkpoint = j.at("checkpoint").get<bool>();
  c.config_json = j.at("config").dump();
  return c;
}

}  // namespace

std::string Plan::matrix_path() const { return path_in(workdir, "matrix.yaml"); }
std::string Plan::shards_dir() const { return path_in(workdir, "shards"); }

const PlanCell* Plan::find(const std::string& key) const {
  for (const auto& c : cells)
    if (c.key == key) return &c;
  return nullptr;
}

int Plan::baselines() const {
  int n = 0;
  for (const auto& c : cells) n += c.is_baseline();
  return n;
}

Plan create_plan(const std::string& workdir_arg, const config::Matrix& m, const std::vector<config::Cell>& cells,
                 const config::Catalog& catalog, const PlanOptions& o) {
  const std::string workdir = fs::absolute(workdir_arg).lexically_normal().string();
  const std::string plan_file = path_in(workdir, "plan.json");
  if (fs::exists(plan_file)) {
    std::string name = "?";
    try {
      name = nlohmann::json::parse(detail::read_file(plan_file)).value("name", "?");
    } catch (const std::exception&) {
    }
    throw ConfigError("--workdir " + workdir_arg + ": already holds the plan of matrix '" + name +
                      "': use `qbench submit --workdir " + workdir_arg + " --resume`, or another --workdir");
  }
  if (fs::exists(workdir) && !fs::is_directory(workdir))
    throw ConfigError("--workdir " + workdir_arg + ": exists and is not a directory");
  if (cells.empty()) throw ConfigError(m.file + ": the matrix expands to no cells");
  const bool created = !fs::exists(workdir);
  std::error_code ec;
  fs::create_directories(workdir, ec);
  if (ec) throw ConfigError("--workdir " + workdir_arg + ": cannot create it: " + ec.message());

  // The copy the tasks run must expand to exactly these cells.
  Plan p;
  p.workdir = workdir;
  const std::string copy = p.matrix_path();
  auto undo = [&] {
    fs::remove(copy, ec);
    if (created) fs::remove(workdir, ec);
  };
  try {
    detail::write_file(copy, m.yaml_text);
    const config::Matrix again = config::load_matrix_file(copy, catalog, o.size);
    const auto cells_again = config::expand_cells(again, catalog);
    std::size_t differ = cells_again.size() == cells.size() ? 0 : std::max(cells.size(), cells_again.size());
    for (std::size_t i = 0; differ == 0 && i < cells.size(); ++i)
      if (cells[i].key != cells_again[i].key) ++differ;
    if (differ)
      throw ConfigError(m.file + ": its copy in the work directory (" + copy + ") expands to other cells (" +
                        std::to_string(differ) + " of " + std::to_string(cells.size()) +
                        " keys differ): a path in the matrix is relative to its folder; make it absolute");
  } catch (const ConfigError& e) {
    undo();
    const std::string what = e.what();
    if (what.rfind(m.file + ":", 0) == 0) throw;
    throw ConfigError(m.file + ": its copy in the work directory cannot be used (" + what +
                      "); a path in the matrix is relative to its folder: make it absolute");
  } catch (...) {
    undo();
    throw;
  }

  p.id = random_id();
  p.name = m.name;
  p.matrix_source = fs::absolute(m.file).lexically_normal().string();
  p.yaml_hash = sha256_hex(m.yaml_text);
  p.size = o.size;
  if (!o.data_root.empty()) p.data_root = fs::absolute(o.data_root).lexically_normal().string();
  else if (!m.dataset.root.empty()) p.data_root = fs::absolute(m.dataset.root).lexically_normal().string();
  p.cache_dir = o.cache_dir.empty() ? path_in(workdir, "cache") : fs::absolute(o.cache_dir).lexically_normal().string();
  p.threads = o.threads > 0 ? o.threads : m.threads;
  p.qbench = detail::self_exe();
  p.created_at = utc_now_iso();
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const auto& c = cells[i];
    PlanCell pc;
    pc.position = static_cast<int>(i);
    pc.key = c.key;
    pc.baseline_key = c.baseline_key;
    pc.kind = to_string(c.kind);
    pc.dataset = c.dataset;
    pc.arch = c.arch;
    pc.algorithm = c.algorithm;
    pc.profile = c.profile;
    pc.w_bits = c.bits.w;
    pc.a_bits = c.bits.a;
    pc.seed = c.seed;
    pc.label = cell_label(c);
    pc.config_json = c.resolved.dump();
    if (auto it = m.arch_options.find(c.arch); it != m.arch_options.end())
      pc.checkpoint = it->second.weights.empty() && (!it->second.is_onnx() || it->second.train);
    p.cells.push_back(std::move(pc));
  }
  for (const char* sub : {"shards", "submissions", "logs", "running"}) fs::create_directories(path_in(workdir, sub));
  fs::create_directories(p.cache_dir);

  nlohmann::json j;
  j["format"] = kPlanFormat;
  j["id"] = p.id;
  j["name"] = p.name;
  j["matrix_source"] = p.matrix_source;
  j["yaml_hash"] = p.yaml_hash;
  j["size"] = p.size;
  j["data_root"] = p.data_root;
  j["cache_dir"] = p.cache_dir;
  j["threads"] = p.threads;
  j["qbench"] = p.qbench;
  j["created_at"] = p.created_at;
  j["cells"] = nlohmann::json::array();
  for (const auto& c : p.cells) j["cells"].push_back(cell_json(c));
  detail::write_file(plan_file, j.dump(1) + "\n");
  return p;
}

Plan load_plan(const std::string& workdir_arg) {
  const std::string workdir = fs::absolute(workdir_arg).lexically_normal().string();
  const std::string plan_file = path_in(workdir, "plan.json");
  if (!fs::exists(plan_file))
    throw ConfigError("--workdir " + workdir_arg + ": no plan here (" + plan_file +
                      " is missing): `qbench submit MATRIX --workdir " + workdir_arg + "` writes one");
  Plan p;
  try {
    const auto j = nlohmann::json::parse(detail::read_file(plan_file));
    if (j.at("format").get<int>() != kPlanFormat)
      throw ConfigError(plan_file + ": plan format " + j.at("format").dump() + ", this qbench reads " +
                        std::to_string(kPlanFormat));
    p.workdir = workdir;
    p.id = j.at("id").get<std::string>();
    p.name = j.at("name").get<std::string>();
    p.matrix_source = j.at("matrix_source").get<std::string>();
    p.yaml_hash = j.at("yaml_hash").get<std::string>();
    p.size = j.at("size").get<std::string>();
    p.data_root = j.at("data_root").get<std::string>();
    p.cache_dir = j.at("cache_dir").get<std::string>();
    p.threads = j.at("threads").get<int>();
    p.qbench = j.at("qbench").get<std::string>();
    p.created_at = j.at("created_at").get<std::string>();
    for (const auto& c : j.at("cells")) p.cells.push_back(cell_from_json(c));
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(plan_file + ": malformed plan: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw ConfigError(plan_file + ": malformed plan: " + e.what());
  }
  return p;
}

}  // namespace qbench::cluster
