// Parsing and validation of matrix files: values, defaults, and the exact position and key path of
// every class of error.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"
#include "test_util.h"

using namespace qbench::config;
using qbench::config::test::error_of;
using qbench::config::test::fake_catalog;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const std::filesystem::path kFixtures = std::filesystem::path(QBENCH_TEST_SOURCE_DIR) / "fixtures/config";


// Lines 1-3 of most test files; the matrix section follows on line 4.
const std::string kHead = "name: t\ndataset: fashion-mnist\nmatrix:\n";
const std::string kAxes = "  algorithm: [minmax]\n  bits: [w8a8, w4a4]\n  arch: [resnet20]\n";

/// kHead + a pipeline section (from line 4) + the axes.
std::string with_pipeline(const std::string& pipeline) {
  return "name: t\ndataset: fashion-mnist\npipeline:\n" + pipeline + "matrix:\n" + kAxes;
}

}  // namespace

TEST_CASE("a file that sets every key is read in full", "[config][parse]") {
  Matrix m = load_matrix_file((kFixtures / "full.yaml").string(), fake_catalog());
  CHECK(m.name == "full");
  CHECK(m.description == "every key set");
  CHECK(m.dataset.name == "mnist");
  CHECK(m.dataset.root == "/data/mnist");
  CHECK(m.dataset.train_subset == 5000);
  CHECK(m.dataset.test_subset == 1000);
  CHECK(m.threads == 4);
  CHECK(m.fp32.epochs == 5);
  CHECK(m.fp32.batch_size == 64);
  CHECK(m.fp32.lr == 0.05);
  CHECK(m.fp32.warmup_epochs == 1.0);
  CHECK(m.fp32.warmup_start_lr == 0.001);
  CHECK(m.fp32.momentum == 0.8);
  CHECK_FALSE(m.fp32.nesterov);
  CHECK(m.fp32.weight_decay == 0.0001);
  CHECK(m.fp32.label_smoothing == 0.0);
  CHECK_FALSE(m.fp32.augment);
  CHECK(m.ptq.calib_images == 512);
  CHECK(m.ptq.calib_batch_size == 128);
  CHECK(m.eval.batch_size == 250);
  CHECK_FALSE(m.latency.enabled);
  CHECK(m.latency.batch_size == 8);
  CHECK(m.latency.warmup == 2);
  CHECK(m.latency.repeats == 10);
  // Duplicates dropped, first occurrence kept, file order otherwise.
  CHECK(m.algorithms == std::vector<std::string>{"fp32", "minmax", "lsq"});
  CHECK(m.bits == std::vector<BitWidth>{{8, 8}, {4, 4}, {4, 8}, {32, 32}});
  CHECK(m.archs == std::vector<std::string>{"resnet20", "resnet8"});
  CHECK(m.profiles == std::vector<std::string>{"academic", "tensorrt"});
  CHECK(m.seeds == std::vector<uint64_t>{0, 1});
  REQUIRE(m.exclude.size() == 1);
  CHECK(m.exclude[0] == AxisAssignment{{"arch", "resnet8"}, {"bits", "w4a4"}});
  REQUIRE(m.include.size() == 1);
  CHECK(m.include[0] == AxisAssignment{{"algorithm", "minmax"},
                                       {"arch", "resnet8"},
                                       {"bits", "w2a4"},
                                       {"profile", "academic"},
                                       {"seed", "1"}});
  REQUIRE(m.include_marks.size() == 1);
  CHECK(m.include_marks[0].line == 41);
  CHECK(m.include_marks[0].column == 7);
}

TEST_CASE("the file's bytes, their hash and the path are kept", "[config][parse]") {
  auto path = (kFixtures / "full.yaml").string();
  Matrix m = load_matrix_file(path, fake_catalog());
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(m.file == path);
  CHECK(m.yaml_text == bytes);
  CHECK(m.yaml_hash == qbench::sha256_hex(bytes));
  CHECK(m.yaml_hash.size() == 64);
}

