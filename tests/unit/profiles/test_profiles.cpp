// Hardware profile files: every shipped file loads and validates, the facts each one encodes,
// errors with file:line:column and key path, and a user's profile directory on the search path.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qbench/common/errors.h"
#include "qbench/profiles/profiles.h"

using namespace qbench;
using profiles::ProfileSpec;
namespace fs = std::filesystem;

namespace {
const std::vector<std::string> kObservers = {"minmax", "ema-minmax", "mse", "percentile", "clip-std",
                                             "kl", "lsq-init", "lsq+-init", "pot"};

const ProfileSpec& find(const std::vector<ProfileSpec>& all, const std::string& name) {
  for (const auto& p : all)
    if (p.name == name) return p;
  FAIL("no profile " << name);
  throw 0;
}

const char* kGood = R"(name: mine
description: a test profile
source: the test
weight: {granularity: per-channel, symmetric: true, signedness: signed, narrow_range: true}
activation: {granularity: per-tensor, symmetric: false, signedness: unsigned}
placement: [conv_linear_inputs, add_outputs]
bn_fold: 4
first_last: cell
engine: none
)";

/// The ConfigError message for `text` (fails the test when it parses).
std::string error_of(const std::string& text) {
  try {
    profiles::parse_profile(text, "mine.yaml", kObservers);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("parsed without error:\n" << text);
  return "";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}
}  // namespace

TEST_CASE("every shipped profile file loads and validates", "[profiles]") {
  auto all = profiles::load_profiles({profiles::builtin_profiles_dir()}, kObservers);
  std::vector<std::string> names;
  for (const auto& p : all) names.push_back(p.name);
  for (const char* n : {"academic", "tensorrt", "snpe", "x86-onednn", "qnnpack", "tvm", "acl", "vitis", "openvino",
                        "nnie", "tengine", "fbgemm", "ppl-cuda", "stpu"})
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  CHECK(names.front() == "academic");
  for (const auto& p : all) {
    INFO(p.name);
    CHECK(!p.description.empty());
    CHECK(!p.source.empty());
    CHECK(p.bn_fold >= -1);
    CHECK(p.bn_fold <= 4);
    CHECK(p.text_sha256.size() == 64);
    CHECK(!p.summary().empty());
    // Every non-academic profile folds BN (MQBench); academic does not.
    CHECK((p.name == "academic") == (p.bn_fold == -1));
  }
}

TEST_CASE("shipped profiles encode the hardware facts", "[profiles]") {
  auto all = profiles::load_profiles({profiles::builtin_profiles_dir()}, kObservers);
  const auto& ac = find(all, "academic");
  CHECK(ac.weight.granularity == "per-tensor");
  CHECK(ac.weight.symmetric);
  CHECK(ac.activation.signedness == "auto");
  CHECK(ac.placement == std::vector<std::string>{"conv_linear_inputs"});
  CHECK(ac.first_last == "8bit");
  CHECK(ac.engine == "none");

  const auto& trt = find(all, "tensorrt");
  CHECK(trt.weight.granularity == "per-channel");
  CHECK(trt.weight.axis == 0);
  CHECK(trt.weight.symmetric);
  CHECK(trt.weight.narrow_range);
  CHECK(trt.activation.granularity == "per-tensor");
  CHECK(trt.activation.symmetric);
  CHECK(trt.activation.narrow_range);
  CHECK(trt.places("add_inputs"));

  const auto& x86 = find(all, "x86-onednn");
  CHECK(x86.engine == "onednn");
  CHECK(x86.weight.granularity == "per-channel");
  CHECK(x86.weight.symmetric);
  CHECK(x86.weight.signedness == "signed");
  CHECK(!x86.activation.symmetric);
  CHECK(x86.activation.signedness == "unsigned");

  const auto& qn = find(all, "qnnpack");
  CHECK(qn.engine == "qnnpack");
  CHECK(qn.weight.narrow_range);
  CHECK(qn.activation.signedness == "unsigned");
  CHECK(!qn.activation.symmetric);

  const auto& vi = find(all, "vitis");
  CHECK(vi.weight.pot_scale);
  CHECK(vi.activation.pot_scale);
  CHECK(vi.weight.pot_max_frac_bits == 12);
  CHECK(vi.places("graph_input"));

  const auto& ov = find(all, "openvino");
  CHECK(ov.weight.max_bits == 7);
  CHECK(ov.weight.granularity == "per-channel");
  CHECK(ov.activation.signedness == "auto");

  const auto& nn = find(all, "nnie");
  CHECK(nn.weight.quantizer == "log");
  CHECK(!nn.not_implemented.empty());
  for (const auto& p : all)
    if (p.name != "nnie") CHECK(p.not_implemented.empty());

  for (const char* n : {"snpe", "tvm", "tengine"}) {
    INFO(n);
    CHECK(!find(all, n).weight.symmetric);
    CHECK(!find(all, n).activation.symmetric);
  }
  CHECK(find(all, "acl").weight.symmetric);
  CHECK(!find(all, "acl").activation.symmetric);
  // Placements parsed but not attached yet are recorded (and shown by `qbench list profiles`).
  CHECK(std::find(trt.unimplemented_placements.begin(), trt.unimplemented_placements.end(), "pool_inputs") !=
        trt.unimplemented_placements.end());
  CHECK(trt.summary().find("not attached yet: pool_inputs") != std::string::npos);
}

