// Expansion of a matrix into cells (count, order, exclude/include) and the stability of cell keys.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench::config;
using qbench::sha256_hex;
using qbench::config::test::fake_catalog;

namespace {

const std::filesystem::path kFixtures = std::filesystem::path(QBENCH_TEST_SOURCE_DIR) / "fixtures/config";

Matrix parse(const std::string& yaml) { return parse_matrix(yaml, "m.yaml", fake_catalog()); }

std::vector<Cell> cells_of(const std::string& yaml) { return expand_cells(parse(yaml), fake_catalog()); }

/// "arch/seed/algorithm/bits/profile" per cell, to compare orders at a glance.
std::vector<std::string> ids(const std::vector<Cell>& cells) {
  std::vector<std::string> out;
  for (const auto& c : cells)
    out.push_back(c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile);
  return out;
}

std::map<std::string, std::string> keys_by_id(const std::vector<Cell>& cells) {
  std::map<std::string, std::string> out;
  auto names = ids(cells);
  for (std::size_t i = 0; i < cells.size(); ++i) out[names[i]] = cells[i].key;
  return out;
}

/// A matrix with every recipe key explicit, so tests can change one value by text substitution.
std::string recipe_matrix(const std::string& lr = "0.1", const std::string& seeds = "[0, 1]",
                          const std::string& root = "/data/a", const std::string& extra_pipeline = "") {
  return "name: keys\n"
         "dataset: {name: fashion-mnist, root: " + root + "}\n"
         "pipeline:\n"
         "  fp32: {lr: " + lr + "}\n" + extra_pipeline +
         "matrix:\n"
         "  algorithm: [minmax, lsq]\n"
         "  bits: [w8a8, w4a4]\n"
         "  arch: [resnet20, resnet8]\n"
         "  profile: [academic, tensorrt]\n"
         "  seed: " + seeds + "\n";
}

}  // namespace

TEST_CASE("the minimal matrix expands to its baseline and one quantized cell", "[config][expand]") {
  auto cells = expand_cells(load_matrix_file((kFixtures / "quickstart.yaml").string(), fake_catalog()), fake_catalog());
  REQUIRE(cells.size() == 2);
  const Cell& b = cells[0];
  CHECK(b.dataset == "fashion-mnist");
  CHECK(b.arch == "resnet20");
  CHECK(b.algorithm == "fp32");
  CHECK(b.kind == CellKind::Fp32);
  CHECK(b.profile == "none");
  CHECK(b.bits == BitWidth{32, 32});
  CHECK(b.seed == 0);
  const Cell& q = cells[1];
  CHECK(q.algorithm == "minmax");
  CHECK(q.kind == CellKind::Ptq);
  CHECK(q.profile == "academic");
  CHECK(q.bits == BitWidth{8, 8});
  CHECK(q.baseline_key == b.key);
  CHECK(q.short_key() == q.key.substr(0, 12));
  CHECK(q.short_key().size() == 12);
}

TEST_CASE("cells come per arch x seed, baseline first, then algorithm x bits x profile", "[config][expand]") {
  auto cells = cells_of(
      "name: t\ndataset: mnist\nmatrix:\n"
      "  algorithm: [lsq, fp32, minmax]\n"
      "  bits: [w4a4, fp32, w8a8]\n"
      "  arch: [resnet8, resnet20]\n"
      "  profile: [tensorrt, academic]\n"
      "  seed: [7, 3]\n");
  // Per group: 1 baseline + 2 algorithms x 2 quantized bit widths x 2 profiles; 4 groups.
  REQUIRE(cells.size() == 4 * 9);
  const auto all = ids(cells);
  std::vector<std::string> first_group(all.begin(), all.begin() + 9);
  CHECK(first_group == std::vector<std::string>{
                           "resnet8/7/fp32/fp32/none",
                           "resnet8/7/lsq/w4a4/tensorrt",
                           "resnet8/7/lsq/w4a4/academic",
                           "resnet8/7/lsq/w8a8/tensorrt",
                           "resnet8/7/lsq/w8a8/academic",
                           "resnet8/7/minmax/w4a4/tensorrt",
                           "resnet8/7/minmax/w4a4/academic",
                           "resnet8/7/minmax/w8a8/tensorrt",
                           "resnet8/7/minmax/w8a8/academic",
                       });
  CHECK(all[9] == "resnet8/3/fp32/fp32/none");
  CHECK(all[18] == "resnet20/7/fp32/fp32/none");
  CHECK(all[27] == "resnet20/3/fp32/fp32/none");
  for (const auto& c : cells) {
    if (c.algorithm == "lsq") CHECK(c.kind == CellKind::Qat);
    if (c.algorithm == "minmax") CHECK(c.kind == CellKind::Ptq);
    if (c.algorithm == "fp32") CHECK((c.kind == CellKind::Fp32 && c.profile == "none" && c.bits.is_float()));
    if (c.algorithm != "fp32") CHECK_FALSE(c.bits.is_float());
  }
  std::set<std::string> keys;
  for (const auto& c : cells) keys.insert(c.key);
  CHECK(keys.size() == cells.size());
}