TEST_CASE("a minimal file takes every default", "[config][parse]") {
  Matrix m = load_matrix_file((kFixtures / "quickstart.yaml").string(), fake_catalog());
  const TrainRecipe r;
  CHECK(m.name == "quickstart");
  CHECK(m.description.empty());
  CHECK(m.dataset.name == "fashion-mnist");
  CHECK(m.dataset.root.empty());
  CHECK(m.dataset.train_subset == 0);
  CHECK(m.dataset.test_subset == 0);
  CHECK(m.threads == 2);
  CHECK(m.fp32.epochs == r.epochs);
  CHECK(m.fp32.batch_size == r.batch_size);
  CHECK(m.fp32.lr == r.lr);
  CHECK(m.fp32.warmup_epochs == r.warmup_epochs);
  CHECK(m.fp32.warmup_start_lr == r.warmup_start_lr);
  CHECK(m.fp32.momentum == r.momentum);
  CHECK(m.fp32.nesterov == r.nesterov);
  CHECK(m.fp32.weight_decay == r.weight_decay);
  CHECK(m.fp32.label_smoothing == r.label_smoothing);
  CHECK(m.fp32.augment == r.augment);
  CHECK(m.ptq.calib_images == PtqRecipe{}.calib_images);
  CHECK(m.ptq.calib_batch_size == PtqRecipe{}.calib_batch_size);
  CHECK(m.eval.batch_size == EvalRecipe{}.batch_size);
  CHECK(m.latency.enabled == LatencyRecipe{}.enabled);
  CHECK(m.latency.batch_size == LatencyRecipe{}.batch_size);
  CHECK(m.latency.warmup == LatencyRecipe{}.warmup);
  CHECK(m.latency.repeats == LatencyRecipe{}.repeats);
  // A scalar where a list is allowed is a one-value axis.
  CHECK(m.algorithms == std::vector<std::string>{"minmax"});
  CHECK(m.bits == std::vector<BitWidth>{{8, 8}});
  CHECK(m.archs == std::vector<std::string>{"resnet20"});
  CHECK(m.profiles == std::vector<std::string>{"academic"});
  CHECK(m.seeds == std::vector<uint64_t>{0});
  CHECK(m.exclude.empty());
  CHECK(m.include.empty());
}

TEST_CASE("an empty pipeline section and empty exclude/include mean defaults", "[config][parse]") {
  Matrix m = parse_matrix(kHead + kAxes + "  exclude:\n  include:\n", "m.yaml", fake_catalog());
  CHECK(m.exclude.empty());
  Matrix p = parse_matrix("name: t\ndataset: mnist\npipeline:\nmatrix:\n" + kAxes, "m.yaml", fake_catalog());
  CHECK(p.fp32.epochs == TrainRecipe{}.epochs);
}

TEST_CASE("axis values are deduplicated in file order", "[config][parse]") {
  Matrix m = parse_matrix(kHead +
                              "  algorithm: [lsq, minmax, lsq]\n"
                              "  bits: [w4a4, {w: 8, a: 8}, w8a8, W4A4]\n"
                              "  arch: [resnet8, resnet20, resnet8]\n"
                              "  profile: [tensorrt, academic, tensorrt]\n"
                              "  seed: [3, 0, 3, 1]\n",
                          "m.yaml", fake_catalog());
  CHECK(m.algorithms == std::vector<std::string>{"lsq", "minmax"});
  CHECK(m.bits == std::vector<BitWidth>{{4, 4}, {8, 8}});
  CHECK(m.archs == std::vector<std::string>{"resnet8", "resnet20"});
  CHECK(m.profiles == std::vector<std::string>{"tensorrt", "academic"});
  CHECK(m.seeds == std::vector<uint64_t>{3, 0, 1});
}

TEST_CASE("bits may be omitted only when the algorithm axis is only fp32", "[config][parse]") {
  Matrix m = parse_matrix(kHead + "  algorithm: fp32\n  arch: [resnet20, resnet8]\n", "m.yaml", fake_catalog());
  CHECK(m.bits.empty());
  CHECK(error_of(kHead + "  algorithm: [fp32, minmax]\n  arch: resnet20\n") ==
        "m.yaml:4:3: matrix: missing required key 'bits' (required unless algorithm is only fp32)");
}

