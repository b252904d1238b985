// Parsing and validation of the matrix file. The whole file is checked before anything runs, and
// every error names file:line:column and the key path, so a typo fails in milliseconds with a
// message that points at the offending character instead of an hour into a run.
#include "qbench/config/matrix.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/common/yaml_reader.h"

namespace qbench::config {

namespace {
/// A budget value in a label: integers without a fraction, else the shortest round trip.
std::string budget_number(double v) {
  if (std::fabs(v) < 1e15 && v == std::floor(v)) return std::to_string(static_cast<int64_t>(v));
  return nlohmann::json(v).dump();
}
}  // namespace

std::string BitWidth::label() const {
  if (is_mixed()) {
    std::string out = "mixed:";
    bool first = true;
    for (const auto& [k, v] : mixed) {
      out += (first ? "" : ",") + k + "=" + budget_number(v);
      first = false;
    }
    return out;
  }
  if (is_float()) return "fp32";
  return "w" + std::to_string(w) + "a" + std::to_string(a);
}

const std::vector<std::string>& mixed_budget_keys() {
  static const std::vector<std::string> keys = {"size_kb", "bops_ratio", "avg_w_bits", "avg_a_bits", "latency_ms"};
  return keys;
}

const std::vector<std::string>& sensitivity_names() {
  static const std::vector<std::string> names = {"hessian", "fisher", "loss"};
  return names;
}

const NoiseInfo* Catalog::find_noise(const std::string& name) const {
  for (const auto& n : noises)
    if (n.name == name) return &n;
  return nullptr;
}

const AlgorithmInfo* Catalog::find_algorithm(const std::string& name) const {
  for (const auto& a : algorithms)
    if (a.name == name) return &a;
  return nullptr;
}

std::vector<const SettingsSection*> Catalog::settings_sections() const {
  std::vector<const SettingsSection*> out;
  std::map<std::string, const AlgorithmInfo*> owner;
  for (const auto& a : algorithms) {
    if (a.settings.empty()) continue;
    auto [it, fresh] = owner.emplace(a.settings.id(), &a);
    if (fresh) {
      out.push_back(&a.settings);
      continue;
    }
    // A shared section is one table: the same options, types and defaults for every algorithm.
    const SettingsSection& first = it->second->settings;
    bool same = first.options.size() == a.settings.options.size();
    for (std::size_t i = 0; same && i < first.options.size(); ++i) {
      const auto &x = first.options[i], &y = a.settings.options[i];
      same = x.name == y.name && x.type == y.type && x.def == y.def && x.in_key == y.in_key;
    }
    if (!same)
      throw Error("algorithms '" + it->second->name + "' and '" + a.name + "' declare different settings for pipeline." +
                  a.settings.id());
  }
  return out;
}

namespace {

bool valid_width(int64_t b) { return (b >= 2 && b <= 8) || b == 32; }

/// "w4a8" -> {4, 8}, "fp32"/"32" -> {32, 32}; syntax only (no range check).
std::optional<BitWidth> split_bits_label(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "fp32" || s == "32") return BitWidth{32, 32};
  if (s.size() < 4 || s[0] != 'w') return std::nullopt;
  auto apos = s.find('a');
  if (apos == std::string::npos || apos < 2 || apos + 1 >= s.size()) return std::nullopt;
  auto digits = [](const std::string& t) {
    return !t.empty() && t.size() <= 3 &&
           std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); });
  };
  std::string w = s.substr(1, apos - 1), a = s.substr(apos + 1);
  if (!digits(w) || !digits(a)) return std::nullopt;
  return BitWidth{std::stoi(w), std::stoi(a)};
}

std::string width_error(int64_t got) {
  return "expected a bit width 2..8 or 32, got " + std::to_string(got);
}

/// Common misnamings that edit distance cannot catch (learning_rate is 11 edits from lr).
const std::map<std::string, std::string>& key_aliases() {
  static const std::map<std::string, std::string> kAliases = {
      {"learning_rate", "lr"},     {"learningrate", "lr"},        {"base_lr", "lr"},
      {"epoch", "epochs"},         {"batch", "batch_size"},       {"bs", "batch_size"},
      {"batchsize", "batch_size"}, {"wd", "weight_decay"},        {"smoothing", "label_smoothing"},
      {"augmentation", "augment"}, {"algorithms", "algorithm"},   {"algo", "algorithm"},
      {"method", "algorithm"},     {"archs", "arch"},             {"architecture", "arch"},
      {"model", "arch"},           {"models", "arch"},            {"profiles", "profile"},
      {"seeds", "seed"},           {"bit", "bits"},               {"bitwidth", "bits"},
      {"bit_width", "bits"},       {"num_threads", "threads"},    {"excludes", "exclude"},
      {"includes", "include"},     {"calibration_images", "calib_images"},
      {"calib_size", "calib_images"}, {"iterations", "repeats"},  {"runs", "repeats"},
      {"data", "dataset"},         {"path", "root"},              {"dir", "root"},
      {"weights", "w"},            {"activations", "a"},          {"noises", "noise"},
      {"quality", "jpeg_quality"},
  };
  return kAliases;
}

using yaml::found;
using yaml::child_path;
using yaml::Item;
using yaml::MapView;
using yaml::mark_of;
using yaml::parse_int64;

class Parser : public yaml::Reader {
 public:
  Parser(const std::string& file, const Catalog& catalog)
      : Reader(file, key_aliases()), cat_(catalog), archs_(catalog.archs) {}
  using Reader::fail;