TEST_CASE("a valid profile text parses with defaults filled in", "[profiles]") {
  auto p = profiles::parse_profile(kGood, "mine.yaml", kObservers);
  CHECK(p.name == "mine");
  CHECK(p.weight.bits == std::vector<int>{2, 3, 4, 5, 6, 7, 8});
  CHECK(p.weight.max_bits == 8);
  CHECK(p.weight.observer == "minmax");
  CHECK(p.weight.fake_quant == "fixed");
  CHECK(p.activation.signedness == "unsigned");
  CHECK(p.first_last == "cell");
  CHECK(p.bn_fold == 4);
  CHECK(p.unimplemented_placements.empty());
}

TEST_CASE("the canonical form changes with what a cell computes, not with comments or key order", "[profiles]") {
  auto a = profiles::parse_profile(kGood, "mine.yaml", kObservers);
  auto b = profiles::parse_profile(
      "# a comment\n" + replace(replace(kGood, "description: a test profile", "description: other words"),
                                "bn_fold: 4\nfirst_last: cell", "first_last: cell\nbn_fold: 4"),
      "mine.yaml", kObservers);
  CHECK(a.text_sha256 != b.text_sha256);
  CHECK(a.canonical() == b.canonical());
  CHECK(a.canonical_sha256() == b.canonical_sha256());
  CHECK(a.canonical_sha256().size() == 64);
  auto c = profiles::parse_profile(replace(kGood, "narrow_range: true", "narrow_range: false"), "mine.yaml", kObservers);
  CHECK(c.canonical_sha256() != a.canonical_sha256());
  auto d = profiles::parse_profile(replace(kGood, "add_outputs]", "add_outputs, add_inputs]"), "mine.yaml", kObservers);
  CHECK(d.canonical_sha256() != a.canonical_sha256());
}