TEST_CASE("unknown keys fail with their position and a suggestion", "[config][errors]") {
  CHECK(error_of("name: t\ndatset: mnist\nmatrix:\n" + kAxes) == "m.yaml:2:1: datset: unknown key (did you mean: dataset?)");
  CHECK(error_of(with_pipeline("  fp32:\n    learning_rate: 0.1\n")) ==
        "m.yaml:5:5: pipeline.fp32.learning_rate: unknown key (did you mean: lr?)");
  CHECK(error_of(with_pipeline("  fp32:\n    batch_sise: 64\n")) ==
        "m.yaml:5:5: pipeline.fp32.batch_sise: unknown key (did you mean: batch_size?)");
  CHECK(error_of(with_pipeline("  latncy: {enabled: false}\n")) ==
        "m.yaml:4:3: pipeline.latncy: unknown key (did you mean: latency?)");
  CHECK(error_of(kHead + kAxes + "  seeds: [1, 2]\n") == "m.yaml:7:3: matrix.seeds: unknown key (did you mean: seed?)");
  CHECK(error_of(kHead + kAxes + "  exclude:\n    - {arch: resnet20, bit: w4a4}\n") ==
        "m.yaml:8:24: matrix.exclude[0].bit: unknown key (did you mean: bits?)");
  // Nothing close: the allowed keys are listed instead.
  CHECK_THAT(error_of(kHead + kAxes + "  zzzzzzzzzz: 1\n"),
             StartsWith("m.yaml:7:3: matrix.zzzzzzzzzz: unknown key (known: algorithm, bits, arch,"));
  CHECK_THAT(error_of(kHead + kAxes + "name: again\n"), StartsWith("m.yaml:7:1: name: duplicate key"));
}