  Matrix parse(const std::string& text, const std::string& size);

  /// A name from `known`; an unknown one fails with the closest candidates.
  std::string known_name(const Item& it, const std::string& kind, const std::vector<std::string>& known) const {
    std::string s = string_value(it);
    if (std::find(known.begin(), known.end(), s) == known.end())
      fail(it, "unknown " + kind + " '" + s + "'" + did_you_mean(s, known));
    return s;
  }

  std::string profile(const Item& it) const {
    std::string s = known_name(it, "profile", cat_.profiles);
    auto why = cat_.unrunnable_profiles.find(s);
    if (why != cat_.unrunnable_profiles.end()) fail(it, "profile '" + s + "' is not implemented yet: " + why->second);
    return s;
  }

  std::string algorithm(const Item& it) const {
    std::string s = string_value(it);
    if (cat_.find_algorithm(s)) return s;
    auto refused = cat_.refused_algorithms.find(s);
    if (refused != cat_.refused_algorithms.end()) {
      if (refused->second.why == Refusal::Why::ElsewhereInFile) fail(it, "'" + s + "' is " + refused->second.message);
      fail(it, "algorithm '" + s + "' is not implemented yet: " + refused->second.message);
    }
    std::vector<std::string> names;
    for (const auto& a : cat_.algorithms) names.push_back(a.name);
    fail(it, "unknown algorithm '" + s + "'" + did_you_mean(s, names));
  }

  int width(const Item& it) const {
    int64_t v = 0;
    if (!is_plain(it) || !parse_int64(it.node.Scalar(), v))
      fail(it, "expected a bit width 2..8 or 32, got " + found(it.node));
    if (!valid_width(v)) fail(it, width_error(v));
    return static_cast<int>(v);
  }

  BitWidth bits(const Item& it) const {
    if (it.node.IsMap() && it.node["mixed"]) {
      MapView m(*this, it, {"mixed"}, "a budget {mixed: {size_kb: 100}}");
      const Item b = m.get("mixed");
      if (!b.node.IsMap() || b.node.size() == 0)
        fail(b, "expected a map of budgets (" + join(mixed_budget_keys(), ", ") + "), got " + found(b.node));
      MapView budget(*this, b, mixed_budget_keys(), "");
      BitWidth out;
      out.mark = it.mark;
      for (const auto& k : mixed_budget_keys()) {
        if (!budget.has(k)) continue;
        const Item v = budget.get(k);
        if (k == "avg_w_bits" || k == "avg_a_bits")
          out.mixed[k] = number(v, 2.0, true, 8.0, true);
        else if (k == "bops_ratio")
          out.mixed[k] = number(v, 0.0, false, 1.0, true);
        else
          out.mixed[k] = number(v, 0.0, false);
      }
      return out;
    }
    if (it.node.IsMap()) {
      MapView m(*this, it, {"w", "a"}, "a bit-width map {w: 4, a: 8}");
      int w = width(m.require("w"));
      int a = width(m.require("a"));
      return BitWidth{w, a};
    }
    if (!it.node.IsScalar())
      fail(it, "expected a bits label such as w4a8 or fp32, or a map {w: 4, a: 8}, got " + found(it.node));
    auto b = split_bits_label(it.node.Scalar());
    if (!b)
      fail(it, "expected a bits label such as w4a8 or fp32, or a map {w: 4, a: 8}, got " + found(it.node));
    if (!valid_width(b->w)) fail(it, width_error(b->w) + " (in '" + it.node.Scalar() + "')");
    if (!valid_width(b->a)) fail(it, width_error(b->a) + " (in '" + it.node.Scalar() + "')");
    return *b;
  }

  /// An axis: one value or a non-empty list of values.
  std::vector<Item> axis_items(const Item& it) const {
    if (it.node.IsNull()) fail(it, "expected a value or a list of values, got " + found(it.node));
    if (!it.node.IsSequence()) return {it};
    if (it.node.size() == 0) fail(it, "expected at least one value, got an empty list");
    return elements(it);
  }

  /// Entries of `exclude`/`include`: a list of maps (null = none).
  std::vector<Item> entry_items(const Item& it) const {
    if (it.node.IsNull()) return {};
    if (!it.node.IsSequence())
      fail(it, "expected a list of maps such as [{arch: resnet20, bits: w2a2}], got " + found(it.node));
    return elements(it);
  }

  AxisAssignment assignment(const Item& it) const {
    if (!it.node.IsMap())
      fail(it, "expected a map over algorithm, bits, arch, profile, seed, got " + found(it.node));
    MapView m(*this, it, {"algorithm", "bits", "arch", "profile", "seed", "bn_fold", "noise"}, "");
    if (m.empty()) fail(it, "expected at least one of algorithm, bits, arch, profile, seed, bn_fold, noise");
    AxisAssignment a;
    if (m.has("algorithm")) a["algorithm"] = algorithm(m.get("algorithm"));
    if (m.has("bits")) a["bits"] = bits(m.get("bits")).label();
    if (m.has("arch")) a["arch"] = known_name(m.get("arch"), "arch", archs_);
    if (m.has("profile")) a["profile"] = profile(m.get("profile"));
    if (m.has("seed")) a["seed"] = std::to_string(unsigned_integer(m.get("seed")));
    if (m.has("bn_fold")) a["bn_fold"] = bn_fold(m.get("bn_fold"));
    if (m.has("noise")) a["noise"] = noise(m.get("noise"));
    return a;
  }

