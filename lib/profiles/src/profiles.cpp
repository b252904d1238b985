// Hardware profile files: parsing and validation. Every error names file:line:column and the key
// path (the shared yaml::Reader), so a typo in a user's profile fails before any work starts.
#include "qbench/profiles/profiles.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/common/yaml_reader.h"

#ifndef QBENCH_PROFILES_BUILTIN_DIR
#define QBENCH_PROFILES_BUILTIN_DIR ""
#endif

namespace qbench::profiles {

namespace fs = std::filesystem;
using yaml::Item;
using yaml::MapView;
using yaml::Reader;

const std::vector<std::string>& implemented_placements() {
  static const std::vector<std::string> k = {"conv_linear_inputs", "graph_input", "add_inputs", "add_outputs"};
  return k;
}

const std::vector<std::string>& placement_names() {
  static const std::vector<std::string> k = [] {
    auto v = implemented_placements();
    for (const char* p : {"pool_inputs", "pool_outputs", "cat_inputs", "mul_inputs", "interpolate_inputs",
                          "act_outputs", "layer_outputs", "graph_output"})
      v.push_back(p);
    return v;
  }();
  return k;
}

std::string SchemeSpec::describe() const {
  if (quantizer != "affine") return quantizer + "-domain";
  std::string s = granularity + " " + (symmetric ? "sym" : "asym") + " " + signedness;
  if (narrow_range) s += " narrow";
  if (pot_scale) s += " pot";
  if (max_bits < 8) s += " max" + std::to_string(max_bits) + "b";
  return s;
}

std::string SchemeSpec::canonical() const {
  std::vector<std::string> b;
  for (int x : bits) b.push_back(std::to_string(x));
  return "quantizer=" + quantizer + ";granularity=" + granularity + ";axis=" + std::to_string(axis) +
         ";symmetric=" + (symmetric ? "1" : "0") + ";signedness=" + signedness + ";narrow_range=" +
         (narrow_range ? "1" : "0") + ";pot_scale=" + (pot_scale ? "1" : "0") +
         ";pot_max_frac_bits=" + std::to_string(pot_max_frac_bits) + ";bits=" + join(b, ",") +
         ";max_bits=" + std::to_string(max_bits) + ";observer=" + observer + ";fake_quant=" + fake_quant;
}

namespace {
// Empty when undeclared, so profiles without figures keep their hashes.
std::string roofline_canonical(const RooflineSpec& r) {
  if (!r.declared()) return "";
  char buf[128];
  std::snprintf(buf, sizeof buf, "roofline=%.6g TOPS,%.6g GB/s\n", r.peak_int8_tops, r.mem_bandwidth_gbs);
  return buf;
}
}  // namespace

double roofline_layer_ms(const RooflineSpec& r, const LayerCost& l, int64_t batch, int w_bits, int a_bits) {
  if (!r.declared()) throw Error("roofline: the profile declares no peak throughput and bandwidth");
  const double b = static_cast<double>(batch);
  const double ops = 2.0 * static_cast<double>(l.macs) * b;
  const double bytes = static_cast<double>(l.weight_elems) * w_bits / 8.0 +
                       static_cast<double>(l.in_elems + l.out_elems) * b * a_bits / 8.0;
  const double compute_s = ops / (r.peak_int8_tops * 1e12);
  const double memory_s = bytes / (r.mem_bandwidth_gbs * 1e9);
  return std::max(compute_s, memory_s) * 1e3;
}

double roofline_ms(const RooflineSpec& r, const std::vector<LayerCost>& layers, int64_t batch, int w_bits,
                   int a_bits) {
  double ms = 0;
  for (const auto& l : layers) ms += roofline_layer_ms(r, l, batch, w_bits, a_bits);
  return ms;
}

std::string ProfileSpec::canonical() const {
  return "name=" + name + "\nweight:" + weight.canonical() + "\nactivation:" + activation.canonical() +
         "\nplacement=" + join(placement, ",") + "\nbn_fold=" + std::to_string(bn_fold) + "\nfirst_last=" +
         first_last + "\nengine=" + engine + "\n" + roofline_canonical(roofline) +
         (bias == "float" ? std::string() : "\nbias=" + bias);  // the default leaves every existing hash as it was
}

std::string ProfileSpec::canonical_sha256() const { return sha256_hex(canonical()); }

bool ProfileSpec::places(const std::string& p) const {
  return std::find(placement.begin(), placement.end(), p) != placement.end();
}

std::string ProfileSpec::summary() const {
  std::string s = "W " + weight.describe() + " | A " + activation.describe() + " | " + join(placement, ",") +
                  " | bn_fold " + std::to_string(bn_fold);
  if (first_last == "8bit") s += " | first/last 8-bit";
  if (engine != "none") s += " | engine " + engine;
  if (bias != "float") s += " | " + bias + " bias";
  if (roofline.declared()) {
    char buf[160];
    std::snprintf(buf, sizeof buf, " | modeled latency: %s, %.4g INT8 TOPS, %.4g GB/s", roofline.device.c_str(),
                  roofline.peak_int8_tops, roofline.mem_bandwidth_gbs);
    s += buf;
  }
  if (!not_implemented.empty()) s += " | NOT RUNNABLE: " + join(not_implemented, "; ");
  if (!unimplemented_placements.empty())
    s += " | not attached yet: " + join(unimplemented_placements, ",");
  return s;
}

namespace {

const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> k = {
      {"per_channel", "granularity"}, {"symmetry", "symmetric"},     {"sym", "symmetric"},
      {"signed", "signedness"},       {"sign", "signedness"},        {"narrow", "narrow_range"},
      {"pot", "pot_scale"},           {"bit", "bits"},               {"weights", "weight"},
      {"activations", "activation"},  {"act", "activation"},         {"bn", "bn_fold"},
      {"fold_bn", "bn_fold"},         {"backend", "engine"},         {"placements", "placement"},
      {"observers", "observer"},      {"fakequant", "fake_quant"},   {"fake_quantize", "fake_quant"},
      {"qscheme", "quantizer"},       {"desc", "description"},       {"reference", "source"},
  };
  return k;
}

const std::vector<std::string> kFakeQuants = {"fixed", "learnable", "lsq", "lsq+", "pact", "dsq",
                                              "dorefa", "apot", "qil", "tqt", "nnie"};

class ProfileParser : public Reader {
 public:
  ProfileParser(const std::string& file, const std::vector<std::string>& observers)
      : Reader(file, aliases()), observers_(observers) {}