TEST_CASE("values of the wrong type or out of range name what was expected and found", "[config][errors]") {
  CHECK(error_of(with_pipeline("  fp32:\n    epochs: three\n")) ==
        "m.yaml:5:13: pipeline.fp32.epochs: expected an integer >= 1, got 'three'");
  CHECK(error_of(with_pipeline("  fp32:\n    epochs: \"3\"\n")) ==
        "m.yaml:5:13: pipeline.fp32.epochs: expected an integer >= 1, got the string \"3\"");
  CHECK(error_of(with_pipeline("  fp32: {epochs: 0}\n")) ==
        "m.yaml:4:18: pipeline.fp32.epochs: expected an integer >= 1, got 0");
  CHECK(error_of(with_pipeline("  fp32: {epochs: 2.5}\n")) ==
        "m.yaml:4:18: pipeline.fp32.epochs: expected an integer >= 1, got '2.5'");
  CHECK(error_of(with_pipeline("  fp32: {lr: 0}\n")) == "m.yaml:4:14: pipeline.fp32.lr: expected a number > 0, got 0");
  CHECK(error_of(with_pipeline("  fp32: {lr: -0.1}\n")) ==
        "m.yaml:4:14: pipeline.fp32.lr: expected a number > 0, got -0.1");
  CHECK(error_of(with_pipeline("  fp32: {lr: fast}\n")) ==
        "m.yaml:4:14: pipeline.fp32.lr: expected a number > 0, got 'fast'");
  CHECK(error_of(with_pipeline("  fp32: {label_smoothing: 1}\n")) ==
        "m.yaml:4:27: pipeline.fp32.label_smoothing: expected a number in [0, 1), got 1");
  CHECK(error_of(with_pipeline("  fp32: {nesterov: maybe}\n")) ==
        "m.yaml:4:20: pipeline.fp32.nesterov: expected true or false, got 'maybe'");
  CHECK(error_of(with_pipeline("  fp32: {batch_size: [64]}\n")) ==
        "m.yaml:4:22: pipeline.fp32.batch_size: expected an integer >= 1, got a list");
  CHECK(error_of(with_pipeline("  fp32: {epochs: 2, warmup_epochs: 2}\n")) ==
        "m.yaml:4:36: pipeline.fp32.warmup_epochs: warmup_epochs (2) must be less than epochs (2)");
  CHECK(error_of(with_pipeline("  fp32: {epochs: 3000000000}\n")) ==
        "m.yaml:4:18: pipeline.fp32.epochs: expected an integer >= 1, got 3000000000 (too large)");
  CHECK(error_of(with_pipeline("  ptq: {calib_images: 99999999999999999999}\n")) ==
        "m.yaml:4:23: pipeline.ptq.calib_images: expected an integer >= 1, got 99999999999999999999 (too large)");
  CHECK(error_of(with_pipeline("  fp32: {epochs: -}\n")) ==
        "m.yaml:4:18: pipeline.fp32.epochs: expected an integer >= 1, got '-'");
  CHECK(error_of(with_pipeline("  fp32: {lr: .inf}\n")) == "m.yaml:4:14: pipeline.fp32.lr: expected a number > 0, got '.inf'");
  CHECK(error_of(kHead + kAxes + "  seed: 99999999999999999999\n") ==
        "m.yaml:7:9: matrix.seed: expected an integer >= 0, got '99999999999999999999'");
  CHECK(error_of(with_pipeline("  threads: 0\n")) == "m.yaml:4:12: pipeline.threads: expected an integer 1..256, got 0");
  CHECK(error_of(with_pipeline("  threads: 300\n")) ==
        "m.yaml:4:12: pipeline.threads: expected an integer 1..256, got 300");
  CHECK(error_of(with_pipeline("  ptq: {calib_images: 0}\n")) ==
        "m.yaml:4:23: pipeline.ptq.calib_images: expected an integer >= 1, got 0");
  CHECK(error_of(with_pipeline("  eval: {batch_size: 0}\n")) ==
        "m.yaml:4:22: pipeline.eval.batch_size: expected an integer >= 1, got 0");
  CHECK(error_of(with_pipeline("  latency: {repeats: 0}\n")) ==
        "m.yaml:4:22: pipeline.latency.repeats: expected an integer >= 1, got 0");
  CHECK(error_of(with_pipeline("  latency: {enabled: 1}\n")) ==
        "m.yaml:4:22: pipeline.latency.enabled: expected true or false, got '1'");
  CHECK(error_of(with_pipeline("  fp32: 5\n")) == "m.yaml:4:9: pipeline.fp32: expected a map, got '5'");
  CHECK(error_of("name: t\ndataset: {name: mnist, train_subset: -1}\nmatrix:\n" + kAxes) ==
        "m.yaml:2:38: dataset.train_subset: expected an integer >= 0, got -1");
  CHECK(error_of(kHead + kAxes + "  seed: [0, -1]\n") == "m.yaml:7:13: matrix.seed[1]: expected an integer >= 0, got -1");
  CHECK(error_of(kHead + kAxes + "  seed: []\n") == "m.yaml:7:9: matrix.seed: expected at least one value, got an empty list");
  CHECK(error_of("name: [a]\ndataset: mnist\nmatrix:\n" + kAxes) == "m.yaml:1:7: name: expected a string, got a list");
  CHECK(error_of("- a\n- b\n") ==
        "m.yaml:1:1: expected a map with name, dataset, pipeline and matrix at the top level, got a list");
}

