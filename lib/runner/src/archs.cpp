#include "archs.h"

#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/models/models.h"
#include "qbench/onnx/model.h"

namespace qbench::runner::detail {

onnx::ImportedGraph import_onnx_arch(const config::Matrix& m, const std::string& arch, const data::ItemShape& shape,
                                     int64_t classes) {
  const config::ArchOptions& o = m.arch_options.at(arch);
  const std::string key = "architectures." + arch + ".onnx";
  auto fail = [&](const std::string& what) -> void {
    throw ConfigError(m.file, o.mark.line, o.mark.column, key, what);
  };
  const std::vector<int64_t> sample{shape.channels, shape.height, shape.width};
  onnx::ImportedGraph g;
  try {
    g = onnx::import_file(o.onnx, {sample});
  } catch (const ConfigError& e) {
    // The importer says what is wrong with the file (and, for a static input shape, both shapes).
    fail(e.what());
  }
  if (g.inputs.size() != 1 || g.outputs.size() != 1)
    fail(g.file_name + ": a classifier has one input and one output; this graph has " +
         std::to_string(g.inputs.size()) + " and " + std::to_string(g.outputs.size()));
  const auto& out = g.shapes.at(g.outputs.front());
  if (out.size() != 2 || out.back().pow != 0 || out.back().coef != classes) {
    std::string have;
    for (std::size_t i = 0; i < out.size(); ++i) have += (i ? "x" : "") + out[i].str();
    fail(g.file_name + ": the graph's output is " + have + ", the dataset has " + std::to_string(classes) +
         " classes (expected Nx" + std::to_string(classes) + ")");
  }
  if (!g.nodes.empty() && (g.nodes.back().op == "Softmax" || g.nodes.back().op == "LogSoftmax"))
    fail(g.file_name + ": the graph ends in " + g.nodes.back().op + " " + g.nodes.back().label() +
         "; qbench trains and evaluates logits: export the model without it");
  try {
    (void)onnx::make_model(g, /*use_initializers=*/true);  // the probe pass: the executor runs it
  } catch (const ConfigError& e) {
    fail(e.what());
  }
  return g;
}

bool weights_from_file(const config::Matrix& m, const std::string& arch) {
  auto it = m.arch_options.find(arch);
  if (it == m.arch_options.end()) return false;
  return !it->second.weights.empty() || (it->second.is_onnx() && !it->second.train);
}

std::shared_ptr<quant::QuantModel> build_arch(const config::Matrix& m, const std::string& arch,
                                              const data::ItemShape& shape, int64_t classes,
                                              const onnx::ImportedGraph* graph) {
  auto it = m.arch_options.find(arch);
  if (it != m.arch_options.end() && it->second.is_onnx()) {
    if (!graph) throw Error("architecture " + arch + ": its ONNX graph was not imported");
    return onnx::make_model(*graph, /*use_initializers=*/!it->second.train);
  }
  models::ModelSpec spec{shape.channels, classes, shape.height};
  if (it != m.arch_options.end()) {
    spec.width = it->second.width;
    spec.stem = models::resolve_stem(it->second.stem, shape.height);
  } else {
    spec.stem = models::resolve_stem("auto", shape.height);
  }
  return models::make_model(arch, spec);
}

}  // namespace qbench::runner::detail