  ProfileSpec parse(const std::string& text) {
    ProfileSpec p;
    p.file = file();
    p.text_sha256 = sha256_hex(text);
    Item root = load_document(text, "a profile map with name, weight, activation and placement");
    MapView m(*this, root,
              {"name", "description", "source", "notes", "weight", "activation", "placement", "bn_fold",
               "first_last", "engine", "roofline", "bias"},
              "");
    Item name = m.require("name");
    p.name = string_value(name);
    for (unsigned char c : p.name)
      if (!(std::islower(c) || std::isdigit(c) || c == '-' || c == '_' || c == '+'))
        fail(name, "a profile name uses lowercase letters, digits, '-', '_' and '+', got '" + p.name + "'");
    const fs::path fp(file());
    if (fp.extension() == ".yaml" && fp.stem().string() != p.name)
      fail(name, "the profile name '" + p.name + "' differs from the file name '" + fp.filename().string() +
                     "' (name the file " + p.name + ".yaml)");
    p.description = string_value(m.require("description"));
    p.source = string_value(m.require("source", " (where the facts come from)"));
    if (m.has("notes")) p.notes = string_value(m.get("notes"));
    p.weight = scheme(m.require("weight"), false, p);
    p.activation = scheme(m.require("activation"), true, p);
    placement(m.require("placement"), p);
    p.bn_fold = static_cast<int>(integer(m.require("bn_fold", " (-1 = not folded, 0..4 = MQBench strategies)"), -1, 4));
    p.first_last = choice(m.require("first_last"), "first/last-layer policy", {"8bit", "cell"});
    p.engine = choice(m.require("engine"), "integer engine", {"none", "onednn", "qnnpack", "onnxruntime"});
    if (m.has("bias")) p.bias = choice(m.get("bias"), "bias arithmetic", {"float", "int32"});
    if (m.has("roofline")) {
      MapView r(*this, m.get("roofline"), {"device", "peak_int8_tops", "mem_bandwidth_gbs", "source"},
                "a map {device, peak_int8_tops, mem_bandwidth_gbs, source}");
      p.roofline.device = string_value(r.require("device"));
      p.roofline.peak_int8_tops = number(r.require("peak_int8_tops"), 0.0, false);
      p.roofline.mem_bandwidth_gbs = number(r.require("mem_bandwidth_gbs"), 0.0, false);
      p.roofline.source = string_value(r.require("source", " (where the figures come from)"));
    }
    return p;
  }