TEST_CASE("profile errors name file, line, column and key", "[profiles]") {
  // unknown key with a suggestion
  CHECK(error_of(replace(kGood, "bn_fold: 4", "bn_fodl: 4")) ==
        "mine.yaml:7:1: bn_fodl: unknown key (did you mean: bn_fold?)");
  // alias that edit distance cannot catch
  CHECK(error_of(replace(kGood, "narrow_range: true", "narrow: true")).find(
            "mine.yaml:4:73: weight.narrow: unknown key (did you mean: narrow_range?)") == 0);
  // bad enum value with did-you-mean
  CHECK(error_of(replace(kGood, "per-channel", "per-chanel")) ==
        "mine.yaml:4:23: weight.granularity: unknown granularity 'per-chanel' (did you mean: per-channel?)");
  CHECK(error_of(replace(kGood, "engine: none", "engine: onedn")) ==
        "mine.yaml:9:9: engine: unknown integer engine 'onedn' (did you mean: onednn?)");
  CHECK(error_of(replace(kGood, "add_outputs]", "add_output]")) ==
        "mine.yaml:6:33: placement[1]: unknown placement 'add_output' (did you mean: add_outputs, act_outputs?)");
  // wrong type
  CHECK(error_of(replace(kGood, "symmetric: false", "symmetric: maybe")) ==
        "mine.yaml:5:50: activation.symmetric: expected true or false, got 'maybe'");
  CHECK(error_of(replace(kGood, "bn_fold: 4", "bn_fold: 5")) == "mine.yaml:7:10: bn_fold: expected an integer -1..4, got 5");
  CHECK(error_of(replace(kGood, "placement: [conv_linear_inputs, add_outputs]", "placement: conv_linear_inputs")) ==
        "mine.yaml:6:12: placement: expected a list of placements such as [conv_linear_inputs, add_outputs], got "
        "'conv_linear_inputs'");
  // missing required key: reported at the map
  CHECK(error_of(replace(kGood, "source: the test\n", "")) == "mine.yaml:1:1: missing required key 'source' (where the facts come from)");
  CHECK(error_of(replace(kGood, "signedness: unsigned", "narrow_range: false")) ==
        "mine.yaml:5:13: activation: missing required key 'signedness' (signed, unsigned or auto)");
  // unknown observer from the registry's names
  CHECK(error_of(replace(kGood, "signedness: unsigned}", "signedness: unsigned, observer: minmx}")) ==
        "mine.yaml:5:89: activation.observer: unknown observer 'minmx' (did you mean: minmax?)");
  // YAML syntax error
  CHECK(error_of("name: [a\n").find("mine.yaml:2:1: YAML syntax error") == 0);
  // the name must match the file name
  try {
    profiles::parse_profile(kGood, "/tmp/other.yaml", kObservers);
    FAIL("accepted a name that differs from the file name");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "/tmp/other.yaml:1:7: name: the profile name 'mine' differs from the file name 'other.yaml' (name the "
          "file mine.yaml)");
  }
}

TEST_CASE("schemes the quantizer library cannot run are rejected or marked, never approximated", "[profiles]") {
  // PoT needs symmetric
  CHECK(error_of(replace(kGood, "signedness: unsigned}", "signedness: unsigned, pot_scale: true}")) ==
        "mine.yaml:5:90: activation.pot_scale: power-of-two scales with asymmetric quantization are not implemented "
        "(use symmetric: true)");
  CHECK(error_of(replace(kGood, "activation: {granularity: per-tensor", "activation: {granularity: per-channel"))
            .find("activation.granularity: per-channel activation quantization is not implemented") != std::string::npos);
  CHECK(error_of(replace(kGood, "signedness: unsigned}", "signedness: unsigned, narrow_range: true}"))
            .find("narrow_range needs a signed range") != std::string::npos);
  // log domain: the file is valid, the profile is marked not runnable
  auto p = profiles::parse_profile(replace(kGood, "weight: {granularity: per-channel, symmetric: true, signedness: "
                                                  "signed, narrow_range: true}",
                                           "weight: {quantizer: log}"),
                                   "mine.yaml", kObservers);
  REQUIRE(p.not_implemented.size() == 1);
  CHECK(p.not_implemented[0].find("not implemented") != std::string::npos);
  CHECK(p.summary().find("NOT RUNNABLE") != std::string::npos);
}

