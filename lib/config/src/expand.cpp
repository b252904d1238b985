// Expansion of a validated matrix into cells, and the canonical JSON each cell key hashes.
//
// A key is sha256 of the compact dump of a JSON object whose keys nlohmann sorts and whose numbers
// it prints in the shortest round-trip form, so the same configuration gives the same key on every
// run and machine, and any change to a value that could change a result gives a new key. What
// cannot change a result stays out: the dataset's location, the thread count, the matrix name.
#include <algorithm>
#include <charconv>
#include <set>
#include <stdexcept>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"

namespace qbench::config {
namespace {

using nlohmann::json;

/// Bumped when the meaning of a recipe changes (e.g. a fix to the training loop), so old keys,
/// and the cached checkpoints and rows behind them, are no longer reused.
constexpr int kPipelineVersion = 1;

const char* const kBaselineAlgorithm = "fp32";
const char* const kBaselineProfile = "none";

json dataset_json(const DatasetSpec& d) {
  json j = {{"name", d.name}, {"train_subset", d.train_subset}, {"test_subset", d.test_subset}};
  // The options the dataset reads (the parser filled their defaults); unused ones (0) stay out,
  // so datasets without options keep the keys they always had. `workers` cannot change a result.
  for (const auto& f : dataset_option_fields())
    if (d.*f.field != 0) j[f.key] = d.*f.field;
  return j;
}

json fp32_json(const TrainRecipe& r) {
  return {{"epochs", r.epochs},
          {"batch_size", r.batch_size},
          {"lr", r.lr},
          {"warmup_epochs", r.warmup_epochs},
          {"warmup_start_lr", r.warmup_start_lr},
          {"momentum", r.momentum},
          {"nesterov", r.nesterov},
          {"weight_decay", r.weight_decay},
          {"label_smoothing", r.label_smoothing},
          {"augment", r.augment}};
}

/// The algorithm's own settings (its declared section, the options that can change a result) go
/// into its cells' configuration under the section's name; algorithms without settings add
/// nothing, so their cells keep the keys they always had.
void add_settings(json& stage_json, const Matrix& m, const AlgorithmInfo* info, const std::string& stage) {
  if (!info || info->settings.empty() || info->settings.stage != stage) return;
  auto it = m.settings.find(info->settings.id());
  const json resolved = it != m.settings.end() ? it->second : info->settings.defaults();
  stage_json[info->settings.section] = info->settings.key_json(resolved);
}

/// The PTQ recipe as it applies to one algorithm: its own settings only for algorithms that declare
/// them, the calibration source only when it is not the training data (so the keys of cells that
/// have neither stay what they were).
json ptq_json(const Matrix& m, const AlgorithmInfo* info) {
  const PtqRecipe& r = m.ptq;
  json j = {{"calib_images", r.calib_images},
            {"calib_batch_size", r.calib_batch_size},
            {"observer", {{"weight", r.observer.weight}, {"activation", r.observer.activation}}}};
  add_settings(j, m, info, "ptq");
  if (r.calibration.source != "data") {
    const CalibrationRecipe& c = r.calibration;
    j["calibration"] = {{"source", c.source}, {"iters", c.iters}, {"lr", c.lr}, {"batch_size", c.batch_size}};
  }
  return j;
}

/// The recipe after the algorithm's overrides, its init size and the overrides themselves (so two
/// routes to the same numbers stay distinguishable in the store and the report).
json qat_json(const Matrix& m, const std::string& algorithm, const AlgorithmInfo* info) {
  json j = fp32_json(qat_recipe_for(m, algorithm));
  add_settings(j, m, info, "qat");
  j["init_images"] = m.qat.init_images;
  j["train_images"] = m.qat.train_images;
  if (m.qat.range_init != "paper") j["range_init"] = m.qat.range_init;  // the default stays out of the key
  auto it = m.qat.overrides.find(algorithm);
  j["overrides_applied"] = it != m.qat.overrides.end() ? it->second : json::object();
  return j;
}

/// A mixed cell's budget and the search settings: the allocation is a function of these, the
/// baseline and the profile, so they are keyed and the result (the widths) is not.
json mixed_json(const Matrix& m, const BitWidth& bits) {
  const MixedPrecisionRecipe& r = m.mixed_precision;
  json budget = json::object();
  for (const auto& [k, v] : bits.mixed) budget[k] = v;
  json j = {{"budget", budget},
            {"label", bits.label()},
            {"sensitivity", r.sensitivity},
            {"candidates", {{"w", r.w_candidates}, {"a", r.a_candidates}}},
            {"images", r.images}};
  if (r.sensitivity == "hessian") {
    j["probes"] = r.probes;
    j["tolerance"] = r.tolerance;
  }
  return j;
}

json eval_json(const EvalRecipe& r) { return {{"batch_size", r.batch_size}}; }

json latency_json(const LatencyRecipe& r) {
  return {{"enabled", r.enabled}, {"batch_size", r.batch_size}, {"warmup", r.warmup}, {"repeats", r.repeats}};
}

/// Non-default architecture options join the configuration (defaults stay out, so the keys of
/// matrices without an `architectures:` map are unchanged). Imported weights replace the training
/// recipe: the baseline is then a function of the file's bytes, not of the recipe.
void add_arch_options(json& j, const Matrix& m, const std::string& arch) {
  auto it = m.arch_options.find(arch);
  if (it == m.arch_options.end() || it->second.is_default()) return;
  const ArchOptions& o = it->second;
  if (o.is_onnx()) {
    // The graph is named by its bytes; with the file's own weights the baseline is a function of
    // the file alone, so the training recipe stays out.
    j["arch_options"] = {{"onnx_sha256", o.onnx_sha256}, {"train", o.train}};
    if (!o.train) j.erase("fp32_recipe");
    return;
  }
  json a = {{"width", o.width}, {"stem", o.stem}};
  if (!o.weights.empty()) {
    a["weights_sha256"] = o.weights_sha256;
    j.erase("fp32_recipe");
  }
  j["arch_options"] = std::move(a);
}

Cell make_cell(const Matrix& m, const Catalog& catalog, const std::string& arch, uint64_t seed,
               const std::string& algorithm, CellKind kind, const std::string& profile, BitWidth bits,
               const std::string& baseline_key, int bn_fold = -1, bool bn_fold_from_matrix = false) {
  const bool baseline = algorithm == kBaselineAlgorithm;
  Cell c;
  c.dataset = m.dataset.name;
  c.arch = arch;
  c.algorithm = algorithm;
  c.kind = kind;
  c.profile = profile;
  c.bits = bits;
  c.seed = seed;
  json j = {{"qbench_pipeline", kPipelineVersion},
            {"dataset", dataset_json(m.dataset)},
            {"arch", arch},
            {"algorithm", algorithm},
            {"kind", to_string(kind)},
            {"profile", profile},
            {"w_bits", bits.w},
            {"a_bits", bits.a},
            {"seed", seed},
            {"fp32_recipe", fp32_json(m.fp32)},
            {"eval", eval_json(m.eval)},
            {"latency", latency_json(m.latency)}};
  add_arch_options(j, m, arch);
  const AlgorithmInfo* info = catalog.find_algorithm(algorithm);
  if (kind == CellKind::Qat) {
    j["qat"] = qat_json(m, algorithm, info);
  } else if (!baseline) {
    j["ptq"] = ptq_json(m, info);
  }
  if (!baseline && !m.deploy.engines.empty()) j["deploy"] = {{"engines", m.deploy.engines}};
  if (!baseline && bits.is_mixed()) j["mixed"] = mixed_json(m, bits);
  if (!baseline) {
    c.bn_fold = bn_fold;
    c.bn_fold_from_matrix = bn_fold_from_matrix;
    j["bn_fold"] = bn_fold;
    if (bn_fold_from_matrix) j["bn_fold_from"] = "matrix";
  }
  c.resolved = std::move(j);
  c.baseline_key = baseline_key;
  // The baseline cell is keyed by its training recipe alone, so its key names the checkpoint.
  c.key = baseline ? baseline_key : sha256_hex(c.resolved.dump());
  c.plain_key = c.key;
  return c;
}

/// `plain` evaluated under `noise`: the same configuration plus the noise (and the JPEG quality
/// for the decode noises, the only ones it can change), so the plain cell's key never moves and a
/// noise cell is told apart from it. The baseline it trains from stays the plain baseline.
Cell with_noise(const Cell& plain, const Matrix& m, const Catalog& catalog, const std::string& noise) {
  Cell c = plain;
  if (noise == "none") return c;
  const NoiseInfo* info = catalog.find_noise(noise);
  c.noise = noise;
  c.noise_kind = info ? info->kind : "none";
  c.resolved["noise"] = noise;
  if (c.noise_kind == "decode") c.resolved["jpeg_quality"] = m.noise.jpeg_quality;
  c.plain_key = plain.key;
  c.key = sha256_hex(c.resolved.dump());
  return c;
}

bool parse_seed(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

/// An exclude entry matches when every key it has equals the combination's value.
bool matches(const AxisAssignment& e, const std::string& algorithm, const BitWidth& bits,
             const std::string& arch, const std::string& profile, uint64_t seed, const std::string& bn_fold,
             const std::string& noise) {
  for (const auto& [axis, value] : e) {
    if (axis == "noise" && value != noise) return false;
    if (axis == "bn_fold" && value != bn_fold) return false;
    if (axis == "algorithm" && value != algorithm) return false;
    if (axis == "arch" && value != arch) return false;
    if (axis == "profile" && value != profile) return false;
    if (axis == "bits") {
      try {
        if (!(parse_bits_label(value) == bits)) return false;
      } catch (const ConfigError&) {
        return false;
      }
    }
    if (axis == "seed") {
      uint64_t s = 0;
      if (!parse_seed(value, s) || s != seed) return false;
    }
  }
  return true;
}

struct Group {
  std::string arch;
  uint64_t seed = 0;
  std::string baseline_key;
  std::vector<Cell> cells;
  std::set<std::string> ids;  // algorithm|bits|profile|fold|noise, to add an include only once
};

class Expander {
 public:
  Expander(const Matrix& m, const Catalog& c) : m_(m), cat_(c) {}

  std::vector<Cell> run() {
    for (const auto& arch : m_.archs)
      for (uint64_t seed : m_.seeds) {
        Group& g = group(arch, seed);
        // The baseline under each noise (its evaluation only: it trains nothing).
        for (const auto& noise : m_.noises) {
          if (noise == "none") continue;
          bool excluded = false;
          for (const auto& e : m_.exclude)
            if (matches(e, kBaselineAlgorithm, BitWidth{32, 32}, arch, kBaselineProfile, seed, "profile", noise))
              excluded = true;
          if (!excluded) add_baseline_noise(g, noise);
        }
        for (const auto& algorithm : m_.algorithms) {
          if (algorithm == kBaselineAlgorithm) continue;
          const CellKind kind = kind_of(algorithm, "matrix.algorithm", SourceMark{});
          for (const auto& bits : m_.bits) {
            if (bits.is_float()) continue;  // a quantizer at 32/32 bits is the baseline again
            for (const auto& profile : m_.profiles)
              for (const auto& fold : m_.bn_folds)
                for (const auto& noise : m_.noises) {
                  bool excluded = false;
                  for (const auto& e : m_.exclude)
                    if (matches(e, algorithm, bits, arch, profile, seed, fold, noise)) excluded = true;
                  if (!excluded) add(g, algorithm, kind, bits, profile, fold, noise);
                }
          }
        }
      }
    for (std::size_t i = 0; i < m_.include.size(); ++i) include(i);

    std::vector<Cell> out;
    for (auto& g : groups_)
      for (auto& c : g.cells) out.push_back(std::move(c));
    return out;
  }

 private:
  [[noreturn]] void fail(SourceMark at, const std::string& path, const std::string& msg) const {
    throw ConfigError(m_.file, at.line, at.column, path, msg);
  }

  CellKind kind_of(const std::string& algorithm, const std::string& path, SourceMark at) const {
    const AlgorithmInfo* info = cat_.find_algorithm(algorithm);
    if (!info) {
      std::vector<std::string> names;
      for (const auto& a : cat_.algorithms) names.push_back(a.name);
      fail(at, path, "unknown algorithm '" + algorithm + "'" + did_you_mean(algorithm, names));
    }
    return info->kind;
  }

  /// The group of (arch, seed), created with its baseline cell first when new.
  Group& group(const std::string& arch, uint64_t seed) {
    for (auto& g : groups_)
      if (g.arch == arch && g.seed == seed) return g;
    Group g;
    g.arch = arch;
    g.seed = seed;
    g.baseline_key = sha256_hex(baseline_config(m_, arch, seed).dump());
    g.cells.push_back(make_cell(m_, cat_, arch, seed, kBaselineAlgorithm, CellKind::Fp32, kBaselineProfile, BitWidth{32, 32},
                                g.baseline_key));
    groups_.push_back(std::move(g));
    return groups_.back();
  }

  /// The group's baseline evaluated under `noise` (right after the baseline and its other noises).
  void add_baseline_noise(Group& g, const std::string& noise) {
    if (!g.ids.insert("fp32|" + noise).second) return;
    const Cell& baseline = g.cells.front();
    std::size_t at = 1;
    while (at < g.cells.size() && g.cells[at].kind == CellKind::Fp32) ++at;
    g.cells.insert(g.cells.begin() + static_cast<std::ptrdiff_t>(at), with_noise(baseline, m_, cat_, noise));
  }

  /// `fold` is "profile" (the profile's strategy) or "-1".."4" (the bn_fold axis).
  void add(Group& g, const std::string& algorithm, CellKind kind, const BitWidth& bits,
           const std::string& profile, const std::string& fold, const std::string& noise) {
    auto pf = cat_.profile_bn_fold.find(profile);
    const int profile_fold = pf != cat_.profile_bn_fold.end() ? pf->second : -1;
    const bool from_matrix = fold != "profile" && std::stoi(fold) != profile_fold;
    const int effective = fold == "profile" ? profile_fold : std::stoi(fold);
    std::string id = algorithm + "|" + bits.label() + "|" + profile + "|" + std::to_string(effective) + "|" + noise;
    if (!g.ids.insert(id).second) return;
    Cell c = make_cell(m_, cat_, g.arch, g.seed, algorithm, kind, profile, bits, g.baseline_key, effective,
                       from_matrix);
    if (auto h = cat_.profile_hashes.find(profile); h != cat_.profile_hashes.end()) {
      c.resolved["profile_sha256"] = h->second;
      c.key = c.plain_key = sha256_hex(c.resolved.dump());
    }
    g.cells.push_back(with_noise(c, m_, cat_, noise));
  }

  void include(std::size_t i) {
    const AxisAssignment& e = m_.include[i];
    const SourceMark at = i < m_.include_marks.size() ? m_.include_marks[i] : SourceMark{};
    const std::string path = "matrix.include[" + std::to_string(i) + "]";

    auto value = [&](const std::string& axis, const std::vector<std::string>& axis_values) -> std::string {
      auto it = e.find(axis);
      if (it != e.end()) return it->second;
      if (axis_values.size() == 1) return axis_values.front();
      fail(at, path,
           "missing key '" + axis + "' (the axis has " + (axis_values.empty() ? "no values" : "several values") +
               ")");
    };
    std::vector<std::string> bits_labels, seed_strings;
    for (const auto& b : m_.bits) bits_labels.push_back(b.label());
    for (uint64_t s : m_.seeds) seed_strings.push_back(std::to_string(s));

    static const std::vector<std::string> kAxes = {"algorithm", "bits", "arch", "profile", "seed", "bn_fold", "noise"};
    for (const auto& [axis, v] : e)
      if (std::find(kAxes.begin(), kAxes.end(), axis) == kAxes.end())
        fail(at, path, "unknown key '" + axis + "'" + did_you_mean(axis, kAxes));

    const std::string algorithm = value("algorithm", m_.algorithms);
    const std::string arch = value("arch", m_.archs);
    uint64_t seed = 0;
    const std::string seed_text = value("seed", seed_strings);
    if (!parse_seed(seed_text, seed)) fail(at, path + ".seed", "expected an integer >= 0, got '" + seed_text + "'");

    if (algorithm == kBaselineAlgorithm) {
      if (e.count("bits") && e.at("bits") != "fp32")
        fail(at, path, "algorithm fp32 is the FP32 baseline, which has no bits other than fp32");
      if (e.count("profile"))
        fail(at, path, "algorithm fp32 is the FP32 baseline, which has no deployment profile");
      Group& g = group(arch, seed);
      if (auto n = e.find("noise"); n != e.end() && n->second != "none") add_baseline_noise(g, n->second);
      return;
    }
    const CellKind kind = kind_of(algorithm, path + ".algorithm", at);
    const std::string bits_text = value("bits", bits_labels);
    BitWidth bits;
    try {
      bits = parse_bits_label(bits_text);
    } catch (const ConfigError& ex) {
      fail(at, path + ".bits", ex.what());
    }
    if (bits.is_float())
      fail(at, path,
           "bits fp32 with algorithm '" + algorithm + "' is the FP32 baseline (write algorithm: fp32 to include it)");
    const std::string profile = value("profile", m_.profiles);
    // Without a noise key the entry is the plain cell, whatever the axis holds.
    const std::string noise = e.count("noise") ? e.at("noise") : std::string("none");
    add(group(arch, seed), algorithm, kind, bits, profile, value("bn_fold", m_.bn_folds), noise);
  }

  const Matrix& m_;
  const Catalog& cat_;
  std::vector<Group> groups_;
};

}  // namespace

TrainRecipe qat_recipe_for(const Matrix& m, const std::string& algorithm) {
  static const std::vector<std::string> kKeys = {"epochs",          "batch_size", "lr",       "warmup_epochs",
                                                 "warmup_start_lr", "momentum",   "nesterov", "weight_decay",
                                                 "label_smoothing", "augment"};
  TrainRecipe r = m.qat.train;
  auto it = m.qat.overrides.find(algorithm);
  if (it == m.qat.overrides.end()) return r;
  for (const auto& [key, v] : it->second.items()) {
    const std::string path = "pipeline.qat.overrides." + algorithm + "." + key;
    try {
      if (key == "epochs") r.epochs = v.get<int>();
      else if (key == "batch_size") r.batch_size = v.get<int>();
      else if (key == "lr") r.lr = v.get<double>();
      else if (key == "warmup_epochs") r.warmup_epochs = v.get<double>();
      else if (key == "warmup_start_lr") r.warmup_start_lr = v.get<double>();
      else if (key == "momentum") r.momentum = v.get<double>();
      else if (key == "nesterov") r.nesterov = v.get<bool>();
      else if (key == "weight_decay") r.weight_decay = v.get<double>();
      else if (key == "label_smoothing") r.label_smoothing = v.get<double>();
      else if (key == "augment") r.augment = v.get<bool>();
      else throw ConfigError(m.file, 0, 0, path, "unknown key" + did_you_mean(key, kKeys));
    } catch (const nlohmann::json::exception&) {
      // Only reachable for a Matrix built in code: the parser stores typed values.
      throw ConfigError(m.file, 0, 0, path, "value of the wrong type: " + v.dump());
    }
  }
  return r;
}

nlohmann::json baseline_config(const Matrix& m, const std::string& arch, uint64_t seed) {
  json j = {{"qbench_pipeline", kPipelineVersion},
            {"dataset", dataset_json(m.dataset)},
            {"arch", arch},
            {"seed", seed},
            {"fp32_recipe", fp32_json(m.fp32)}};
  add_arch_options(j, m, arch);
  return j;
}

std::vector<Cell> expand_cells(const Matrix& m, const Catalog& catalog) { return Expander(m, catalog).run(); }

}  // namespace qbench::config