TEST_CASE("bit widths outside 2..8 or 32 are rejected with the key path of the width", "[config][errors][bits]") {
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [w8a8, w4a4, {w: 16, a: 8}]\n  arch: resnet20\n") ==
        "m.yaml:5:26: matrix.bits[2].w: expected a bit width 2..8 or 32, got 16");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [{w: 4, a: 1}]\n  arch: resnet20\n") ==
        "m.yaml:5:20: matrix.bits[0].a: expected a bit width 2..8 or 32, got 1");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [w8a8, w1a8]\n  arch: resnet20\n") ==
        "m.yaml:5:16: matrix.bits[1]: expected a bit width 2..8 or 32, got 1 (in 'w1a8')");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [w9a4]\n  arch: resnet20\n") ==
        "m.yaml:5:10: matrix.bits[0]: expected a bit width 2..8 or 32, got 9 (in 'w9a4')");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [{w: 4}]\n  arch: resnet20\n") ==
        "m.yaml:5:10: matrix.bits[0]: missing required key 'a'");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [{w: 4, a: 4, b: 2}]\n  arch: resnet20\n") ==
        "m.yaml:5:23: matrix.bits[0].b: unknown key (did you mean: w, a?)");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: [int8]\n  arch: resnet20\n") ==
        "m.yaml:5:10: matrix.bits[0]: expected a bits label such as w4a8 or fp32, or a map {w: 4, a: 8}, got 'int8'");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: 16\n  arch: resnet20\n") ==
        "m.yaml:5:9: matrix.bits: expected a bits label such as w4a8 or fp32, or a map {w: 4, a: 8}, got '16'");
}

TEST_CASE("unknown and planned names fail with the closest candidates", "[config][errors][names]") {
  CHECK(error_of(kHead + "  algorithm: [minmx]\n  bits: w8a8\n  arch: resnet20\n") ==
        "m.yaml:4:15: matrix.algorithm[0]: unknown algorithm 'minmx' (did you mean: minmax?)");
  CHECK(error_of(kHead + "  algorithm: [minmax, adaround]\n  bits: w8a8\n  arch: resnet20\n") ==
        "m.yaml:4:23: matrix.algorithm[1]: algorithm 'adaround' is not implemented yet: planned");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: w8a8\n  arch: [resnet20, resnet2O]\n") ==
        "m.yaml:6:20: matrix.arch[1]: unknown arch 'resnet2O' (did you mean: resnet20, resnet8?)");
  CHECK(error_of("name: t\ndataset: fashion_mnist\nmatrix:\n" + kAxes) ==
        "m.yaml:2:10: dataset: unknown dataset 'fashion_mnist' (did you mean: fashion-mnist?)");
  CHECK(error_of("name: t\ndataset:\n  name: mnst\nmatrix:\n" + kAxes) ==
        "m.yaml:3:9: dataset.name: unknown dataset 'mnst' (did you mean: mnist?)");
  CHECK(error_of(kHead + kAxes + "  profile: [academic, tensorrrt]\n") ==
        "m.yaml:7:23: matrix.profile[1]: unknown profile 'tensorrrt' (did you mean: tensorrt?)");
  CHECK(error_of(kHead + kAxes + "  include:\n    - {algorithm: lsqq, arch: resnet20}\n") ==
        "m.yaml:8:19: matrix.include[0].algorithm: unknown algorithm 'lsqq' (did you mean: lsq?)");
}

TEST_CASE("missing required sections fail at the enclosing map", "[config][errors]") {
  CHECK(error_of("name: t\nmatrix:\n" + kAxes) == "m.yaml:1:1: missing required key 'dataset'");
  CHECK(error_of("name: t\ndataset: mnist\n") == "m.yaml:1:1: missing required key 'matrix'");
  CHECK(error_of("dataset: mnist\nmatrix:\n" + kAxes) == "m.yaml:1:1: missing required key 'name'");
  CHECK(error_of(kHead + "  algorithm: minmax\n  bits: w8a8\n") == "m.yaml:4:3: matrix: missing required key 'arch'");
  CHECK(error_of(kHead + "  bits: w8a8\n  arch: resnet8\n") == "m.yaml:4:3: matrix: missing required key 'algorithm'");
  CHECK(error_of("name: t\ndataset: {root: /x}\nmatrix:\n" + kAxes) == "m.yaml:2:10: dataset: missing required key 'name'");
  CHECK(error_of("name: t\ndataset: mnist\nmatrix:\n") == "m.yaml:3:1: matrix: expected a map of axes (algorithm, bits, arch, ...), got nothing (null)");
  CHECK(error_of(kHead + "  algorithm:\n  bits: w8a8\n  arch: resnet8\n") ==
        "m.yaml:4:3: matrix.algorithm: expected a value or a list of values, got nothing (null)");
  CHECK(error_of("") == "m.yaml: the file is empty (expected a map with name, dataset and matrix)");
}

