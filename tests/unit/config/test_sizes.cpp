// `sizes:` overlays (e.g. --size cpu) and the QAT training-subset key.
#include <catch2/catch.hpp>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench::config;

namespace {
const char* kSized = R"(name: sized
dataset: fashion-mnist
pipeline:
  fp32: {epochs: 10}
  qat: {epochs: 8, lr: 0.01}
matrix:
  algorithm: [minmax, lsq]
  bits: [w4a4]
  arch: [resnet20]
sizes:
  cpu:
    dataset: {train_subset: 5000}
    pipeline:
      qat: {epochs: 1, train_images: 1500}
  broken:
    pipeline:
      qat: {epochs: zero}
)";
}  // namespace

TEST_CASE("a size overlay deep-merges over the file and changes the keys it touches", "[config][sizes]") {
  const auto cat = qbench::config::test::fake_catalog();
  auto full = parse_matrix(kSized, "s.yaml", cat);
  auto cpu = parse_matrix(kSized, "s.yaml", cat, "cpu");
  CHECK(full.size.empty());
  CHECK(cpu.size == "cpu");
  CHECK(full.qat.train.epochs == 8);
  CHECK(cpu.qat.train.epochs == 1);
  CHECK(cpu.qat.train.lr == Approx(0.01));  // untouched keys of a merged map survive
  CHECK(cpu.qat.train_images == 1500);
  CHECK(full.qat.train_images == 0);
  CHECK(cpu.dataset.train_subset == 5000);
  CHECK(cpu.fp32.epochs == 10);
  auto kf = expand_cells(full, cat), kc = expand_cells(cpu, cat);
  REQUIRE(kf.size() == kc.size());
  for (std::size_t i = 0; i < kf.size(); ++i) CHECK(kf[i].key != kc[i].key);  // the subset changes every cell
  CHECK(kc.back().resolved["qat"]["train_images"] == 1500);
}

TEST_CASE("size errors name the file, line and key", "[config][sizes]") {
  const auto cat = qbench::config::test::fake_catalog();
  CHECK_THROWS_WITH(parse_matrix(kSized, "s.yaml", cat, "gpu"), Catch::Contains("--size gpu") && Catch::Contains("cpu"));
  // The bad value lives in the overlay: its own line (17) is reported.
  CHECK_THROWS_WITH(parse_matrix(kSized, "s.yaml", cat, "broken"),
                    Catch::StartsWith("s.yaml:17:") && Catch::Contains("pipeline.qat.epochs"));
  // The unused broken size does not matter when another one is chosen.
  CHECK_NOTHROW(parse_matrix(kSized, "s.yaml", cat, "cpu"));
  CHECK_THROWS_AS(parse_matrix("name: x\ndataset: fashion-mnist\nmatrix: {algorithm: minmax, bits: w8a8, arch: resnet20}\n",
                               "t.yaml", cat, "cpu"),
                  qbench::ConfigError);
  CHECK_THROWS_WITH(parse_matrix(std::string(kSized) + "  bad: 3\n", "s.yaml", cat),
                    Catch::Contains("sizes.bad") && Catch::Contains("expected a map"));
}