  /// A deployment noise: "none" or a name of the catalog's noise table.
  std::string noise(const Item& it) const {
    const std::string s = string_value(it);
    if (s == "none" || cat_.find_noise(s)) {
      auto why = cat_.unimplemented_noises.find(s);
      if (why != cat_.unimplemented_noises.end()) fail(it, "noise '" + s + "' is not implemented yet: " + why->second);
      return s;
    }
    std::vector<std::string> names{"none"};
    for (const auto& n : cat_.noises)
      if (n.name != "none") names.push_back(n.name);
    fail(it, "unknown noise '" + s + "'" + did_you_mean(s, names));
  }

  /// A BN folding strategy: `profile` or an integer -1..4 (MQBench's ids).
  std::string bn_fold(const Item& it) const {
    if (it.node.IsScalar() && it.node.Scalar() == "profile") return "profile";
    int64_t v = 0;
    if (!is_plain(it) || !parse_int64(it.node.Scalar(), v) || v < -1 || v > 4)
      fail(it, "expected a BN folding strategy -1..4 (MQBench's ids) or 'profile', got " + found(it.node));
    return std::to_string(v);
  }

  const Catalog& catalog() const { return cat_; }

 private:
  void parse_dataset(const Item& it, DatasetSpec& d) const;
  static const std::vector<std::string>& train_keys();
  void train_recipe(const MapView& f, TrainRecipe& r) const;
  void check_warmup(const MapView& f, const TrainRecipe& r) const;
  void parse_observer(const Item& it, ObserverChoice& o) const;
  void parse_qat(const Item& it, Matrix& m) const;
  /// The keys of pipeline.<stage> that are settings sections of algorithms.
  std::vector<std::string> section_keys(const std::string& stage) const;
  /// Reads the declared sections of pipeline.<stage> present in `f` into m.settings.
  void parse_sections(const MapView& f, const std::string& stage, Matrix& m) const;
  void parse_settings(const Item& it, const SettingsSection& sec, nlohmann::json& out) const;
  void parse_pipeline(const Item& it, Matrix& m) const;
  void parse_mixed_precision(const Item& it, MixedPrecisionRecipe& r) const;
  /// A mixed entry's widths: the largest candidates; the candidates checked against each profile
  /// and the budget against the candidates' range, the algorithms against non-uniform grids.
  void check_mixed(const Item& entry, const Matrix& m, BitWidth& b) const;
  void parse_axes(const Item& it, Matrix& m) const;
  void parse_architectures(const Item& it, Matrix& m) const;

  const Catalog& cat_;
  /// The catalog's architectures plus those the file's `architectures:` map defines (onnx).
  mutable std::vector<std::string> archs_;
};

template <typename T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

