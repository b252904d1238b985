// `mixed` bits entries (issue 19): a budget in the bits axis, pipeline.mixed_precision, their
// keys (only mixed cells hold them; every other cell keeps its key), labels and the errors.
#include <catch2/catch.hpp>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench;
using config::test::error_of;

namespace {
const std::string kHead = "name: t\ndataset: mnist\n";
const std::string kAxes = "matrix:\n  algorithm: [minmax]\n  arch: [resnet8]\n  profile: [tensorrt]\n";

std::vector<config::Cell> cells_of(const std::string& text) {
  auto cat = config::test::fake_catalog();
  return config::expand_cells(config::parse_matrix(text, "m.yaml", cat), cat);
}
const config::Cell& find_cell(const std::vector<config::Cell>& cells, const std::string& label) {
  for (const auto& c : cells)
    if (c.bits.label() == label) return c;
  FAIL("no cell " << label);
  throw;
}
}  // namespace

TEST_CASE("mixed bits entries: budgets, labels and the resolved configuration", "[config][mixed]") {
  const std::string text = kHead +
                           "pipeline:\n  mixed_precision: {sensitivity: loss, candidates: {w: [8, 2, 4], a: [8]}}\n" +
                           kAxes + "  bits: [w4a8, {mixed: {avg_w_bits: 3.5}}, {mixed: {size_kb: 100, bops_ratio: 0.25}}]\n";
  auto cells = cells_of(text);
  REQUIRE(cells.size() == 4);  // baseline + 3
  const auto& a = find_cell(cells, "mixed:avg_w_bits=3.5");
  CHECK(a.bits.is_mixed());
  CHECK(a.bits.w == 8);  // the largest candidates
  CHECK(a.bits.a == 8);
  CHECK(a.resolved.at("mixed").at("budget") == nlohmann::json{{"avg_w_bits", 3.5}});
  CHECK(a.resolved.at("mixed").at("sensitivity") == "loss");
  CHECK(a.resolved.at("mixed").at("candidates").at("w") == nlohmann::json{2, 4, 8});  // sorted
  CHECK_FALSE(a.resolved.at("mixed").contains("probes"));  // Hutchinson's settings only for hessian
  const auto& b = find_cell(cells, "mixed:bops_ratio=0.25,size_kb=100");
  CHECK(b.key != a.key);
  // The label parses back (include/exclude entries match cells by it).
  CHECK(config::parse_bits_label(b.bits.label()) == b.bits);
  CHECK_THROWS_AS(config::parse_bits_label("mixed:size=3"), ConfigError);
}

TEST_CASE("mixed precision settings key only the mixed cells", "[config][mixed]") {
  const std::string plain = kHead + kAxes + "  bits: [w4a8, w2a8]\n";
  const std::string with_section =
      kHead + "pipeline:\n  mixed_precision: {sensitivity: fisher, probes: 8}\n" + kAxes + "  bits: [w4a8, w2a8]\n";
  auto p = cells_of(plain), q = cells_of(with_section);
  REQUIRE(p.size() == q.size());
  for (std::size_t i = 0; i < p.size(); ++i) CHECK(p[i].key == q[i].key);
  // A mixed entry beside them leaves their keys alone; the section's settings re-key it.
  auto r = cells_of(kHead + kAxes + "  bits: [w4a8, w2a8, {mixed: {avg_w_bits: 3}}]\n");
  auto s = cells_of(kHead + "pipeline:\n  mixed_precision: {probes: 8}\n" + kAxes +
                    "  bits: [w4a8, w2a8, {mixed: {avg_w_bits: 3}}]\n");
  CHECK(find_cell(r, "w4a8").key == find_cell(p, "w4a8").key);
  CHECK(find_cell(r, "mixed:avg_w_bits=3").key != find_cell(s, "mixed:avg_w_bits=3").key);
  // An exclude entry names a budget by its map.
  auto t = cells_of(kHead + kAxes + "  bits: [w4a8, {mixed: {avg_w_bits: 3}}]\n  exclude: [{bits: {mixed: {avg_w_bits: 3}}}]\n");
  CHECK(t.size() == 2);
}

