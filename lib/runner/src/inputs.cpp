#include "qbench/runner/inputs.h"

#include <spdlog/spdlog.h>
#include <torch/utils.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/export/ort.h"
#include "qbench/mixed/allocate.h"
#include "qbench/quant/profile.h"
#include "qbench/common/progress.h"
#include "qbench/common/strings.h"
#include "qbench/common/yaml_reader.h"
#include "qbench/data/dataset.h"
#include "qbench/data/imagefolder.h"
#include "qbench/sysnoise/image.h"
#include "qbench/sysnoise/noise.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "archs.h"

namespace qbench::runner {
namespace fs = std::filesystem;

namespace {

struct Located {
  std::string key;  ///< key path as the user wrote it (e.g. sizes.cpu.dataset.root)
  SourceMark mark;
};

std::optional<Located> find_key(const YAML::Node& node, const std::vector<std::string>& keys, std::size_t i,
                                const std::string& prefix) {
  if (i == keys.size()) return Located{prefix, yaml::mark_of(node)};
  if (!node.IsMap()) return std::nullopt;
  const YAML::Node child = node[keys[i]];
  if (!child) return std::nullopt;
  return find_key(child, keys, i + 1, yaml::child_path(prefix, keys[i]));
}

// Where `keys` is set in the matrix text: in the applied `sizes` entry if it sets it, else at the
// top level. Unknown position (0:0) when the text does not have it (a Matrix built in code).
Located locate(const config::Matrix& m, const std::vector<std::string>& keys) {
  try {
    const YAML::Node root = YAML::Load(m.yaml_text);
    if (!m.size.empty() && root.IsMap() && root["sizes"] && root["sizes"].IsMap())
      if (auto l = find_key(root["sizes"][m.size], keys, 0, "sizes." + m.size)) return *l;
    if (auto l = find_key(root, keys, 0, "")) return *l;
  } catch (const YAML::Exception&) {
  }
  return {join(keys, "."), {}};
}

// Says which option points at the dataset files, and turns a data problem into a usage error.
class DataOrigin {
 public:
  DataOrigin(const config::Matrix& m, const RunOptions& opt, const data::DatasetEntry& entry) : m_(m) {
    if (!entry.uses_root) {
      kind_ = Kind::Generated;
      where_ = locate(m, {"dataset"});
    } else if (!opt.data_root.empty()) {
      kind_ = Kind::Flag;
      root_ = opt.data_root;
    } else if (!m.dataset.root.empty()) {
      kind_ = Kind::Matrix;
      root_ = m.dataset.root;
      where_ = locate(m, {"dataset", "root"});
    } else {
      kind_ = Kind::Default;
      root_ = entry.default_root;
      where_ = locate(m, {"dataset"});
      if (where_.key.empty()) where_.key = "dataset";
    }
  }
  const std::string& root() const { return root_; }
  bool from_flag() const { return kind_ == Kind::Flag; }

  [[noreturn]] void fail(const std::string& what) const {
    switch (kind_) {
      case Kind::Flag:
        throw ConfigError("--data-root " + root_ + ": " + what);
      case Kind::Matrix:
        throw ConfigError(m_.file, where_.mark.line, where_.mark.column, where_.key, what);
      case Kind::Default:
        if (root_.empty()) break;
        throw ConfigError(m_.file, where_.mark.line, where_.mark.column, where_.key,
                          "dataset '" + m_.dataset.name + "' is read from its default location " + root_ +
                              " (set dataset.root or --data-root): " + what);
      case Kind::Generated:
        break;
    }
    throw ConfigError(m_.file, where_.mark.line, where_.mark.column, where_.key, what);
  }