TEST_CASE("a user profile directory on QBENCH_PROFILES_DIR is picked up without recompiling", "[profiles]") {
  const fs::path dir = fs::path(QBENCH_TEST_TMP) / "user_profiles";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "mine.yaml") << kGood;
  std::ofstream(dir / "README.txt") << "not a profile";
  ::setenv("QBENCH_PROFILES_DIR", dir.c_str(), 1);
  auto path = profiles::profile_search_path();
  REQUIRE(path.size() == 2);
  CHECK(path[0] == dir.string());
  CHECK(path[1] == profiles::builtin_profiles_dir());
  auto all = profiles::load_default_profiles(kObservers);
  CHECK(all.front().name == "academic");
  CHECK(find(all, "mine").file == (dir / "mine.yaml").string());
  CHECK(all.size() == profiles::load_profiles({profiles::builtin_profiles_dir()}, kObservers).size() + 1);

  // A user file may not silently shadow a shipped profile: the name is part of every result row.
  std::ofstream(dir / "tensorrt.yaml") << replace(kGood, "name: mine", "name: tensorrt");
  try {
    profiles::load_default_profiles(kObservers);
    FAIL("a duplicate profile name was accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()).find("profile 'tensorrt' is already defined by") != std::string::npos);
  }
  fs::remove(dir / "tensorrt.yaml");
  // A bad user file fails the whole load, naming the file.
  std::ofstream(dir / "bad.yaml") << replace(replace(kGood, "name: mine", "name: bad"), "bn_fold: 4", "bn_fold: x");
  try {
    profiles::load_default_profiles(kObservers);
    FAIL("a bad profile file was accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == (dir / "bad.yaml").string() + ":7:10: bn_fold: expected an integer -1..4, got 'x'");
  }
  ::setenv("QBENCH_PROFILES_DIR", (dir / "missing").c_str(), 1);
  CHECK_THROWS_WITH(profiles::load_default_profiles(kObservers), Catch::Contains("does not exist"));
  ::unsetenv("QBENCH_PROFILES_DIR");
  CHECK(profiles::profile_search_path() == std::vector<std::string>{profiles::builtin_profiles_dir()});
}

TEST_CASE("a roofline block parses, joins the canonical form and models a layer's time", "[profiles][roofline]") {
  const std::string with = std::string(kGood) +
                           "roofline: {device: Test NPU, peak_int8_tops: 2, mem_bandwidth_gbs: 10, source: datasheet}\n";
  auto a = profiles::parse_profile(kGood, "mine.yaml", kObservers);
  auto b = profiles::parse_profile(with, "mine.yaml", kObservers);
  CHECK_FALSE(a.roofline.declared());
  REQUIRE(b.roofline.declared());
  CHECK(b.roofline.device == "Test NPU");
  CHECK(a.canonical_sha256() != b.canonical_sha256());
  CHECK(b.summary().find("Test NPU") != std::string::npos);

  // Compute-bound: 1e9 MACs x 4 images = 8e9 ops at 2e12 ops/s = 4 ms; bytes: 1e6 weights at
  // 8 bits + (1e5 + 1e5) activations x 4 images at 8 bits = 1.8e6 B at 1e10 B/s = 0.18 ms.
  profiles::LayerCost big{"conv", 1000000000, 1000000, 100000, 100000};
  CHECK(profiles::roofline_layer_ms(b.roofline, big, 4, 8, 8) == Approx(4.0));
  // Memory-bound: 1e6 MACs (8e6 ops = 0.004 ms) but 4e7 weights at 4 bits = 2e7 B, plus
  // (10 + 10) x 4 activation bytes = 80 B: 2.000008e7 B at 1e10 B/s = 2.000008 ms.
  profiles::LayerCost wide{"fc", 1000000, 40000000, 10, 10};
  CHECK(profiles::roofline_layer_ms(b.roofline, wide, 4, 4, 8) == Approx(2.000008).epsilon(1e-9));
  CHECK(profiles::roofline_ms(b.roofline, {big, wide}, 4, 8, 8) ==
        Approx(profiles::roofline_layer_ms(b.roofline, big, 4, 8, 8) + profiles::roofline_layer_ms(b.roofline, wide, 4, 8, 8)));
  CHECK_THROWS_AS(profiles::roofline_layer_ms(a.roofline, big, 1, 8, 8), qbench::Error);

  CHECK(error_of(std::string(kGood) + "roofline: {device: x, peak_int8_tops: 0, mem_bandwidth_gbs: 1, source: s}\n")
            .find("roofline.peak_int8_tops") != std::string::npos);
  CHECK(error_of(std::string(kGood) + "roofline: {device: x, peak_int8_tops: 1, mem_bandwidth_gbs: 1}\n")
            .find("source") != std::string::npos);
}

TEST_CASE("shipped roofline figures are the datasheets'", "[profiles][roofline]") {
  auto all = profiles::load_profiles({profiles::builtin_profiles_dir()}, kObservers);
  CHECK(find(all, "tensorrt").roofline.peak_int8_tops == 130);
  CHECK(find(all, "tensorrt").roofline.mem_bandwidth_gbs == 320);
  CHECK(find(all, "vitis").roofline.peak_int8_tops == Approx(3 * 4096 * 0.281e9 / 1e12).epsilon(0.01));
  CHECK_FALSE(find(all, "academic").roofline.declared());  // no hardware: nothing to model
  CHECK_FALSE(find(all, "x86-onednn").roofline.declared());  // measured on its engine instead
}