/// Reads a file named in the matrix (relative to the matrix file, so a matrix and its models
/// travel together): the resolved path and the SHA-256 of its bytes.
std::pair<std::string, std::string> read_named_file(const Parser& p, const Item& it, const std::string& what) {
  std::filesystem::path path = p.string_value(it);
  if (path.is_relative() && p.file() != "<string>") path = std::filesystem::path(p.file()).parent_path() / path;
  std::ifstream in(path, std::ios::binary);
  if (!in) p.fail(it, "cannot read " + what + " " + path.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return {path.string(), sha256_hex(bytes)};
}

void Parser::parse_architectures(const Item& it, Matrix& m) const {
  if (it.node.IsNull()) return;
  if (!it.node.IsMap())
    fail(it, "expected a map {<arch>: {width, stem, weights} or {onnx, train}}, got " + found(it.node));
  std::vector<std::string> names;
  std::map<std::string, SourceMark> key_marks;
  for (const auto& kv : it.node) {
    names.push_back(kv.first.Scalar());
    key_marks[kv.first.Scalar()] = mark_of(kv.first);
  }
  MapView archs(*this, it, names, "");
  for (const auto& name : names) {
    const Item a = archs.get(name);
    const Item key{YAML::Node(name), a.path, key_marks[name]};
    const bool builtin = std::find(cat_.archs.begin(), cat_.archs.end(), name) != cat_.archs.end();
    const bool onnx = a.node.IsMap() && a.node["onnx"];
    ArchOptions o;
    o.mark = key.mark;
    if (onnx) {
      // An ONNX file is a new architecture, named by this key.
      if (builtin)
        fail(key, "'" + name + "' is a built-in architecture; give the ONNX model a name of its own");
      MapView f(*this, a, {"onnx", "train"}, "a map {onnx: FILE, train: false}");
      const auto [path, sha] = read_named_file(*this, f.get("onnx"), "ONNX file");
      o.onnx = path;
      o.onnx_sha256 = sha;
      if (f.has("train")) o.train = boolean(f.get("train"));
      m.arch_options[name] = o;
      archs_.push_back(name);
      continue;
    }
    if (!builtin)
      fail(key, "unknown arch '" + name + "'" + did_you_mean(name, cat_.archs) +
                    " (a new architecture needs `onnx: FILE`)");
    MapView f(*this, a, {"width", "stem", "weights"}, "a map {width, stem, weights}");
    if (f.has("width")) o.width = number(f.get("width"), 0, false, 16, true);
    if (f.has("stem")) {
      const Item st = f.get("stem");
      o.stem = string_value(st);
      if (o.stem != "auto" && o.stem != "small" && o.stem != "imagenet")
        fail(st, "expected auto, small or imagenet, got '" + o.stem + "'" + did_you_mean(o.stem, {"auto", "small", "imagenet"}));
    }
    if (f.has("weights")) {
      const auto [path, sha] = read_named_file(*this, f.get("weights"), "weights file");
      o.weights = path;
      o.weights_sha256 = sha;
    }
    m.arch_options[name] = o;
  }
}

void Parser::parse_dataset(const Item& it, DatasetSpec& d) const {
  static const std::map<std::string, int64_t> kNoOptions;
  auto o = cat_.dataset_options.end();
  if (it.node.IsScalar()) {
    d.name = known_name(it, "dataset", cat_.datasets);
    o = cat_.dataset_options.find(d.name);
    for (const auto& f : dataset_option_fields()) {
      d.*f.field = 0;
      if (o != cat_.dataset_options.end())
        if (auto def = o->second.find(f.key); def != o->second.end()) d.*f.field = def->second;
    }
    return;
  }
  if (!it.node.IsMap())
    fail(it, "expected a dataset name or a map {name, root, train_subset, test_subset, ...}, got " + found(it.node));
  std::vector<std::string> keys = {"name", "root", "train_subset", "test_subset", "workers"};
  for (const auto& f : dataset_option_fields()) keys.push_back(f.key);
  MapView m(*this, it, keys, "");
  d.name = known_name(m.require("name"), "dataset", cat_.datasets);
  if (m.has("root")) d.root = string_value(m.get("root"));
  if (m.has("train_subset")) d.train_subset = integer(m.get("train_subset"), 0);
  if (m.has("test_subset")) d.test_subset = integer(m.get("test_subset"), 0);
  if (m.has("workers")) d.workers = int32(m.get("workers"), 0, 256);
  // Each dataset reads its own options (declared in its registry entry); an option it does not
  // read is an error, never silently ignored. Options left out take the dataset's default.
  o = cat_.dataset_options.find(d.name);
  const auto& opts = o == cat_.dataset_options.end() ? kNoOptions : o->second;
  for (const auto& f : dataset_option_fields()) {
    auto def = opts.find(f.key);
    if (!m.has(f.key)) {
      d.*f.field = def == opts.end() ? 0 : def->second;
      continue;
    }
    Item item = m.get(f.key);
    if (def == opts.end()) {
      std::string have;
      for (const auto& kv : opts) have += (have.empty() ? "" : ", ") + kv.first;
      fail(item, "dataset '" + d.name + "' has no option " + f.key +
                     (have.empty() ? " (it takes none)" : " (its options: " + have + ")"));
    }
    d.*f.field = integer(item, f.lo, f.hi);
  }
}

const std::vector<std::string>& Parser::train_keys() {
  static const std::vector<std::string> kKeys = {"epochs",       "batch_size",      "lr",
                                                 "warmup_epochs", "warmup_start_lr", "momentum",
                                                 "nesterov",     "weight_decay",    "label_smoothing",
                                                 "augment"};
  return kKeys;
}

/// Reads the TrainRecipe keys present in `f` (a map checked against a superset of train_keys()).
void Parser::train_recipe(const MapView& f, TrainRecipe& r) const {
  if (f.has("epochs")) r.epochs = int32(f.get("epochs"), 1);
  if (f.has("batch_size")) r.batch_size = int32(f.get("batch_size"), 1);
  if (f.has("lr")) r.lr = number(f.get("lr"), 0, false);
  if (f.has("warmup_epochs")) r.warmup_epochs = number(f.get("warmup_epochs"), 0, true);
  if (f.has("warmup_start_lr")) r.warmup_start_lr = number(f.get("warmup_start_lr"), 0, true);
  if (f.has("momentum")) r.momentum = number(f.get("momentum"), 0, true, 1, false);
  if (f.has("nesterov")) r.nesterov = boolean(f.get("nesterov"));
  if (f.has("weight_decay")) r.weight_decay = number(f.get("weight_decay"), 0, true);
  if (f.has("label_smoothing")) r.label_smoothing = number(f.get("label_smoothing"), 0, true, 1, false);
  if (f.has("augment")) r.augment = boolean(f.get("augment"));
}

/// A warm-up as long as the run never reaches the peak rate nor starts the cosine decay.
void Parser::check_warmup(const MapView& f, const TrainRecipe& r) const {
  if (r.warmup_epochs < r.epochs) return;
  Item at = f.has("warmup_epochs") ? f.get("warmup_epochs") : f.has("epochs") ? f.get("epochs") : f.self();
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os << "warmup_epochs (" << r.warmup_epochs << ") must be less than epochs (" << r.epochs << ")";
  fail(at, os.str());
}

void Parser::parse_observer(const Item& it, ObserverChoice& o) const {
  if (it.node.IsScalar()) {
    o.weight = o.activation = known_name(it, "observer", cat_.observers);
    return;
  }
  if (!it.node.IsMap())
    fail(it, "expected an observer name or a map {weight: NAME, activation: NAME}, got " + found(it.node));
  MapView m(*this, it, {"weight", "activation"}, "");
  if (m.has("weight")) o.weight = known_name(m.get("weight"), "observer", cat_.observers);
  if (m.has("activation")) o.activation = known_name(m.get("activation"), "observer", cat_.observers);
}

void Parser::parse_qat(const Item& it, Matrix& m) const {
  QatRecipe& q = m.qat;
  std::vector<std::string> allowed = train_keys();
  allowed.push_back("init_images");
  allowed.push_back("train_images");
  allowed.push_back("range_init");
  allowed.push_back("overrides");
  for (const auto& k : section_keys("qat")) allowed.push_back(k);
  MapView f(*this, it, allowed, "");
  parse_sections(f, "qat", m);
  train_recipe(f, q.train);
  check_warmup(f, q.train);
  if (f.has("init_images")) q.init_images = integer(f.get("init_images"), 1);
  if (f.has("train_images")) q.train_images = integer(f.get("train_images"), 0);
  if (f.has("range_init")) q.range_init = choice(f.get("range_init"), "range_init", {"paper", "mse"});
  if (!f.has("overrides")) return;

  const Item ov = f.get("overrides");
  if (ov.node.IsNull()) return;
  if (!ov.node.IsMap())
    fail(ov, "expected a map {<qat algorithm>: {<recipe key>: value}}, got " + found(ov.node));
  std::map<std::string, SourceMark> seen;
  for (const auto& kv : ov.node) {
    const YAML::Node k = kv.first;  // copies: see MapView
    const YAML::Node v = kv.second;
    Item key{k, ov.path, mark_of(k)};
    if (!k.IsScalar()) fail(key, "expected an algorithm name, got " + found(k));
    key.path = child_path(ov.path, k.Scalar());
    const std::string name = algorithm(key);
    if (seen.count(name))
      fail(key, "duplicate key (first given on line " + std::to_string(seen[name].line) + ")");
    seen[name] = key.mark;
    const AlgorithmInfo* info = cat_.find_algorithm(name);
    if (info->kind != CellKind::Qat)
      fail(key, "algorithm '" + name + "' is of kind " + to_string(info->kind) +
                    ", not qat (overrides apply to QAT algorithms only)");
    SourceMark vm = v.IsNull() ? key.mark : mark_of(v);
    if (vm.line == 0) vm = key.mark;
    MapView o(*this, Item{v, key.path, vm}, train_keys(), "a map of recipe keys such as {lr: 0.001}");
    TrainRecipe r = q.train;
    train_recipe(o, r);
    check_warmup(o, r);
    // Recorded as typed JSON values (what the cell's resolved configuration shows).
    nlohmann::json j = nlohmann::json::object();
    if (o.has("epochs")) j["epochs"] = r.epochs;
    if (o.has("batch_size")) j["batch_size"] = r.batch_size;
    if (o.has("lr")) j["lr"] = r.lr;
    if (o.has("warmup_epochs")) j["warmup_epochs"] = r.warmup_epochs;
    if (o.has("warmup_start_lr")) j["warmup_start_lr"] = r.warmup_start_lr;
    if (o.has("momentum")) j["momentum"] = r.momentum;
    if (o.has("nesterov")) j["nesterov"] = r.nesterov;
    if (o.has("weight_decay")) j["weight_decay"] = r.weight_decay;
    if (o.has("label_smoothing")) j["label_smoothing"] = r.label_smoothing;
    if (o.has("augment")) j["augment"] = r.augment;
    q.overrides[name] = std::move(j);
  }
}

std::vector<std::string> Parser::section_keys(const std::string& stage) const {
  std::vector<std::string> out;
  for (const SettingsSection* sec : cat_.settings_sections())
    if (sec->stage == stage) out.push_back(sec->section);
  return out;
}

void Parser::parse_sections(const MapView& f, const std::string& stage, Matrix& m) const {
  for (const SettingsSection* sec : cat_.settings_sections())
    if (sec->stage == stage && f.has(sec->section)) parse_settings(f.get(sec->section), *sec, m.settings[sec->id()]);
}

/// One algorithm's settings, checked against its declared table: every option typed and bounded
/// as declared, unknown keys with the closest names; options left out take their defaults.
void Parser::parse_settings(const Item& it, const SettingsSection& sec, nlohmann::json& out) const {
  MapView f(*this, it, sec.names(), "a map of settings such as {" + sec.options.front().name + ": ...}");
  out = sec.defaults();
  for (const auto& o : sec.options) {
    if (!f.has(o.name)) continue;
    const Item v = f.get(o.name);
    switch (o.type) {
      case OptionSpec::Type::Bool: out[o.name] = boolean(v); break;
      case OptionSpec::Type::Choice: out[o.name] = choice(v, o.name, o.choices); break;
      case OptionSpec::Type::Int: {
        const double top = static_cast<double>(std::numeric_limits<int64_t>::max());
        out[o.name] = integer(v, static_cast<int64_t>(o.lo), o.hi >= top ? std::numeric_limits<int64_t>::max()
                                                                          : static_cast<int64_t>(o.hi));
        break;
      }
      case OptionSpec::Type::Number: out[o.name] = number(v, o.lo, !o.lo_open, o.hi, !o.hi_open); break;
    }
  }
}

void Parser::parse_pipeline(const Item& it, Matrix& m) const {
  MapView p(*this, it, {"threads", "fp32", "ptq", "qat", "eval", "latency", "deploy", "mixed_precision", "noise"}, "");
  if (p.has("noise")) {
    MapView n(*this, p.get("noise"), {"jpeg_quality"}, "");
    if (n.has("jpeg_quality")) m.noise.jpeg_quality = int32(n.get("jpeg_quality"), 1, 100);
  }
  if (p.has("threads")) m.threads = int32(p.get("threads"), 1, 256);

  if (p.has("fp32")) {
    MapView f(*this, p.get("fp32"), train_keys(), "");
    train_recipe(f, m.fp32);
    check_warmup(f, m.fp32);
  }
  if (p.has("ptq")) {
    std::vector<std::string> keys = {"calib_images", "calib_batch_size", "observer", "calibration"};
    for (const auto& k : section_keys("ptq")) keys.push_back(k);
    MapView q(*this, p.get("ptq"), keys, "");
    if (q.has("calib_images")) m.ptq.calib_images = integer(q.get("calib_images"), 1);
    if (q.has("calib_batch_size")) m.ptq.calib_batch_size = int32(q.get("calib_batch_size"), 1);
    if (q.has("observer")) parse_observer(q.get("observer"), m.ptq.observer);
    parse_sections(q, "ptq", m);
    if (q.has("calibration")) {
      MapView c(*this, q.get("calibration"), {"source", "iters", "lr", "batch_size"}, "");
      auto& cr = m.ptq.calibration;
      if (c.has("source")) cr.source = known_name(c.get("source"), "calibration source", {"data", "zeroq", "dsg"});
      if (c.has("iters")) cr.iters = integer(c.get("iters"), 1);
      if (c.has("lr")) cr.lr = number(c.get("lr"), 0.0, false);
      if (c.has("batch_size")) cr.batch_size = int32(c.get("batch_size"), 1);
    }
  }
  if (p.has("qat")) parse_qat(p.get("qat"), m);
  if (p.has("eval")) {
    MapView e(*this, p.get("eval"), {"batch_size"}, "");
    if (e.has("batch_size")) m.eval.batch_size = int32(e.get("batch_size"), 1);
  }
  if (p.has("latency")) {
    MapView l(*this, p.get("latency"), {"enabled", "batch_size", "warmup", "repeats"}, "");
    if (l.has("enabled")) m.latency.enabled = boolean(l.get("enabled"));
    if (l.has("batch_size")) m.latency.batch_size = int32(l.get("batch_size"), 1);
    if (l.has("warmup")) m.latency.warmup = int32(l.get("warmup"), 0);
    if (l.has("repeats")) m.latency.repeats = int32(l.get("repeats"), 1);
  }
  if (p.has("mixed_precision")) parse_mixed_precision(p.get("mixed_precision"), m.mixed_precision);
  if (p.has("deploy")) {
    MapView d(*this, p.get("deploy"), {"engines"}, "");
    for (const auto& e : axis_items(d.require("engines")))
      push_unique(m.deploy.engines, known_name(e, "deploy engine", deploy_engine_names()));
  }
}

void Parser::parse_mixed_precision(const Item& it, MixedPrecisionRecipe& r) const {
  MapView mp(*this, it, {"sensitivity", "candidates", "probes", "tolerance", "images"}, "");
  if (mp.has("sensitivity")) r.sensitivity = known_name(mp.get("sensitivity"), "sensitivity measure", sensitivity_names());
  if (mp.has("probes")) r.probes = int32(mp.get("probes"), 1, 100000);
  if (mp.has("tolerance")) r.tolerance = number(mp.get("tolerance"), 0.0, true, 1.0, true);
  if (mp.has("images")) r.images = integer(mp.get("images"), 1);
  r.mark = it.mark;
  if (mp.has("candidates")) {
    const Item c = mp.get("candidates");
    r.mark = c.mark;
    MapView cm(*this, c, {"w", "a"}, "");
    auto widths = [&](const Item& list) {
      std::vector<int> out;
      for (const auto& e : axis_items(list)) {
        const int b = width(e);
        if (b == 32) fail(e, "a mixed-precision candidate is a width 2..8 (float is not a candidate)");
        push_unique(out, b);
      }
      std::sort(out.begin(), out.end());
      return out;
    };
    if (cm.has("w")) r.w_candidates = widths(cm.get("w"));
    if (cm.has("a")) r.a_candidates = widths(cm.get("a"));
  }
}

void Parser::check_mixed(const Item& entry, const Matrix& m, BitWidth& b) const {
  const MixedPrecisionRecipe& r = m.mixed_precision;
  b.w = r.w_candidates.back();
  b.a = r.a_candidates.back();
  auto range = [](const std::vector<int>& c) {
    return std::to_string(c.front()) + " .. " + std::to_string(c.back());
  };
  // The averages' reachable range from the candidates alone (the profile's 8-bit first and last
  // layers move it; the model-level check at run start has the exact range).
  for (const char* k : {"avg_w_bits", "avg_a_bits"}) {
    auto it = b.mixed.find(k);
    if (it == b.mixed.end()) continue;
    const auto& c = std::string(k) == "avg_w_bits" ? r.w_candidates : r.a_candidates;
    if (it->second < c.front())
      fail(entry, std::string("mixed budget ") + k + " " + budget_number(it->second) +
                      " is unreachable: the candidates (pipeline.mixed_precision.candidates) reach " + range(c));
  }
  for (const auto& prof : m.profiles) {
    auto pw = cat_.profile_widths.find(prof);
    if (pw == cat_.profile_widths.end()) continue;
    auto allowed = [&](const std::vector<int>& cands, const std::vector<int>& ok, int cap, const char* which) {
      for (int c : cands)
        if (c > cap || (!ok.empty() && std::find(ok.begin(), ok.end(), c) == ok.end())) {
          std::string list;
          for (int o : ok) list += (list.empty() ? "" : ", ") + std::to_string(o);
          fail(r.mark, "pipeline.mixed_precision.candidates." + std::string(which),
               "candidate width " + std::to_string(c) + " is not allowed by profile '" + prof + "' (" +
                   (c > cap ? "at most " + std::to_string(cap) + " bits: max_bits" : "allowed: " + list) + ")");
        }
    };
    allowed(r.w_candidates, pw->second.w, pw->second.w_max, "w");
    allowed(r.a_candidates, pw->second.a, pw->second.a_max, "a");
    if (b.mixed.count("latency_ms") && !pw->second.roofline)
      fail(entry, "mixed budget latency_ms needs a latency that depends on the width, and profile '" + prof +
                      "' has none: no roofline block, and its int8 engine runs every width below 8 in int8 kernels "
                      "(budget size_kb, bops_ratio or the averages instead)");
  }
  if (m.ptq.calibration.source != "data")
    for (const auto& alg : m.algorithms)
      if (const AlgorithmInfo* info = cat_.find_algorithm(alg); info && info->kind == CellKind::Ptq)
        fail(entry, "a mixed budget measures its sensitivities on labelled training images, and "
                    "pipeline.ptq.calibration.source is " + m.ptq.calibration.source +
                    " (data-free): the allocation would use the data the cell must not see");
  for (const auto& alg : m.algorithms) {
    auto nu = cat_.nonuniform_algorithms.find(alg);
    if (nu != cat_.nonuniform_algorithms.end())
      fail(entry, "algorithm '" + alg + "' cannot take a mixed budget: " + nu->second);
  }
}

void Parser::parse_axes(const Item& it, Matrix& m) const {
  if (!it.node.IsMap()) fail(it, "expected a map of axes (algorithm, bits, arch, ...), got " + found(it.node));
  MapView x(*this, it, {"algorithm", "bits", "arch", "profile", "seed", "bn_fold", "noise", "exclude", "include"}, "");

  for (const auto& a : axis_items(x.require("algorithm"))) push_unique(m.algorithms, algorithm(a));

  bool only_fp32 = std::all_of(m.algorithms.begin(), m.algorithms.end(), [&](const std::string& a) {
    const AlgorithmInfo* info = cat_.find_algorithm(a);
    return a == "fp32" || (info && info->kind == CellKind::Fp32);
  });
  if (x.has("bits") || !only_fp32)
    for (const auto& b : axis_items(x.require("bits", " (required unless algorithm is only fp32)")))
      push_unique(m.bits, bits(b));

  for (const auto& a : axis_items(x.require("arch"))) push_unique(m.archs, known_name(a, "arch", archs_));

  if (x.has("profile")) {
    for (const auto& p : axis_items(x.get("profile")))
      push_unique(m.profiles, profile(p));
  } else {
    if (std::find(cat_.profiles.begin(), cat_.profiles.end(), "academic") == cat_.profiles.end())
      fail(x.self(), "missing key 'profile' (the default 'academic' is not a known profile)");
    m.profiles = {"academic"};
  }

  if (x.has("bits"))
    for (const auto& b : axis_items(x.get("bits")))
      if (b.node.IsMap() && b.node["mixed"])
        for (auto& mb : m.bits)
          if (mb.is_mixed() && mb.mark.line == b.mark.line && mb.mark.column == b.mark.column) check_mixed(b, m, mb);

  if (x.has("seed")) {
    for (const auto& s : axis_items(x.get("seed"))) push_unique(m.seeds, unsigned_integer(s));
  } else {
    m.seeds = {0};
  }

  if (x.has("bn_fold")) {
    m.bn_folds.clear();
    for (const auto& b : axis_items(x.get("bn_fold"))) push_unique(m.bn_folds, bn_fold(b));
  }

  if (x.has("noise")) {
    m.noises.clear();
    for (const auto& n : axis_items(x.get("noise"))) {
      const std::string name = noise(n);
      if (std::find(m.noises.begin(), m.noises.end(), name) != m.noises.end()) continue;
      m.noises.push_back(name);
      m.noise_marks.push_back(n.mark);
    }
  }

  if (x.has("exclude")) {
    for (const auto& e : entry_items(x.get("exclude"))) {
      AxisAssignment a = assignment(e);
      auto alg = a.find("algorithm");
      auto noise_of = a.find("noise");
      // The baseline under a noise is an evaluation like any other cell: it may be left out.
      const bool noisy = noise_of != a.end() && noise_of->second != "none";
      if (alg != a.end() && alg->second == "fp32" && !noisy)
        fail(e, "the FP32 baseline cannot be excluded (every quantized cell of its arch and seed needs it)");
      m.exclude.push_back(std::move(a));
    }
  }
  if (x.has("include")) {
    for (const auto& e : entry_items(x.get("include"))) {
      m.include.push_back(assignment(e));
      m.include_marks.push_back(e.mark);
    }
  }
}

Matrix Parser::parse(const std::string& text, const std::string& size) {
  Matrix m;
  m.file = file();
  m.yaml_text = text;
  m.yaml_hash = sha256_hex(text);

  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    SourceMark mk = e.mark.is_null() ? SourceMark{} : SourceMark{e.mark.line + 1, e.mark.column + 1};
    fail(mk, "", "YAML syntax error: " + e.msg);
  }
  if (docs.empty()) fail(SourceMark{}, "", "the file is empty (expected a map with name, dataset and matrix)");
  if (docs.size() > 1)
    fail(mark_of(docs[1]), "", "expected one YAML document, found " + std::to_string(docs.size()));

  Item root{docs[0], "", mark_of(docs[0])};
  if (root.mark.line == 0) root.mark = {1, 1};
  if (!root.node.IsMap())
    fail(root, "expected a map with name, dataset, pipeline and matrix at the top level, got " + found(root.node));
  // `sizes:` overlays are merged before anything else is read, so the rest of the parser sees
  // one tree. The merged nodes keep their own marks: an error in an override names its line.
  if (const YAML::Node sizes = root.node["sizes"]) {
    const Item sz{sizes, "sizes", mark_of(sizes)};
    if (!sizes.IsMap()) fail(sz, "expected a map {<size name>: {<overrides>}}, got " + found(sizes));
    for (const auto& kv : sizes)
      if (!kv.second.IsMap())
        fail(mark_of(kv.second), "sizes." + kv.first.Scalar(), "expected a map of overrides, got " + found(kv.second));
  }
  if (!size.empty()) {
    std::vector<std::string> names;
    if (const YAML::Node sizes = root.node["sizes"])
      for (const auto& kv : sizes) names.push_back(kv.first.Scalar());
    if (std::find(names.begin(), names.end(), size) == names.end())
      fail(root, "--size " + size + ": the file has no such entry under `sizes`" +
                     (names.empty() ? std::string(" (it has no `sizes` map)") : did_you_mean(size, names)));
    std::function<void(YAML::Node, const YAML::Node&)> merge = [&](YAML::Node base, const YAML::Node& over) {
      for (const auto& kv : over) {
        const std::string key = kv.first.Scalar();
        if (kv.second.IsMap() && base[key] && base[key].IsMap())
          merge(base[key], kv.second);
        else
          base[key] = kv.second;
      }
    };
    YAML::Node merged = root.node;
    const YAML::Node overlay = root.node["sizes"][size];
    // `dataset: NAME` is shorthand for `dataset: {name: NAME}`; expand it so that an overlay of
    // dataset keys merges with it instead of replacing it.
    if (overlay["dataset"] && overlay["dataset"].IsMap() && merged["dataset"] && merged["dataset"].IsScalar()) {
      YAML::Node ds(YAML::NodeType::Map);
      ds["name"] = merged["dataset"].Scalar();
      merged["dataset"] = ds;
    }
    merge(merged, overlay);
    m.size = size;
  }
  MapView top(*this, root, {"name", "description", "dataset", "pipeline", "architectures", "matrix", "sizes"}, "");

  m.name = string_value(top.require("name"));
  if (top.has("description")) {
    Item d = top.get("description");
    if (!d.node.IsScalar()) fail(d, "expected a string, got " + found(d.node));
    m.description = d.node.Scalar();
  }
  parse_dataset(top.require("dataset"), m.dataset);
  for (const SettingsSection* sec : cat_.settings_sections()) m.settings[sec->id()] = sec->defaults();
  if (top.has("pipeline")) parse_pipeline(top.get("pipeline"), m);
  // Architectures first: an `onnx:` entry defines a name the axes may use.
  if (top.has("architectures")) parse_architectures(top.get("architectures"), m);
  parse_axes(top.require("matrix"), m);

  // Expanding is cheap and is the only complete check of `include` (an omitted key is an error
  // only when its axis has several values), so the file is rejected now rather than at run time.
  (void)expand_cells(m, cat_);
  return m;
}

}  // namespace

