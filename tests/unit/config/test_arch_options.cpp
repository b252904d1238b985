// The `architectures:` map: width, stem and an imported weights file per architecture; their
// errors name file:line:col and key; they join the baseline key only when set.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"
#include "test_util.h"
#include "unit/config/config_util.h"


using namespace qbench::config;

namespace {

const std::string kHead = "name: t\ndataset: fashion-mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n  arch: [resnet20, resnet8]\n";

Matrix parse(const std::string& extra, const std::string& file = "m.yaml") {
  return parse_matrix(kHead + extra, file, qbench::config::test::fake_catalog());
}

std::string error_of(const std::string& extra) {
  return qbench::config::test::config_error([&] { parse(extra); });
}

}  // namespace

TEST_CASE("architectures: width and stem are read per arch", "[config][arch]") {
  Matrix m = parse("architectures:\n  resnet8: {width: 0.5, stem: small}\n");
  REQUIRE(m.arch_options.count("resnet8"));
  CHECK(m.arch_options["resnet8"].width == 0.5);
  CHECK(m.arch_options["resnet8"].stem == "small");
  CHECK_FALSE(m.arch_options.count("resnet20"));
}

TEST_CASE("architectures: options join the baseline key only when set", "[config][arch][keys]") {
  const auto cat = qbench::config::test::fake_catalog();
  Matrix plain = parse("");
  Matrix same = parse("architectures:\n  resnet8: {width: 1.0, stem: auto}\n");
  Matrix wide = parse("architectures:\n  resnet8: {width: 0.5}\n");
  CHECK(baseline_config(plain, "resnet8", 0) == baseline_config(same, "resnet8", 0));
  CHECK(baseline_config(plain, "resnet8", 0) != baseline_config(wide, "resnet8", 0));
  CHECK(baseline_config(plain, "resnet20", 0) == baseline_config(wide, "resnet20", 0));
  CHECK(baseline_config(wide, "resnet8", 0)["arch_options"]["width"] == 0.5);
  // Every cell of resnet8 moves with its baseline.
  auto a = expand_cells(plain, cat), b = expand_cells(wide, cat);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK((a[i].key == b[i].key) == (a[i].arch == "resnet20"));
}

TEST_CASE("architectures: a weights file is hashed into the key and replaces the recipe", "[config][arch][keys]") {
  const auto dir = qbench::test::scratch_dir("arch_weights");
  {
    std::ofstream(dir / "w.safetensors") << "first";
    std::ofstream(dir / "m.yaml") << "x";
  }
  const std::string file = (dir / "m.yaml").string();
  Matrix m = parse("architectures:\n  resnet8: {weights: w.safetensors}\n", file);
  CHECK(m.arch_options["resnet8"].weights == (dir / "w.safetensors").string());  // relative to the matrix
  CHECK(m.arch_options["resnet8"].weights_sha256 == qbench::sha256_hex("first"));
  auto j = baseline_config(m, "resnet8", 0);
  CHECK_FALSE(j.contains("fp32_recipe"));
  CHECK(j["arch_options"]["weights_sha256"] == qbench::sha256_hex("first"));
  { std::ofstream(dir / "w.safetensors") << "second"; }
  Matrix m2 = parse("architectures:\n  resnet8: {weights: w.safetensors}\n", file);
  CHECK(baseline_config(m2, "resnet8", 0) != j);  // new bytes, new key
}