 private:
  SchemeSpec scheme(const Item& it, bool activation, ProfileSpec& p) const {
    SchemeSpec s;
    MapView m(*this, it,
              {"quantizer", "granularity", "axis", "symmetric", "signedness", "narrow_range", "pot_scale",
               "pot_max_frac_bits", "bits", "max_bits", "observer", "fake_quant"},
              "a scheme map {granularity, symmetric, signedness, ...}");
    if (m.has("quantizer")) s.quantizer = choice(m.get("quantizer"), "quantizer", {"affine", "log"});
    if (m.has("fake_quant")) s.fake_quant = choice(m.get("fake_quant"), "fake quantizer", kFakeQuants);
    if (m.has("observer")) {
      s.observer = observers_.empty() ? string_value(m.get("observer"))
                                      : choice(m.get("observer"), "observer", observers_);
    }
    if (m.has("bits")) {
      s.bits.clear();
      for (const auto& b : list_items(m.get("bits"), "a list of bit widths such as [4, 8]")) {
        int v = static_cast<int>(integer(b, 2, 8));
        if (std::find(s.bits.begin(), s.bits.end(), v) != s.bits.end()) fail(b, "bit width " + std::to_string(v) + " listed twice");
        s.bits.push_back(v);
      }
      std::sort(s.bits.begin(), s.bits.end());
    }
    if (m.has("max_bits")) s.max_bits = static_cast<int>(integer(m.get("max_bits"), 2, 8));
    if (s.quantizer == "log") {
      // NNIE: z = round(16 log2 c) - 127, q = +-2^((clamp(round(16 log2|x|) - z, 0, 127) + z) / 16).
      for (const char* k : {"granularity", "axis", "symmetric", "signedness", "narrow_range", "pot_scale"})
        if (m.has(k)) fail(m.get(k), "does not apply to a log-domain quantizer");
      const std::string why = std::string(activation ? "activation" : "weight") +
                              " quantizer 'log' (log-domain, NNIE) is not implemented in lib/quant yet";
      if (std::find(p.not_implemented.begin(), p.not_implemented.end(), why) == p.not_implemented.end())
        p.not_implemented.push_back(why);
      return s;
    }
    const Item gran = m.require("granularity", " (per-tensor or per-channel)");
    s.granularity = choice(gran, "granularity", {"per-tensor", "per-channel"});
    if (activation && s.granularity == "per-channel")
      fail(gran, "per-channel activation quantization is not implemented (no target here needs it)");
    if (m.has("axis")) {
      if (s.granularity != "per-channel") fail(m.get("axis"), "axis applies to per-channel granularity only");
      s.axis = static_cast<int>(integer(m.get("axis"), 0, 0));  // conv [O,I,k,k] and linear [O,I] weights
    }
    s.symmetric = boolean(m.require("symmetric"));
    const Item sg = m.require("signedness", " (signed, unsigned or auto)");
    s.signedness = choice(sg, "signedness", {"signed", "unsigned", "auto"});
    if (m.has("narrow_range")) {
      s.narrow_range = boolean(m.get("narrow_range"));
      if (s.narrow_range && s.signedness == "unsigned")
        fail(m.get("narrow_range"), "narrow_range needs a signed range (signedness signed or auto)");
    }
    if (m.has("pot_scale")) {
      s.pot_scale = boolean(m.get("pot_scale"));
      if (s.pot_scale && !s.symmetric)
        fail(m.get("pot_scale"), "power-of-two scales with asymmetric quantization are not implemented "
                                 "(use symmetric: true)");
    }
    if (m.has("pot_max_frac_bits")) {
      if (!s.pot_scale) fail(m.get("pot_max_frac_bits"), "applies only with pot_scale: true");
      s.pot_max_frac_bits = static_cast<int>(integer(m.get("pot_max_frac_bits"), 0, 30));
    }
    return s;
  }