TEST_CASE("a matrix of fp32 alone is its baselines", "[config][expand]") {
  auto cells = cells_of("name: t\ndataset: mnist\nmatrix:\n  algorithm: fp32\n  arch: [resnet20, resnet8]\n  seed: [0, 1]\n");
  CHECK(ids(cells) == std::vector<std::string>{"resnet20/0/fp32/fp32/none", "resnet20/1/fp32/fp32/none",
                                               "resnet8/0/fp32/fp32/none", "resnet8/1/fp32/fp32/none"});
}

TEST_CASE("the full fixture expands with its exclude and include", "[config][expand]") {
  auto m = load_matrix_file((kFixtures / "full.yaml").string(), fake_catalog());
  auto cells = expand_cells(m, fake_catalog());
  // resnet20: 2 seeds x (1 + 2 alg x 3 bits x 2 profiles); resnet8 without w4a4: 2 x (1 + 2 x 2 x 2);
  // plus the include.
  REQUIRE(cells.size() == 2 * 13 + 2 * 9 + 1);
  for (const auto& c : cells) CHECK_FALSE((c.arch == "resnet8" && c.bits == BitWidth{4, 4}));
  CHECK(ids(cells).back() == "resnet8/1/minmax/w2a4/academic");
  CHECK(cells.back().baseline_key == sha256_hex(baseline_config(m, "resnet8", 1).dump()));
  for (const auto& c : cells) CHECK(c.dataset == "mnist");
}

TEST_CASE("exclude drops every combination matching all of an entry's keys", "[config][expand][exclude]") {
  auto cells = cells_of(
      "name: t\ndataset: mnist\nmatrix:\n"
      "  algorithm: [minmax, lsq]\n  bits: [w8a8, w4a4]\n  arch: [resnet20, resnet8]\n  seed: [0, 1]\n"
      "  exclude:\n"
      "    - {algorithm: lsq, bits: {w: 4, a: 4}}\n"   // bits compared by label
      "    - {arch: resnet8, seed: 1, algorithm: minmax}\n");
  auto names = ids(cells);
  std::set<std::string> got(names.begin(), names.end());
  CHECK_FALSE(got.count("resnet20/0/lsq/w4a4/academic"));
  CHECK_FALSE(got.count("resnet8/1/lsq/w4a4/academic"));
  CHECK(got.count("resnet20/0/lsq/w8a8/academic"));
  CHECK_FALSE(got.count("resnet8/1/minmax/w8a8/academic"));
  CHECK(got.count("resnet8/0/minmax/w8a8/academic"));
  CHECK(got.count("resnet8/1/lsq/w8a8/academic"));
  CHECK(got.count("resnet8/1/fp32/fp32/none"));  // the baseline stays
  // 4 groups x (1 + 4) = 20, minus 4 lsq/w4a4, minus 2 minmax in resnet8/1.
  CHECK(cells.size() == 14);

  // Seeds compare numerically, also in a Matrix built in code.
  Matrix m = parse("name: t\ndataset: mnist\nmatrix:\n  algorithm: minmax\n  bits: w8a8\n  arch: resnet20\n  seed: [1, 2]\n");
  m.exclude = {{{"seed", "01"}}};
  CHECK(ids(expand_cells(m, fake_catalog())) ==
        std::vector<std::string>{"resnet20/1/fp32/fp32/none", "resnet20/2/fp32/fp32/none", "resnet20/2/minmax/w8a8/academic"});
}

TEST_CASE("include appends to its arch x seed group, once, and fills one-valued axes", "[config][expand][include]") {
  auto cells = cells_of(
      "name: t\ndataset: mnist\nmatrix:\n"
      "  algorithm: [minmax]\n  bits: [w8a8]\n  arch: [resnet20, resnet8]\n"
      "  exclude: [{arch: resnet20}]\n"
      "  include:\n"
      "    - {arch: resnet20, bits: w4a8}\n"                 // algorithm, profile, seed from one-valued axes
      "    - {arch: resnet8, bits: w8a8}\n"                  // already a cell: not added twice
      "    - {arch: resnet20, bits: {w: 4, a: 8}}\n"         // same as the first
      "    - {arch: resnet20, algorithm: lsq, profile: tensorrt, bits: w2a2}\n"
      "    - {arch: resnet8, seed: 5, bits: w4a4}\n");       // a new group, baseline first
  CHECK(ids(cells) == std::vector<std::string>{
                          "resnet20/0/fp32/fp32/none",
                          "resnet20/0/minmax/w4a8/academic",
                          "resnet20/0/lsq/w2a2/tensorrt",
                          "resnet8/0/fp32/fp32/none",
                          "resnet8/0/minmax/w8a8/academic",
                          "resnet8/5/fp32/fp32/none",
                          "resnet8/5/minmax/w4a4/academic",
                      });
  CHECK(cells[2].kind == CellKind::Qat);
  CHECK(cells[6].baseline_key == cells[5].key);

  // algorithm fp32 in an include asks for a baseline.
  auto base = cells_of("name: t\ndataset: mnist\nmatrix:\n  algorithm: minmax\n  bits: w8a8\n  arch: resnet20\n"
                       "  include: [{algorithm: fp32, arch: resnet8, seed: 2}]\n");
  CHECK(ids(base).back() == "resnet8/2/fp32/fp32/none");
  CHECK(base.size() == 3);
}

