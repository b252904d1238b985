// export_onnx: build, write and (for TensorRT) the dynamic-range JSON beside the model.
#include <nlohmann/json.hpp>

#include "qbench/common/files.h"
#include "qbench/export/onnx_export.h"

namespace qbench::exporter {

std::string tensorrt_ranges_json(const XGraph& g) {
  // One range per tensor (setDynamicRange is per tensor): a tensor two quantizers read with
  // different grids keeps the larger amax (the explicit Q/DQ nodes in the model carry both).
  nlohmann::json j = nlohmann::json::object();
  for (const auto& q : g.quants)
    if (!j.contains(q.tensor) || j[q.tensor].get<double>() < q.amax) j[q.tensor] = q.amax;
  return j.dump(2) + "\n";
}

XGraph export_onnx(quant::QuantModel& model, const std::string& path, const ExportOptions& options) {
  XGraph g = build_graph(model, options);
  std::map<std::string, std::string> meta = options.metadata;
  meta["qbench_format"] = format_name(options.format);
  write_onnx(g, path, meta);
  if (options.format == Format::TensorRT) {
    std::string base = path;
    if (base.size() > 5 && base.substr(base.size() - 5) == ".onnx") base.resize(base.size() - 5);
    atomic_write_file(base + ".ranges.json", tensorrt_ranges_json(g));
  }
  return g;
}

}  // namespace qbench::exporter
