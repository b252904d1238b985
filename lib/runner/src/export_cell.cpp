// `qbench export` (see qbench/runner/export.h).
#include "qbench/runner/export.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/export/cell_state.h"
#include "qbench/export/onnx_export.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"
#include "qbench/runner/registries.h"
#include "qbench/store/store.h"

namespace qbench::runner {
namespace fs = std::filesystem;

namespace {

std::vector<int64_t> parse_shape(const std::string& s, const std::string& what) {
  std::vector<int64_t> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, ',')) {
    try {
      out.push_back(std::stoll(part));
    } catch (const std::exception&) {
      throw ConfigError(what + ": expected C,H,W such as 1,28,28, got '" + s + "'");
    }
  }
  if (out.size() != 3) throw ConfigError(what + ": expected C,H,W such as 1,28,28, got '" + s + "'");
  return out;
}

std::string get(const std::map<std::string, std::string>& m, const std::string& k, const std::string& dflt = "") {
  auto it = m.find(k);
  return it == m.end() ? dflt : it->second;
}

/// A fresh network for the architecture a cell's metadata names (zoo, or its ONNX file, which must
/// still be the file the cell ran).
std::shared_ptr<quant::QuantModel> rebuild(const std::map<std::string, std::string>& meta,
                                           const std::vector<int64_t>& sample, int64_t classes) {
  const std::string arch = get(meta, "arch");
  if (!get(meta, "onnx").empty()) {
    const std::string file = get(meta, "onnx");
    auto g = onnx::import_file(file, {sample});
    if (g.sha256 != get(meta, "onnx_sha256"))
      throw ConfigError(file + ": the ONNX file changed since the cell ran (sha256 " + g.sha256.substr(0, 12) +
                        ", the cell used " + get(meta, "onnx_sha256").substr(0, 12) + ")");
    return onnx::make_model(g, /*use_initializers=*/true);
  }
  models::ModelSpec spec{sample[0], classes, sample[1]};
  spec.width = std::stod(get(meta, "width", "1"));
  spec.stem = models::resolve_stem(get(meta, "stem", "auto"), sample[1]);
  return models::make_model(arch, spec);
}

}  // namespace

