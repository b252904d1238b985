// The `noise` axis (issue 20, SysNoise): noise cells beside the plain ones, keys that stay put
// without the axis (and with `noise: none`), jpeg_quality only in decode cells' keys, a baseline
// that never depends on noise, exclude/include entries, and the errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench;
using config::test::error_of;

namespace {
const std::string kHead = "name: t\ndataset: mnist\n";
const std::string kAxes =
    "matrix:\n  algorithm: [fp32, minmax]\n  bits: [w8a8, w4a4]\n  arch: [resnet8]\n  profile: [tensorrt]\n";

std::vector<config::Cell> cells_of(const std::string& text) {
  auto cat = config::test::fake_catalog();
  return config::expand_cells(config::parse_matrix(text, "m.yaml", cat), cat);
}
/// Cells keyed by "algorithm bits noise".
std::map<std::string, config::Cell> by_name(const std::vector<config::Cell>& cells) {
  std::map<std::string, config::Cell> out;
  for (const auto& c : cells) out[c.algorithm + " " + c.bits.label() + " " + c.noise] = c;
  return out;
}
}  // namespace

TEST_CASE("noise axis: cells, keys and the plain cells they evaluate", "[config][noise]") {
  const auto plain = cells_of(kHead + kAxes);
  const auto with_none = cells_of(kHead + kAxes + "  noise: none\n");
  REQUIRE(plain.size() == 3);
  REQUIRE(with_none.size() == plain.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CHECK(with_none[i].key == plain[i].key);
    CHECK(plain[i].plain_key == plain[i].key);
    CHECK_FALSE(plain[i].resolved.contains("noise"));
  }

  const auto noisy = cells_of(kHead + kAxes + "  noise: [none, decode-ifast, bf16]\n");
  REQUIRE(noisy.size() == 9);  // (baseline + 2 quantized) x 3 noises
  auto n = by_name(noisy);
  auto p = by_name(plain);
  // The plain cells keep their keys beside the noise cells.
  for (const char* name : {"fp32 fp32 none", "minmax w8a8 none", "minmax w4a4 none"})
    CHECK(n.at(name).key == p.at(name).key);
  // Noise cells: new keys, the plain cell's key as their reference, the same baseline.
  const auto& q = n.at("minmax w4a4 decode-ifast");
  CHECK(q.key != p.at("minmax w4a4 none").key);
  CHECK(q.plain_key == p.at("minmax w4a4 none").key);
  CHECK(q.baseline_key == p.at("fp32 fp32 none").key);
  CHECK(q.noise_kind == "decode");
  CHECK(q.resolved.at("noise") == "decode-ifast");
  CHECK(q.resolved.at("jpeg_quality") == 90);
  // Only decode noises read jpeg_quality.
  CHECK_FALSE(n.at("minmax w4a4 bf16").resolved.contains("jpeg_quality"));
  // The FP32 baseline under a noise is a cell of its own, not the baseline.
  const auto& f = n.at("fp32 fp32 bf16");
  CHECK(f.kind == CellKind::Fp32);
  CHECK_FALSE(f.is_baseline());
  CHECK(f.key != f.baseline_key);
  CHECK(f.plain_key == f.baseline_key);
  CHECK(n.at("fp32 fp32 none").is_baseline());
  // The baseline's noise cells follow it, before the quantized cells.
  CHECK(noisy[0].is_baseline());
  CHECK(noisy[1].noise == "decode-ifast");
  CHECK(noisy[2].noise == "bf16");
  CHECK(noisy[3].algorithm == "minmax");
  // Each key is distinct.
  std::vector<std::string> keys;
  for (const auto& c : noisy) keys.push_back(c.key);
  std::sort(keys.begin(), keys.end());
  CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());
}

TEST_CASE("noise axis: jpeg_quality keys the decode cells only", "[config][noise]") {
  const std::string axes = kAxes + "  noise: [decode-ifast, fp16]\n";
  auto a = by_name(cells_of(kHead + axes));
  auto b = by_name(cells_of(kHead + "pipeline:\n  noise: {jpeg_quality: 75}\n" + axes));
  auto c = by_name(cells_of(kHead + "pipeline:\n  noise: {jpeg_quality: 90}\n" + axes));
  CHECK(a.at("minmax w8a8 decode-ifast").key != b.at("minmax w8a8 decode-ifast").key);
  CHECK(b.at("minmax w8a8 decode-ifast").resolved.at("jpeg_quality") == 75);
  CHECK(a.at("minmax w8a8 decode-ifast").key == c.at("minmax w8a8 decode-ifast").key);  // 90 is the default
  CHECK(a.at("minmax w8a8 fp16").key == b.at("minmax w8a8 fp16").key);
  CHECK(a.at("fp32 fp32 none").key == b.at("fp32 fp32 none").key);
  CHECK_FALSE(a.count("minmax w8a8 none"));  // an axis without none has no plain quantized cells
}

TEST_CASE("noise axis: exclude and include entries", "[config][noise]") {
  const std::string axes = kAxes + "  noise: [none, decode-float, bf16]\n";
  auto ex = by_name(cells_of(kHead + axes + "  exclude: [{bits: w4a4, noise: bf16}, {algorithm: fp32, noise: decode-float}]\n"));
  CHECK(ex.size() == 7);
  CHECK_FALSE(ex.count("minmax w4a4 bf16"));
  CHECK_FALSE(ex.count("fp32 fp32 decode-float"));
  CHECK(ex.count("minmax w8a8 bf16"));
  CHECK(ex.count("fp32 fp32 none"));
  // An include entry names its noise (none when it has no noise key).
  auto in = by_name(cells_of(kHead + kAxes + "  include: [{algorithm: minmax, bits: w8a8, noise: fp16}, {algorithm: fp32, noise: fp16}]\n"));
  CHECK(in.size() == 5);
  CHECK(in.count("minmax w8a8 fp16"));
  CHECK(in.count("fp32 fp32 fp16"));
  CHECK(in.at("minmax w8a8 fp16").plain_key == in.at("minmax w8a8 none").key);
}

TEST_CASE("noise axis: bad input names file, line and key", "[config][noise]") {
  const std::string e = error_of(kHead + kAxes + "  noise: [none, decode-ifst]\n");
  CHECK(e.find("m.yaml:8:17: matrix.noise[1]: unknown noise 'decode-ifst'") == 0);
  CHECK(e.find("did you mean: decode-ifast") != std::string::npos);
  CHECK(error_of(kHead + kAxes + "  noise: [align-corners]\n").find("noise 'align-corners' is not implemented yet: no upsampling layers") !=
        std::string::npos);
  CHECK(error_of(kHead + kAxes + "  exclude: [{noise: bf61}]\n").find("matrix.exclude[0].noise: unknown noise 'bf61'") !=
        std::string::npos);
  CHECK(error_of(kHead + "pipeline:\n  noise: {jpeg_quality: 0}\n" + kAxes).find("m.yaml:4:25: pipeline.noise.jpeg_quality") == 0);
  CHECK(error_of(kHead + "pipeline:\n  noise: {quality: 80}\n" + kAxes).find("did you mean: jpeg_quality") != std::string::npos);
  CHECK(error_of(kHead + kAxes + "  exclude: [{algorithm: fp32}]\n").find("the FP32 baseline cannot be excluded") !=
        std::string::npos);
}