TEST_CASE("expand_cells on a Matrix built in code names the include's position when it has one", "[config][expand][include]") {
  Matrix m = parse("name: t\ndataset: mnist\nmatrix:\n  algorithm: [minmax, lsq]\n  bits: w8a8\n  arch: resnet20\n");
  m.include = {{{"bits", "w4a4"}}};
  try {
    expand_cells(m, fake_catalog());
    FAIL("no error");
  } catch (const qbench::ConfigError& e) {
    CHECK(std::string(e.what()) == "m.yaml: matrix.include[0]: missing key 'algorithm' (the axis has several values)");
  }
  m.include_marks = {SourceMark{12, 7}};
  CHECK_THROWS_WITH(expand_cells(m, fake_catalog()),
                    "m.yaml:12:7: matrix.include[0]: missing key 'algorithm' (the axis has several values)");
}

TEST_CASE("resolved holds the whole configuration and the key is its sha256", "[config][keys]") {
  auto m = load_matrix_file((kFixtures / "full.yaml").string(), fake_catalog());
  auto cells = expand_cells(m, fake_catalog());
  for (const auto& c : cells) {
    const auto& r = c.resolved;
    CHECK(r.at("qbench_pipeline") == 1);
    CHECK(r.at("dataset") == nlohmann::json{{"name", "mnist"}, {"train_subset", 5000}, {"test_subset", 1000}});
    CHECK(r.at("arch") == c.arch);
    CHECK(r.at("algorithm") == c.algorithm);
    CHECK(r.at("kind") == qbench::to_string(c.kind));
    CHECK(r.at("profile") == c.profile);
    CHECK(r.at("w_bits") == c.bits.w);
    CHECK(r.at("a_bits") == c.bits.a);
    CHECK(r.at("seed") == c.seed);
    CHECK(r.at("fp32_recipe").size() == 10);
    CHECK(r.at("fp32_recipe").at("lr") == 0.05);
    CHECK(r.at("fp32_recipe").at("nesterov") == false);
    CHECK(r.at("eval") == nlohmann::json{{"batch_size", 250}});
    CHECK(r.at("latency") == nlohmann::json{{"enabled", false}, {"batch_size", 8}, {"warmup", 2}, {"repeats", 10}});
    // Where the data lives, the thread count and the matrix name do not change a result.
    CHECK_FALSE(r.dump().find("/data/mnist") != std::string::npos);
    CHECK_FALSE(r.contains("threads"));
    CHECK_FALSE(r.contains("name"));
    CHECK(c.baseline_key == sha256_hex(baseline_config(m, c.arch, c.seed).dump()));
    if (c.algorithm == "fp32") {
      CHECK_FALSE(r.contains("ptq"));
      CHECK_FALSE(r.contains("qat"));
      CHECK(c.key == c.baseline_key);
    } else if (c.kind == CellKind::Qat) {
      CHECK_FALSE(r.contains("ptq"));  // QAT initialises from pipeline.qat.init_images, not calibration
      REQUIRE(r.contains("qat"));
      CHECK(r.at("qat").size() == 13);  // 10 recipe keys + init_images + train_images + overrides_applied
      CHECK(r.at("qat").at("init_images") == 256);
      CHECK(r.at("qat").at("train_images") == 0);
      CHECK(r.at("qat").at("overrides_applied") == nlohmann::json::object());
      CHECK(c.key == sha256_hex(r.dump()));
      CHECK(c.key != c.baseline_key);
    } else {
      CHECK_FALSE(r.contains("qat"));
      CHECK(r.at("ptq") == nlohmann::json{{"calib_images", 512},
                                          {"calib_batch_size", 128},
                                          {"observer", {{"weight", "minmax"}, {"activation", "minmax"}}}});
      CHECK(c.key == sha256_hex(r.dump()));
      CHECK(c.key != c.baseline_key);
    }
    CHECK(c.key.size() == 64);
  }
}