ExportCellSummary export_cell(const ExportCellOptions& o) {
  const exporter::Format format = exporter::parse_format(o.format);
  if (o.out.empty()) throw ConfigError("--out: the file to write is required");
  if (!fs::exists(o.db_path)) throw ConfigError(o.db_path + ": no results store here (run `qbench run` first or pass --db)");
  ensure_registered();
  store::Store st(o.db_path);
  std::set<std::string> keys;
  for (const auto& r : st.all_results())
    if (r.cell_key.rfind(o.cell, 0) == 0) keys.insert(r.cell_key);
  if (keys.empty()) throw ConfigError("--cell " + o.cell + ": no cell of " + o.db_path + " has a key starting with it");
  if (keys.size() > 1) {
    std::string list;
    int shown = 0;
    for (const auto& k : keys)
      if (shown++ < 5) list += (list.empty() ? "" : ", ") + k.substr(0, 12);
    throw ConfigError("--cell " + o.cell + ": ambiguous, " + std::to_string(keys.size()) + " cells start with it (" + list +
                      (keys.size() > 5 ? ", ..." : "") + "); give more of the key");
  }
  const std::string key = *keys.begin();
  auto row = st.finished_result(key);
  if (!row) {
    std::string why;
    for (const auto& r : st.all_results())
      if (r.cell_key == key) why = r.status + (r.error.empty() ? "" : ": " + r.error);
    throw ConfigError("--cell " + o.cell + ": cell " + key.substr(0, 12) + " did not finish ok (" + why + ")");
  }
  ExportCellSummary sum;
  sum.cell_key = key;
  sum.format = exporter::format_name(format);
  sum.label = row->arch + " " + row->algorithm + (row->kind == "fp32" ? std::string()
                                                                      : " w" + std::to_string(row->w_bits) + "a" +
                                                                            std::to_string(row->a_bits) + " " + row->profile);
  std::shared_ptr<quant::QuantModel> model;
  std::vector<int64_t> sample;
  if (row->kind == "fp32") {
    if (format != exporter::Format::Fp32)
      throw ConfigError("--cell " + o.cell + ": " + key.substr(0, 12) + " is an FP32 baseline (no quantizers): use --format fp32");
    const std::string ckpt = (fs::path(o.cache_dir) / "baselines" / (row->baseline_key + ".safetensors")).string();
    if (!fs::exists(ckpt))
      throw ConfigError("--cell " + o.cell + ": the baseline checkpoint " + ckpt +
                        " is not in the cache (imported weights or another --cache-dir?)");
    std::map<std::string, std::string> meta;
    auto tensors = models::load_safetensors(ckpt, &meta);
    const std::string shape = !o.input.empty() ? o.input : get(meta, "sample_shape");
    if (shape.empty())
      throw ConfigError("--cell " + o.cell + ": the checkpoint does not record its input shape: pass --input C,H,W");
    sample = parse_shape(shape, "--input");
    const std::string classes = get(meta, "num_classes");
    int64_t n_classes = 0;
    if (!classes.empty()) {
      n_classes = std::stoll(classes);
    } else {
      // The classifier's output features: the last 2-D weight of the checkpoint's state.
      for (const auto& [n, t] : tensors)
        if (t.dim() == 2) n_classes = t.size(0);
    }
    meta["arch"] = row->arch;
    auto cfg = nlohmann::json::parse(row->config_json, nullptr, false);
    if (!cfg.is_discarded() && cfg.contains("arch_options") && cfg["arch_options"].contains("width")) {
      meta["width"] = std::to_string(cfg["arch_options"]["width"].get<double>());
      meta["stem"] = cfg["arch_options"]["stem"].get<std::string>();
    }
    if (!cfg.is_discarded() && cfg.contains("arch_options") && cfg["arch_options"].contains("onnx_sha256"))
      throw ConfigError("--cell " + o.cell + ": an ONNX architecture's baseline is its own file; export a quantized cell");
    model = rebuild(meta, sample, n_classes);
    models::import_weights(*model, tensors, ckpt);
  } else {
    const std::string path = exporter::cell_state_path(o.cache_dir, key);
    if (!fs::exists(path))
      throw ConfigError("--cell " + o.cell + ": no saved state for cell " + key.substr(0, 12) + " in " + o.cache_dir +
                        " (it ran before cells were saved, or under another --cache-dir): re-run it with --force --cell " +
                        key.substr(0, 12));
    exporter::CellState state;
    try {
      state = exporter::load_cell_state(path);
    } catch (const DataError& e) {
      throw ConfigError(e.what());
    }
    sample = parse_shape(get(state.meta, "sample_shape"), path + ": sample_shape");
    model = rebuild(state.meta, sample, std::stoll(get(state.meta, "num_classes", "0")));
    if (format != exporter::Format::Fp32) {
      const auto bad = state.not_affine();
      if (!bad.empty())
        throw exporter::ExportError("--cell " + o.cell + ": " + sum.label + " cannot export as " + sum.format + ": " +
                                    bad.front() + (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more)" : ""));
    }
    exporter::CellState for_model = state;
    if (format == exporter::Format::Fp32) for_model.quantizers.clear();
    exporter::restore_cell_state(*model, for_model);
  }
  exporter::ExportOptions eo;
  eo.format = format;
  eo.sample_shape = sample;
  eo.graph_name = row->arch;
  eo.metadata = {{"qbench_cell_key", key}, {"qbench_cell", sum.label}};
  const auto g = exporter::export_onnx(*model, o.out, eo);
  sum.path = o.out;
  sum.nodes = static_cast<int>(g.nodes.size());
  sum.quantizers = static_cast<int>(g.quants.size());
  sum.notes = g.notes;
  if (format == exporter::Format::TensorRT) {
    std::string base = o.out;
    if (base.size() > 5 && base.substr(base.size() - 5) == ".onnx") base.resize(base.size() - 5);
    sum.ranges_path = base + ".ranges.json";
  }
  return sum;
}

}  // namespace qbench::runner