 private:
  enum class Kind { Generated, Flag, Matrix, Default };
  const config::Matrix& m_;
  Kind kind_ = Kind::Generated;
  std::string root_;
  Located where_;
};


}  // namespace

namespace {

/// Why a model-inference mode noise changes nothing for `arch` on the test images (empty when it
/// does): the network, built untrained, runs one image with the flip on, and its pooling calls say
/// whether the flip changed an output size (ceil-mode) or a divisor (count-include-pad).
std::string mode_noise_inapplicable(const config::Matrix& m, const std::string& arch, const sysnoise::Noise& noise,
                                    const data::SplitSummary& test) {
  const auto oi = m.arch_options.find(arch);
  const bool onnx = oi != m.arch_options.end() && oi->second.is_onnx();
  if (noise.name == "align-corners")
    return onnx ? "the graph has no upsampling (the ONNX importer takes no Resize or Upsample node)"
                : "the zoo's networks have no upsampling layer";
  std::optional<onnx::ImportedGraph> graph;
  if (onnx) graph = detail::import_onnx_arch(m, arch, test.shape, test.classes);
  auto model = detail::build_arch(m, arch, test.shape, test.classes, graph ? &*graph : nullptr);
  model->eval();
  quant::PoolingModes& modes = model->pooling_modes();
  modes.flip_ceil_mode = noise.name == "ceil-mode";
  modes.flip_count_include_pad = noise.name == "count-include-pad";
  {
    torch::NoGradGuard no_grad;
    (void)model->forward(at::zeros({1, test.shape.channels, test.shape.height, test.shape.width}));
  }
  if (modes.changes() > 0) return "";
  const std::string size = std::to_string(test.shape.height) + "x" + std::to_string(test.shape.width);
  return modes.flip_ceil_mode ? "no pooling layer's output size changes with ceil_mode flipped on " + size + " inputs"
                              : "no average pooling layer pads, so count_include_pad changes no divisor";
}

/// Each noise the cells use must change something for this data (issue 20): a noise that cannot
/// is a usage error naming the noise and why, at its place in the matrix.
void check_noises(const config::Matrix& m, const std::vector<config::Cell>& cells, const RunOptions& opt,
                  const data::SplitSummary& test) {
  std::set<std::string> used;
  for (const auto& c : cells)
    if (c.has_noise()) used.insert(c.noise);
  if (used.empty()) return;
  config::DatasetSpec spec = m.dataset;
  if (!opt.data_root.empty()) spec.root = opt.data_root;
  spec = data::with_defaults(spec);
  const bool folder = spec.name == "imagefolder", pixels = spec.name == "fashion-mnist" || spec.name == "mnist";
  // The first test image of a folder stands for all of them (a header read, no full decode).
  std::optional<sysnoise::Image> first;
  auto first_image = [&]() -> const sysnoise::Image& {
    if (!first) {
      const std::string root = spec.root.empty() ? data::dataset_registry().get(spec.name).default_root : spec.root;
      first = sysnoise::load_image(data::index_image_split(root, data::Split::Test).files.front());
    }
    return *first;
  };
  std::set<std::string> probed;
  for (std::size_t i = 0; i < m.noises.size(); ++i) {
    const std::string& name = m.noises[i];
    if (!used.count(name)) continue;
    const SourceMark at = i < m.noise_marks.size() ? m.noise_marks[i] : SourceMark{};
    const std::string path = "matrix.noise[" + std::to_string(i) + "]";
    auto refuse = [&](const std::string& why) {
      throw ConfigError(m.file, at.line, at.column, path, "noise '" + name + "' does not apply: " + why);
    };
    const sysnoise::Noise& n = sysnoise::find_noise(name);
    switch (n.kind) {
      case sysnoise::NoiseKind::kDecode:
        if (!pixels && !folder)
          refuse("dataset '" + spec.name + "' has no stored images to encode or JPEG files to decode "
                 "(decode noises take fashion-mnist, mnist or an imagefolder of JPEGs)");
        if (n.decoder == sysnoise::Decoder::kIslowNoFancy && test.shape.channels != 3)
          refuse("fancy upsampling acts on the chroma of colour JPEGs, and dataset '" + spec.name + "' is grey");
        break;
      case sysnoise::NoiseKind::kColour:
        if (test.shape.channels != 3)
          refuse("a colour noise needs RGB data, and dataset '" + spec.name + "' has " +
                 std::to_string(test.shape.channels) + " channel(s)");
        if (!folder) refuse("colour noises are evaluated on an imagefolder's images only");
        break;
      case sysnoise::NoiseKind::kResize: {
        if (!folder)
          refuse("evaluation of dataset '" + spec.name + "' resizes nothing (its images enter the model at their stored size)");
        const auto& img = first_image();
        const auto g = data::eval_geometry(img.width, img.height, spec.image_size);
        if (g.resized_w == img.width && g.resized_h == img.height)
          refuse("evaluation resizes nothing: the test images are " + std::to_string(img.width) + "x" +
                 std::to_string(img.height) + " and image_size " + std::to_string(spec.image_size) +
                 " resizes the shorter side to floor(" + std::to_string(spec.image_size) + " / 0.875) = " +
                 std::to_string(std::min(g.resized_w, g.resized_h)) + ", then only crops");
        // lib/data's own kernel (INTER_AREA when shrinking both sides, else INTER_LINEAR) is the reference.
        const bool shrinks = g.resized_w < img.width && g.resized_h < img.height;
        if (n.kernel == (shrinks ? sysnoise::ResizeKernel::kCvArea : sysnoise::ResizeKernel::kCvBilinear))
          refuse(std::string("it is the reference kernel here: evaluation resizes ") + std::to_string(img.width) + "x" +
                 std::to_string(img.height) + " to " + std::to_string(g.resized_w) + "x" + std::to_string(g.resized_h) +
                 " with OpenCV " + (shrinks ? "INTER_AREA (shrinking)" : "INTER_LINEAR (enlarging)"));
        break;
      }
      case sysnoise::NoiseKind::kPrecision:
        break;  // any data
      case sysnoise::NoiseKind::kMode:
        for (const auto& c : cells)
          if (c.noise == name && probed.insert(name + "|" + c.arch).second)
            if (const std::string why = mode_noise_inapplicable(m, c.arch, n, test); !why.empty())
              refuse(c.arch + ": " + why + " (exclude its cells with matrix.exclude)");
        break;
      default:
        refuse("not implemented yet");
    }
  }
}

}  // namespace

InputsChecked validate_inputs(const config::Matrix& m, const std::vector<config::Cell>& cells, const RunOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  InputsChecked out;
  if (cells.empty()) return out;
  const auto& entry = data::dataset_registry().get(m.dataset.name);
  const DataOrigin origin(m, opt, entry);
  config::DatasetSpec spec = m.dataset;
  if (!opt.data_root.empty()) spec.root = opt.data_root;

  // The dataset folder first: its absence is the most common mistake, and says the most plainly.
  if (entry.uses_root) {
    if (origin.root().empty())
      origin.fail("dataset '" + m.dataset.name + "' has no default location: set dataset.root or --data-root");
    if (!fs::is_directory(origin.root()))
      origin.fail((origin.from_flag() ? std::string() : origin.root() + ": ") + "no such folder (the " +
                  m.dataset.name + " dataset folder)");
  }

  bool needs_train = false;
  std::set<std::string> archs;
  for (const auto& c : cells) {
    archs.insert(c.arch);
    if (!detail::weights_from_file(m, c.arch)) needs_train = true;  // its baseline may be trained (or rebuilt)
    if (c.kind == CellKind::Qat) needs_train = true;
    if (c.kind == CellKind::Ptq && m.ptq.calibration.source == "data") needs_train = true;
  }
  auto check_split = [&](data::Split split) {
    try {
      auto s = data::validate_dataset(spec, split);
      out.splits.push_back(data::split_name(split));
      out.files.insert(out.files.end(), s.files.begin(), s.files.end());
      return s;
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {  // DataError, or a file system error while looking
      origin.fail(e.what());
    }
  };
  const data::SplitSummary test = check_split(data::Split::Test);
  std::optional<data::SplitSummary> train;
  if (needs_train) train = check_split(data::Split::Train);
  check_noises(m, cells, opt, test);

  // Imported weights: the file on its own, then against the network it is for.
  for (const auto& arch : archs) {
    auto oi = m.arch_options.find(arch);
    if (oi != m.arch_options.end() && oi->second.is_onnx()) {
      // The graph against the dataset: imported, shape-inferred for its images, its output against
      // its classes, and run once (errors at the matrix entry, exit 2).
      (void)detail::import_onnx_arch(m, arch, test.shape, test.classes);
      out.weights.push_back(oi->second.onnx);
      continue;
    }
    if (oi == m.arch_options.end() || oi->second.weights.empty()) continue;
    const auto& o = oi->second;
    const Located where = locate(m, {"architectures", arch, "weights"});
    auto fail = [&](const std::string& what) {
      throw ConfigError(m.file, where.mark.line, where.mark.column, where.key, what);
    };
    models::SafetensorsFile file;
    try {
      file = models::read_safetensors(o.weights);
    } catch (const Error& e) {
      fail(e.what());
    }
    if (file.check.status == Integrity::Corrupt) fail(file.check.problem);
    models::ModelSpec ms{test.shape.channels, test.classes, test.shape.height};
    ms.width = o.width;
    ms.stem = models::resolve_stem(o.stem, test.shape.height);
    auto model = models::make_model(arch, ms);
    try {
      models::import_weights(*model, file.tensors, o.weights);
    } catch (const DataError& e) {
      fail(e.what());
    }
    out.weights.push_back(o.weights);
  }

  // Mixed-precision budgets against the model: each reachable under its profile, else exit 2
  // with the reachable range (a budget is checked once per arch and profile).
  // One model and one structure pass per arch, whatever its budgets and profiles.
  struct ArchStructure {
    std::shared_ptr<quant::QuantModel> model;
    mixed::Sensitivity structure;
  };
  std::map<std::string, ArchStructure> structures;
  std::set<std::string> budgets_checked;
  for (const auto& c : cells) {
    if (!c.bits.is_mixed() || !budgets_checked.insert(c.arch + "|" + c.profile + "|" + c.bits.label()).second) continue;
    const auto& r = m.mixed_precision;
    auto st = structures.find(c.arch);
    if (st == structures.end()) {
      std::optional<onnx::ImportedGraph> graph;
      auto oi = m.arch_options.find(c.arch);
      if (oi != m.arch_options.end() && oi->second.is_onnx())
        graph = detail::import_onnx_arch(m, c.arch, test.shape, test.classes);
      ArchStructure a{detail::build_arch(m, c.arch, test.shape, test.classes, graph ? &*graph : nullptr), {}};
      a.structure = mixed::layer_structure(*a.model, at::zeros({1, test.shape.channels, test.shape.height, test.shape.width}),
                                           r.w_candidates.size(), r.a_candidates.size());
      st = structures.emplace(c.arch, std::move(a)).first;
    }
    const auto& profile = quant::profile_registry().get(c.profile);
    const auto layers = mixed::layer_choices(*st->second.model, profile, st->second.structure, r.w_candidates,
                                             r.a_candidates, m.latency.batch_size);
    try {
      (void)mixed::solve(layers, mixed::budget_from(c.bits.mixed));
    } catch (const Error& e) {
      std::string what = e.what();
      const std::string prefix = "mixed precision: ";
      if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
      throw ConfigError(m.file, c.bits.mark.line, c.bits.mark.column, "matrix.bits",
                        c.bits.label() + " on " + c.arch + " under profile " + c.profile + ": " + what);
    }
  }

  // ONNX Runtime, where a cell deploys on it (its profile's engine, or pipeline.deploy.engines).
  for (const auto& c : cells) {
    if (c.kind == CellKind::Fp32) continue;
    const bool by_matrix = !m.deploy.engines.empty();
    const bool by_profile = quant::profile_registry().get(c.profile).spec.engine == "onnxruntime";
    if (!by_matrix && !by_profile) continue;
    if (const std::string why = exporter::ort_unavailable_reason(); !why.empty()) {
      if (by_matrix) {
        const Located where = locate(m, {"pipeline", "deploy", "engines"});
        throw ConfigError(m.file, where.mark.line, where.mark.column, where.key, "onnxruntime: " + why);
      }
      throw ConfigError("profile " + c.profile + " deploys on onnxruntime, which cannot run here: " + why);
    }
    break;
  }

  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string what = m.dataset.name + " test split (" + std::to_string(test.items) + " images)";
  if (train) what += ", train split (" + std::to_string(train->items) + " images)";
  if (!out.weights.empty()) what += ", " + std::to_string(out.weights.size()) + " weights file(s)";
  Progress::global().clear();
  spdlog::info("inputs checked in {:.0f} ms: {}, {} files", out.seconds * 1000, what, out.files.size() + out.weights.size());
  return out;
}

}  // namespace qbench::runner