TEST_CASE("YAML syntax errors become ConfigErrors with their position", "[config][errors]") {
  try {
    parse_matrix(kHead + "  algorithm: [minmax, lsq\n  bits: w8a8\n  arch: resnet20\n", "bad.yaml", fake_catalog());
    FAIL("no error");
  } catch (const qbench::ConfigError& e) {
    CHECK_THAT(std::string(e.what()), StartsWith("bad.yaml:5:"));
    CHECK_THAT(std::string(e.what()), Contains("YAML syntax error: "));
    CHECK(e.file() == "bad.yaml");
    CHECK(e.line() == 5);
    CHECK(e.column() > 0);
  }
  CHECK_THAT(error_of("name: t\n  bad: [\n"), StartsWith("m.yaml:2:"));
  CHECK_THAT(error_of(kHead + kAxes + "---\nname: second\n"),
             StartsWith("m.yaml:8:1: expected one YAML document, found 2"));
}

TEST_CASE("a missing matrix file is a ConfigError naming the file", "[config][errors]") {
  auto dir = qbench::test::scratch_dir("missing_file");
  auto path = (dir / "nope.yaml").string();
  try {
    load_matrix_file(path, fake_catalog());
    FAIL("no error");
  } catch (const qbench::ConfigError& e) {
    CHECK(std::string(e.what()) == path + ": matrix file not found");
    CHECK(e.file() == path);
  }
  CHECK_THROWS_AS(load_matrix_file(dir.string(), fake_catalog()), qbench::ConfigError);
}

TEST_CASE("exclude and include entries are validated like the axes", "[config][errors]") {
  CHECK(error_of(kHead + kAxes + "  exclude:\n    - {arch: resnet20, bits: w4a9}\n") ==
        "m.yaml:8:30: matrix.exclude[0].bits: expected a bit width 2..8 or 32, got 9 (in 'w4a9')");
  CHECK(error_of(kHead + kAxes + "  exclude:\n    - {}\n") ==
        "m.yaml:8:7: matrix.exclude[0]: expected at least one of algorithm, bits, arch, profile, seed, bn_fold, noise");
  CHECK(error_of(kHead + kAxes + "  exclude:\n    - resnet20\n") ==
        "m.yaml:8:7: matrix.exclude[0]: expected a map over algorithm, bits, arch, profile, seed, got 'resnet20'");
  CHECK(error_of(kHead + kAxes + "  exclude: {arch: resnet20}\n") ==
        "m.yaml:7:12: matrix.exclude: expected a list of maps such as [{arch: resnet20, bits: w2a2}], got a map");
  CHECK(error_of(kHead + kAxes + "  exclude:\n    - {algorithm: fp32}\n") ==
        "m.yaml:8:7: matrix.exclude[0]: the FP32 baseline cannot be excluded (every quantized cell of its arch "
        "and seed needs it)");
  CHECK(error_of(kHead + kAxes + "  include:\n    - {arch: resnet8, seed: x}\n") ==
        "m.yaml:8:29: matrix.include[0].seed: expected an integer >= 0, got 'x'");
}

TEST_CASE("an include that leaves a several-valued axis open is rejected while parsing", "[config][errors][include]") {
  const std::string yaml = kHead + kAxes +
                           "  seed: [0, 1]\n"
                           "  include:\n"
                           "    - {algorithm: minmax, bits: w4a8, arch: resnet20, seed: 1}\n"
                           "    - {algorithm: minmax, bits: w4a8, arch: resnet20}\n";
  CHECK(error_of(yaml) == "m.yaml:10:7: matrix.include[1]: missing key 'seed' (the axis has several values)");
  CHECK(error_of(kHead + kAxes + "  include:\n    - {algorithm: minmax, arch: resnet20}\n") ==
        "m.yaml:8:7: matrix.include[0]: missing key 'bits' (the axis has several values)");
  CHECK(error_of(kHead + kAxes + "  include:\n    - {algorithm: minmax, bits: fp32}\n") ==
        "m.yaml:8:7: matrix.include[0]: bits fp32 with algorithm 'minmax' is the FP32 baseline (write "
        "algorithm: fp32 to include it)");
}