TEST_CASE("architectures: an onnx file defines a new architecture, named by its key and keyed by its bytes",
          "[config][arch][keys][onnx]") {
  const auto dir = qbench::test::scratch_dir("arch_onnx");
  {
    std::ofstream(dir / "net.onnx") << "graph bytes";
    std::ofstream(dir / "m.yaml") << "x";
  }
  const std::string file = (dir / "m.yaml").string();
  const auto cat = qbench::config::test::fake_catalog();
  const std::string head =
      "name: t\ndataset: fashion-mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n  arch: [mynet, resnet8]\n";
  Matrix m = parse_matrix(head + "architectures:\n  mynet: {onnx: net.onnx}\n", file, cat);
  const ArchOptions& o = m.arch_options.at("mynet");
  CHECK(o.is_onnx());
  CHECK(o.onnx == (dir / "net.onnx").string());  // relative to the matrix
  CHECK(o.onnx_sha256 == qbench::sha256_hex("graph bytes"));
  CHECK_FALSE(o.train);
  CHECK(o.mark.line == 8);
  CHECK(m.archs == std::vector<std::string>{"mynet", "resnet8"});
  // The file's own weights: the baseline is the file's, with no training recipe in its key.
  auto j = baseline_config(m, "mynet", 0);
  CHECK_FALSE(j.contains("fp32_recipe"));
  CHECK(j["arch_options"] == nlohmann::json({{"onnx_sha256", qbench::sha256_hex("graph bytes")}, {"train", false}}));
  // train: true trains the structure with the recipe, which joins the key.
  Matrix t = parse_matrix(head + "architectures:\n  mynet: {onnx: net.onnx, train: true}\n", file, cat);
  auto jt = baseline_config(t, "mynet", 0);
  CHECK(jt.contains("fp32_recipe"));
  CHECK(jt["arch_options"]["train"] == true);
  CHECK(jt != j);
  // Every cell of the arch moves with the file's bytes; resnet8's do not.
  { std::ofstream(dir / "net.onnx") << "other bytes"; }
  Matrix e = parse_matrix(head + "architectures:\n  mynet: {onnx: net.onnx}\n", file, cat);
  auto a = expand_cells(m, cat), b = expand_cells(e, cat);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK((a[i].key == b[i].key) == (a[i].arch == "resnet8"));
  // Errors: a built-in name, options of the zoo's nets, a missing file, the name unknown elsewhere.
  auto err = [&](const std::string& text) {
    return qbench::config::test::config_error([&] { parse_matrix(text, file, cat); });
  };
  CHECK_THAT(err(kHead + "architectures:\n  resnet8: {onnx: net.onnx}\n"),
             Catch::Contains(":8:3: architectures.resnet8: 'resnet8' is a built-in architecture"));
  CHECK_THAT(err(head + "architectures:\n  mynet: {onnx: net.onnx, width: 0.5}\n"),
             Catch::Contains("architectures.mynet.width: unknown key"));
  CHECK_THAT(err(head + "architectures:\n  mynet: {onnx: nothere.onnx}\n"),
             Catch::Contains("architectures.mynet.onnx: cannot read ONNX file"));
  CHECK_THAT(err(head + "architectures:\n  mynet: {onnx: net.onnx, train: maybe}\n"),
             Catch::Contains("architectures.mynet.train"));
  CHECK_THAT(err(head), Catch::Contains("matrix.arch[0]: unknown arch 'mynet'"));
}

TEST_CASE("architectures: errors name file, line, column and key", "[config][arch][errors]") {
  CHECK_THAT(error_of("architectures:\n  resnet9: {width: 0.5}\n"),
             Catch::Contains("m.yaml:8:3") && Catch::Contains("architectures.resnet9") && Catch::Contains("resnet8"));
  CHECK_THAT(error_of("architectures:\n  resnet8: {width: 0}\n"), Catch::Contains("m.yaml:8:20") && Catch::Contains("architectures.resnet8.width"));
  CHECK_THAT(error_of("architectures:\n  resnet8: {stem: big}\n"),
             Catch::Contains("architectures.resnet8.stem") && Catch::Contains("auto, small or imagenet"));
  CHECK_THAT(error_of("architectures:\n  resnet8: {depth: 3}\n"), Catch::Contains("architectures.resnet8.depth") && Catch::Contains("unknown key"));
  CHECK_THAT(error_of("architectures:\n  resnet8: {weights: /nonexistent/w.safetensors}\n"),
             Catch::Contains("architectures.resnet8.weights") && Catch::Contains("cannot read weights file /nonexistent/w.safetensors"));
  CHECK_THAT(error_of("architectures: [resnet8]\n"), Catch::Contains("m.yaml:7:16") && Catch::Contains("expected a map"));
}

TEST_CASE("a profile's content hash joins the quantized cells' keys, not the baseline's", "[config][keys]") {
  auto cat = qbench::config::test::fake_catalog();
  Matrix m = parse_matrix(kHead, "m.yaml", cat);
  auto before = expand_cells(m, cat);
  cat.profile_hashes["academic"] = "aaaa";
  auto a = expand_cells(m, cat);
  cat.profile_hashes["academic"] = "bbbb";
  auto b = expand_cells(m, cat);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].algorithm);
    if (a[i].kind == CellKind::Fp32) {
      CHECK(a[i].key == b[i].key);
      CHECK(a[i].key == before[i].key);
    } else {
      CHECK(a[i].resolved["profile_sha256"] == "aaaa");
      CHECK(a[i].key != b[i].key);
      CHECK(a[i].key == qbench::sha256_hex(a[i].resolved.dump()));
    }
  }
}