TEST_CASE("mixed bits entries: bad input names file, line and key", "[config][mixed]") {
  CHECK(error_of(kHead + kAxes + "  bits: [{mixed: {size: 3}}]\n").find("m.yaml:7:19: matrix.bits[0].mixed.size: unknown key (did you mean: size_kb?)") == 0);
  CHECK(error_of(kHead + kAxes + "  bits: [{mixed: {}}]\n").find("expected a map of budgets") != std::string::npos);
  CHECK(error_of(kHead + kAxes + "  bits: [{mixed: {avg_w_bits: 1.5}}]\n").find("matrix.bits[0].mixed.avg_w_bits") !=
        std::string::npos);
  // Below the lowest candidate: unreachable, with the range.
  const std::string low = error_of(kHead + "pipeline:\n  mixed_precision: {candidates: {w: [3, 4]}}\n" + kAxes +
                                   "  bits: [{mixed: {avg_w_bits: 2.5}}]\n");
  CHECK(low.find("m.yaml:9:10: matrix.bits[0]: mixed budget avg_w_bits 2.5") == 0);
  CHECK(low.find("unreachable: the candidates (pipeline.mixed_precision.candidates) reach 3 .. 4") != std::string::npos);
  CHECK(error_of(kHead + "pipeline:\n  mixed_precision: {sensitivity: hesian}\n" + kAxes + "  bits: [w4a4]\n")
            .find("did you mean: hessian?") != std::string::npos);
  CHECK(error_of(kHead + "pipeline:\n  mixed_precision: {candidates: {w: [4, 32]}}\n" + kAxes + "  bits: [w4a4]\n")
            .find("float is not a candidate") != std::string::npos);
}

TEST_CASE("mixed bits entries: the profile's widths, latency and non-uniform grids", "[config][mixed]") {
  auto cat = config::test::fake_catalog();
  cat.profile_widths["tensorrt"] = {{4, 8}, {8}, 8, 8, false};
  auto err = [&](const std::string& text) {
    return config::test::config_error([&] { config::parse_matrix(text, "m.yaml", cat); });
  };
  const std::string e = err(kHead + "pipeline:\n  mixed_precision: {candidates: {w: [2, 4, 8], a: [8]}}\n" + kAxes +
                            "  bits: [{mixed: {size_kb: 10}}]\n");
  CHECK(e.find("m.yaml:4:33: pipeline.mixed_precision.candidates.w: candidate width 2 is not allowed by profile "
               "'tensorrt' (allowed: 4, 8)") == 0);
  const std::string ok = kHead + "pipeline:\n  mixed_precision: {candidates: {w: [4, 8], a: [8]}}\n" + kAxes;
  CHECK(err(ok + "  bits: [{mixed: {size_kb: 10}}]\n") == "<no error>");
  CHECK(err(ok + "  bits: [{mixed: {latency_ms: 1}}]\n").find("latency_ms needs a latency that depends on the width") !=
        std::string::npos);
  cat.profile_widths["tensorrt"].roofline = true;
  CHECK(err(ok + "  bits: [{mixed: {latency_ms: 1}}]\n") == "<no error>");
  // Data-free PTQ cannot take an allocation measured on training images.
  CHECK(err(kHead + "pipeline:\n  ptq: {calibration: {source: zeroq}}\n  mixed_precision: {candidates: {w: [4, 8], a: [8]}}\n" +
            kAxes + "  bits: [{mixed: {size_kb: 10}}]\n")
            .find("pipeline.ptq.calibration.source is zeroq (data-free)") != std::string::npos);
  cat.nonuniform_algorithms["pact"] = "non-uniform";
  const std::string q = kHead + "pipeline:\n  mixed_precision: {candidates: {w: [4, 8], a: [8]}}\n" +
                        "matrix:\n  algorithm: [minmax, pact]\n  arch: [resnet8]\n  profile: [tensorrt]\n" +
                        "  bits: [w4a8, {mixed: {size_kb: 10}}]\n";
  CHECK(err(q).find("algorithm 'pact' cannot take a mixed budget: non-uniform") != std::string::npos);
}