TEST_CASE("parse_bits_label and BitWidth::label round-trip", "[config][bits]") {
  CHECK(parse_bits_label("w4a4") == BitWidth{4, 4});
  CHECK(parse_bits_label("w2a4") == BitWidth{2, 4});
  CHECK(parse_bits_label("w4a32") == BitWidth{4, 32});
  CHECK(parse_bits_label("W8A8") == BitWidth{8, 8});
  CHECK(parse_bits_label("fp32") == BitWidth{32, 32});
  CHECK(parse_bits_label("32") == BitWidth{32, 32});
  CHECK(parse_bits_label("w32a32").is_float());
  CHECK(BitWidth{4, 4}.label() == "w4a4");
  CHECK(BitWidth{8, 8}.label() == "w8a8");
  CHECK(BitWidth{2, 4}.label() == "w2a4");
  CHECK(BitWidth{4, 32}.label() == "w4a32");
  CHECK(BitWidth{32, 32}.label() == "fp32");
  CHECK(BitWidth{}.label() == "fp32");
  for (const char* s : {"w2a2", "w3a8", "w8a32", "w32a4"}) CHECK(parse_bits_label(s).label() == s);

  CHECK_THROWS_AS(parse_bits_label("w9a4"), qbench::ConfigError);
  CHECK_THROWS_WITH(parse_bits_label("w9a4"), "expected a bit width 2..8 or 32, got 9 (in 'w9a4')");
  CHECK_THROWS_WITH(parse_bits_label("w4a1"), "expected a bit width 2..8 or 32, got 1 (in 'w4a1')");
  CHECK_THROWS_AS(parse_bits_label("w16a16"), qbench::ConfigError);
  for (const char* s : {"", "w4", "a4", "w4a", "wa4", "int8", "w4a4x", "w-4a4", "fp16", "8"})
    CHECK_THROWS_AS(parse_bits_label(s), qbench::ConfigError);
}

TEST_CASE("Catalog::find_algorithm", "[config]") {
  Catalog c = fake_catalog();
  REQUIRE(c.find_algorithm("lsq") != nullptr);
  CHECK(c.find_algorithm("lsq")->kind == CellKind::Qat);
  CHECK(c.find_algorithm("minmax")->kind == CellKind::Ptq);
  CHECK(c.find_algorithm("fp32")->kind == CellKind::Fp32);
  CHECK(c.find_algorithm("adaround") == nullptr);  // planned, not implemented
  CHECK(c.find_algorithm("LSQ") == nullptr);
}

TEST_CASE("numbers and booleans are read in their YAML spellings", "[config][parse]") {
  Matrix m = parse_matrix(with_pipeline("  fp32: {lr: 1e-3, momentum: 0, weight_decay: 5.0E-4, epochs: +4, "
                                        "warmup_epochs: 0, nesterov: False, augment: TRUE}\n"),
                          "m.yaml", fake_catalog());
  CHECK(m.fp32.lr == 1e-3);
  CHECK(m.fp32.momentum == 0.0);
  CHECK(m.fp32.weight_decay == 5e-4);
  CHECK(m.fp32.epochs == 4);
  CHECK(m.fp32.warmup_epochs == 0.0);
  CHECK_FALSE(m.fp32.nesterov);
  CHECK(m.fp32.augment);
  Matrix n = parse_matrix(with_pipeline("  fp32: {lr: 2}\n"), "m.yaml", fake_catalog());
  CHECK(n.fp32.lr == 2.0);
}