TEST_CASE("baseline_config is pinned: its text and hash may not drift", "[config][keys]") {
  auto m = load_matrix_file((kFixtures / "quickstart.yaml").string(), fake_catalog());
  auto j = baseline_config(m, "resnet20", 0);
  const std::string expected =
      R"({"arch":"resnet20","dataset":{"name":"fashion-mnist","test_subset":0,"train_subset":0},)"
      R"("fp32_recipe":{"augment":true,"batch_size":128,"epochs":3,"label_smoothing":0.1,"lr":0.1,)"
      R"("momentum":0.9,"nesterov":true,"warmup_epochs":0.5,"warmup_start_lr":0.0001,"weight_decay":0.0005},)"
      R"("qbench_pipeline":1,"seed":0})";
  CHECK(j.dump() == expected);
  // sha256 of the text above as computed by Python's hashlib, independent of this project's code.
  CHECK(expand_cells(m, fake_catalog())[0].key == "056da0cdb81d6069d075f8a0ea4867decd73c61854e199e6c1302692ff7f07ab");
}

TEST_CASE("cell keys are stable and change exactly when a result could change", "[config][keys]") {
  auto base = keys_by_id(cells_of(recipe_matrix()));
  REQUIRE(base.size() == 4 * 9);

  SECTION("the same matrix twice gives the same keys") {
    CHECK(keys_by_id(cells_of(recipe_matrix())) == base);
  }
  SECTION("changing the learning rate changes every key") {
    auto other = keys_by_id(cells_of(recipe_matrix("0.05")));
    REQUIRE(other.size() == base.size());
    for (const auto& [id, key] : base) CHECK(other.at(id) != key);
  }
  SECTION("changing one seed changes only that seed's cells") {
    auto other = cells_of(recipe_matrix("0.1", "[0, 2]"));
    for (const auto& c : other) {
      std::string id = c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile;
      if (c.seed == 0) CHECK(base.at(id) == c.key);
      if (c.seed == 2) {
        std::string old_id = id;
        old_id.replace(old_id.find("/2/"), 3, "/1/");
        CHECK(base.at(old_id) != c.key);
      }
    }
  }
  SECTION("the dataset's location and the thread count change no key") {
    CHECK(keys_by_id(cells_of(recipe_matrix("0.1", "[0, 1]", "/elsewhere"))) == base);
    CHECK(keys_by_id(cells_of(recipe_matrix("0.1", "[0, 1]", "/data/a", "  threads: 8\n"))) == base);
  }
  SECTION("a latency setting changes the quantized cells but not the baselines") {
    auto other = cells_of(recipe_matrix("0.1", "[0, 1]", "/data/a", "  latency: {repeats: 5}\n"));
    for (const auto& c : other) {
      std::string id = c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile;
      if (c.algorithm == "fp32")
        CHECK(base.at(id) == c.key);
      else
        CHECK(base.at(id) != c.key);
    }
  }
  SECTION("a PTQ setting changes only the PTQ cells; a QAT setting only the QAT cells") {
    for (const std::string extra :
         {"  ptq: {calib_images: 256}\n", "  ptq: {observer: mse}\n", "  ptq: {observer: {activation: mse}}\n"}) {
      auto other = cells_of(recipe_matrix("0.1", "[0, 1]", "/data/a", extra));
      REQUIRE(other.size() == base.size());
      for (const auto& c : other) {
        std::string id = c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile;
        if (c.kind == CellKind::Ptq)
          CHECK(base.at(id) != c.key);
        else
          CHECK(base.at(id) == c.key);
      }
    }
    for (const std::string extra : {"  qat: {lr: 0.005}\n", "  qat: {init_images: 64}\n", "  qat: {augment: false}\n"}) {
      auto other = cells_of(recipe_matrix("0.1", "[0, 1]", "/data/a", extra));
      REQUIRE(other.size() == base.size());
      for (const auto& c : other) {
        std::string id = c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile;
        if (c.kind == CellKind::Qat)
          CHECK(base.at(id) != c.key);
        else
          CHECK(base.at(id) == c.key);
      }
    }
  }
}

TEST_CASE("all cells of an arch x seed share one baseline key, distinct from other groups", "[config][keys]") {
  auto cells = cells_of(recipe_matrix());
  std::map<std::pair<std::string, uint64_t>, std::set<std::string>> by_group;
  for (const auto& c : cells) by_group[{c.arch, c.seed}].insert(c.baseline_key);
  REQUIRE(by_group.size() == 4);
  std::set<std::string> all;
  for (const auto& [group, keys] : by_group) {
    CHECK(keys.size() == 1);
    all.insert(*keys.begin());
  }
  CHECK(all.size() == 4);
  for (const auto& c : cells)
    if (c.algorithm == "fp32") CHECK(by_group.at({c.arch, c.seed}).count(c.key) == 1);
}