  void placement(const Item& it, ProfileSpec& p) const {
    for (const auto& e : list_items(it, "a list of placements such as [conv_linear_inputs, add_outputs]")) {
      const std::string s = choice(e, "placement", placement_names());
      if (p.places(s)) fail(e, "placement '" + s + "' listed twice");
      p.placement.push_back(s);
      const auto& impl = implemented_placements();
      if (std::find(impl.begin(), impl.end(), s) == impl.end()) p.unimplemented_placements.push_back(s);
    }
  }

  std::vector<std::string> observers_;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string() + ": cannot read the profile file");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace

ProfileSpec parse_profile(const std::string& text, const std::string& file,
                          const std::vector<std::string>& known_observers) {
  return ProfileParser(file, known_observers).parse(text);
}

std::string builtin_profiles_dir() { return QBENCH_PROFILES_BUILTIN_DIR; }

std::vector<std::string> profile_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("QBENCH_PROFILES_DIR")) {
    std::stringstream ss(env);
    std::string d;
    while (std::getline(ss, d, ':'))
      if (!d.empty()) dirs.push_back(d);
  }
  const std::string builtin = builtin_profiles_dir();
  if (!builtin.empty() && std::find(dirs.begin(), dirs.end(), builtin) == dirs.end()) dirs.push_back(builtin);
  return dirs;
}

std::vector<ProfileSpec> load_profiles(const std::vector<std::string>& dirs,
                                       const std::vector<std::string>& known_observers, bool skip_missing_builtin) {
  std::vector<ProfileSpec> out;
  std::map<std::string, std::string> file_of;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) {
      if (skip_missing_builtin && d == builtin_profiles_dir()) continue;
      throw ConfigError("hardware profiles directory '" + d +
                        "' does not exist (QBENCH_PROFILES_DIR lists directories separated by ':')");
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_regular_file() && e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      ProfileSpec p = parse_profile(read_text(f), f.string(), known_observers);
      auto it = file_of.find(p.name);
      if (it != file_of.end())
        throw ConfigError(f.string(), 0, 0, "name",
                          "profile '" + p.name + "' is already defined by " + it->second +
                              " (a profile name is part of every result row: give yours another name)");
      file_of[p.name] = f.string();
      out.push_back(std::move(p));
    }
  }
  if (out.empty()) throw ConfigError("no hardware profiles found in " + join(dirs, ", "));
  std::stable_sort(out.begin(), out.end(), [](const ProfileSpec& a, const ProfileSpec& b) {
    if ((a.name == "academic") != (b.name == "academic")) return a.name == "academic";
    return a.name < b.name;
  });
  return out;
}

std::vector<ProfileSpec> load_default_profiles(const std::vector<std::string>& known_observers) {
  const bool env_set = std::getenv("QBENCH_PROFILES_DIR") != nullptr;
  return load_profiles(profile_search_path(), known_observers, env_set);
}

}  // namespace qbench::profiles
