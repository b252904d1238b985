// The bn_fold axis (MQBench's BN folding ablation) and the PTQ sub-recipes (reconstruction,
// calibration source): parsing, errors naming file:line:col, and what joins a cell's key.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"


using namespace qbench::config;

namespace {

std::string head(const std::string& axes_extra) {
  return "name: t\ndataset: fashion-mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n  arch: [resnet8]\n"
         "  profile: [academic, tensorrt]\n" +
         axes_extra;
}

std::vector<Cell> cells(const std::string& text) {
  auto cat = qbench::config::test::fake_catalog();
  return expand_cells(parse_matrix(text, "m.yaml", cat), cat);
}

std::string error_of(const std::string& text) {
  return qbench::config::test::config_error([&] { cells(text); });
}

}  // namespace

TEST_CASE("without a bn_fold axis each cell folds as its profile says", "[config][bn_fold]") {
  auto cs = cells(head(""));
  REQUIRE(cs.size() == 3);  // baseline, academic, tensorrt
  CHECK(cs[1].profile == "academic");
  CHECK(cs[1].bn_fold == -1);
  CHECK(cs[2].profile == "tensorrt");
  CHECK(cs[2].bn_fold == 4);
  CHECK_FALSE(cs[2].bn_fold_from_matrix);
  CHECK(cs[2].resolved.at("bn_fold") == 4);
  CHECK_FALSE(cs[2].resolved.contains("bn_fold_from"));
  CHECK_FALSE(cs[0].resolved.contains("bn_fold"));  // the FP32 baseline folds nothing
}

TEST_CASE("the bn_fold axis crosses quantized cells and dedups the profile's own strategy", "[config][bn_fold]") {
  // tensorrt's own strategy is 4: "profile" and 4 are the same cell there; academic gets -1 and 4.
  auto cs = cells(head("  bn_fold: [profile, 4, 0]\n"));
  std::set<std::string> seen;
  for (const auto& c : cs)
    if (c.kind != CellKind::Fp32) seen.insert(c.profile + ":" + std::to_string(c.bn_fold) + (c.bn_fold_from_matrix ? "m" : ""));
  CHECK(seen == std::set<std::string>{"academic:-1", "academic:4m", "academic:0m", "tensorrt:4", "tensorrt:0m"});
  std::set<std::string> keys;
  for (const auto& c : cs) keys.insert(c.key);
  CHECK(keys.size() == cs.size());
}

TEST_CASE("bn_fold values are checked and usable in exclude", "[config][bn_fold][errors]") {
  CHECK(error_of(head("  bn_fold: [5]\n")) ==
        "m.yaml:8:13: matrix.bn_fold[0]: expected a BN folding strategy -1..4 (MQBench's ids) or 'profile', got '5'");
  auto cs = cells(head("  bn_fold: [profile, 0]\n  exclude: [{profile: academic, bn_fold: 0}]\n"));
  for (const auto& c : cs) CHECK_FALSE((c.profile == "academic" && c.bn_fold == 0));
  CHECK(cs.size() == 4);  // baseline, academic:-1, tensorrt:4, tensorrt:0
}

TEST_CASE("reconstruction settings join only reconstructing cells, and the calibration source only when synthetic",
          "[config][ptq]") {
  const std::string text =
      "name: t\ndataset: fashion-mnist\nmatrix:\n  algorithm: [minmax, brecq]\n  bits: [w4a4]\n  arch: [resnet8]\n"
      "pipeline:\n  ptq:\n    reconstruction: {iters: 500, lambda: 0.1, drop_prob: 0.25}\n";
  auto cat = qbench::config::test::fake_catalog();
  Matrix m = parse_matrix(text, "m.yaml", cat);
  const auto& rc = m.settings.at("ptq.reconstruction");
  CHECK(rc.at("iters") == 500);
  CHECK(rc.at("lambda").get<double>() == Approx(0.1));
  CHECK(rc.at("batch_size") == 32);  // the declared default kept
  CHECK(rc.at("cache_mb") == 1024);  // resolved, though it stays out of the key
  auto cs = expand_cells(m, cat);
  REQUIRE(cs.size() == 3);
  CHECK_FALSE(cs[1].resolved.at("ptq").contains("reconstruction"));  // minmax
  CHECK(cs[2].resolved.at("ptq").at("reconstruction").at("iters") == 500);
  CHECK(cs[2].resolved.at("ptq").at("reconstruction").at("drop_prob") == Approx(0.25));
  CHECK_FALSE(cs[2].resolved.at("ptq").at("reconstruction").contains("cache_mb"));
  // The types are the declared ones: an integer option stays an integer even when written 500.0
  // would not parse, and a number written as an integer is a float in the key's JSON.
  CHECK(cs[2].resolved.at("ptq").at("reconstruction").at("iters").is_number_integer());
  CHECK(cs[2].resolved.at("ptq").at("reconstruction").at("lambda").is_number_float());
  CHECK_FALSE(cs[2].resolved.at("ptq").contains("calibration"));

  // A synthetic calibration source changes every PTQ cell's key.
  auto cs2 = cells(text + "    calibration: {source: dsg, iters: 50}\n");
  CHECK(cs2[1].resolved.at("ptq").at("calibration").at("source") == "dsg");
  CHECK(cs2[1].resolved.at("ptq").at("calibration").at("iters") == 50);
  CHECK(cs2[1].key != cs[1].key);
  CHECK(cs2[0].key == cs[0].key);  // the baseline does not calibrate
}

TEST_CASE("PTQ sub-recipe errors name the key", "[config][ptq][errors]") {
  const std::string base =
      "name: t\ndataset: fashion-mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w4a4]\n  arch: [resnet8]\n"
      "pipeline:\n  ptq:\n";
  CHECK(error_of(base + "    calibration: {source: gan}\n") ==
        "m.yaml:9:27: pipeline.ptq.calibration.source: unknown calibration source 'gan' (known: data, zeroq, dsg)");
  CHECK(error_of(base + "    reconstruction: {drop_prob: 1.5}\n").find("pipeline.ptq.reconstruction.drop_prob") !=
        std::string::npos);
  CHECK(error_of(base + "    reconstruction: {iterations: 5}\n").find("pipeline.ptq.reconstruction") !=
        std::string::npos);
  CHECK(error_of(base + "    reconstruction: {iters: 0}\n") ==
        "m.yaml:9:29: pipeline.ptq.reconstruction.iters: expected an integer >= 1, got 0");
  CHECK(error_of(base + "    reconstruction: {iters: 2.5}\n").find("pipeline.ptq.reconstruction.iters: expected an integer") !=
        std::string::npos);
  CHECK(error_of(base + "    reconstruction: {mode: blok}\n") ==
        "m.yaml:9:28: pipeline.ptq.reconstruction.mode: unknown mode 'blok' (did you mean: block?)");
  CHECK(error_of(base + "    bias_correction: {images: 5}\n").find("pipeline.ptq.bias_correction: unknown key") !=
        std::string::npos);  // no algorithm of this catalog declares that section
}