const std::vector<DatasetOptionField>& dataset_option_fields() {
  static const std::vector<DatasetOptionField> kFields = {
      {"image_size", &DatasetSpec::image_size, 8, 4096},
      {"channels", &DatasetSpec::channels, 1, 64},
      {"classes", &DatasetSpec::classes, 2, 1000000},
      {"train_size", &DatasetSpec::train_size, 1, int64_t(1) << 31},
      {"test_size", &DatasetSpec::test_size, 1, int64_t(1) << 31},
  };
  return kFields;
}

BitWidth parse_bits_label(const std::string& s) {
  if (s.rfind("mixed:", 0) == 0) {
    BitWidth b;
    std::stringstream parts(s.substr(6));
    std::string part;
    while (std::getline(parts, part, ',')) {
      const auto eq = part.find('=');
      double v = 0;
      const std::string key = part.substr(0, eq);
      if (eq == std::string::npos ||
          std::find(mixed_budget_keys().begin(), mixed_budget_keys().end(), key) == mixed_budget_keys().end() ||
          !yaml::parse_double(part.substr(eq + 1), v))
        throw ConfigError("invalid mixed bits label '" + s + "' (expected mixed:KEY=VALUE,... with keys " +
                          join(mixed_budget_keys(), ", ") + ")");
      b.mixed[key] = v;
    }
    if (b.mixed.empty()) throw ConfigError("invalid mixed bits label '" + s + "': no budget");
    return b;
  }
  auto b = split_bits_label(s);
  if (!b) throw ConfigError("invalid bits label '" + s + "' (expected wXaY such as w4a8, or fp32)");
  if (!valid_width(b->w)) throw ConfigError(width_error(b->w) + " (in '" + s + "')");
  if (!valid_width(b->a)) throw ConfigError(width_error(b->a) + " (in '" + s + "')");
  return *b;
}

Matrix parse_matrix(const std::string& yaml_text, const std::string& file, const Catalog& catalog,
                    const std::string& size) {
  Parser p(file, catalog);
  return p.parse(yaml_text, size);
}

Matrix load_matrix_file(const std::string& path, const Catalog& catalog, const std::string& size) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ConfigError(path, 0, 0, "", "matrix file not found");
  if (fs::is_directory(path, ec)) throw ConfigError(path, 0, 0, "", "is a directory, not a matrix file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, 0, 0, "", "cannot open the matrix file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw ConfigError(path, 0, 0, "", "cannot read the matrix file");
  return parse_matrix(bytes.str(), path, catalog, size);
}

const std::vector<std::string>& deploy_engine_names() {
  static const std::vector<std::string> names = {"onnxruntime"};
  return names;
}

}  // namespace qbench::config
