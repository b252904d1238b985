// The QAT recipe (with per-algorithm overrides) and the PTQ observer choice: parsing, defaults,
// validation errors, what the resolved configuration records and which keys they change.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench::config;
using qbench::config::test::error_of;
using qbench::config::test::fake_catalog;
using nlohmann::json;

namespace {


const std::string kAxes = "  algorithm: [minmax, lsq, pact]\n  bits: [w8a8, w4a4]\n  arch: [resnet20]\n";

/// Lines 1-3 fixed; the pipeline section starts on line 4.
std::string with_pipeline(const std::string& pipeline) {
  return "name: t\ndataset: fashion-mnist\npipeline:\n" + pipeline + "matrix:\n" + kAxes;
}

Matrix parse(const std::string& yaml) { return parse_matrix(yaml, "m.yaml", fake_catalog()); }

std::map<std::string, Cell> cells_by_id(const std::string& yaml) {
  std::map<std::string, Cell> out;
  for (auto& c : expand_cells(parse(yaml), fake_catalog()))
    out[c.arch + "/" + std::to_string(c.seed) + "/" + c.algorithm + "/" + c.bits.label() + "/" + c.profile] = c;
  return out;
}

}  // namespace

TEST_CASE("the QAT recipe and the observer choice default to fine-tuning and minmax", "[config][qat][parse]") {
  const QatRecipe q;
  CHECK(q.train.epochs == 1);
  CHECK(q.train.batch_size == 128);
  CHECK(q.train.lr == 0.01);
  CHECK(q.train.warmup_epochs == 0.0);
  CHECK(q.train.warmup_start_lr == 1e-4);
  CHECK(q.train.momentum == 0.9);
  CHECK(q.train.nesterov);
  CHECK(q.train.weight_decay == 5e-4);
  CHECK(q.train.label_smoothing == 0.1);
  CHECK(q.train.augment);
  CHECK(q.init_images == 256);
  CHECK(q.overrides.empty());

  Matrix m = parse(with_pipeline("  threads: 2\n"));
  CHECK(m.qat.train.epochs == 1);
  CHECK(m.qat.train.lr == 0.01);
  CHECK(m.qat.init_images == 256);
  CHECK(m.qat.overrides.empty());
  CHECK(m.ptq.observer.weight == "minmax");
  CHECK(m.ptq.observer.activation == "minmax");
  const TrainRecipe r = qat_recipe_for(m, "lsq");
  CHECK(r.epochs == 1);
  CHECK(r.lr == 0.01);
  CHECK(r.warmup_epochs == 0.0);
  // An empty qat section is all defaults too.
  CHECK(parse(with_pipeline("  qat:\n")).qat.train.lr == 0.01);
}

TEST_CASE("pipeline.qat reads every recipe key, init_images and the overrides", "[config][qat][parse]") {
  Matrix m = parse(with_pipeline(
      "  qat:\n"
      "    epochs: 4\n    batch_size: 64\n    lr: 0.002\n    warmup_epochs: 0.5\n    warmup_start_lr: 1e-5\n"
      "    momentum: 0.8\n    nesterov: false\n    weight_decay: 1e-4\n    label_smoothing: 0.0\n    augment: false\n"
      "    init_images: 512\n"
      "    overrides:\n"
      "      lsq: {lr: 0.001, epochs: 2}\n"
      "      pact: {augment: true, nesterov: true, weight_decay: 0}\n"));
  CHECK(m.qat.train.epochs == 4);
  CHECK(m.qat.train.batch_size == 64);
  CHECK(m.qat.train.lr == 0.002);
  CHECK(m.qat.train.warmup_epochs == 0.5);
  CHECK(m.qat.train.warmup_start_lr == 1e-5);
  CHECK(m.qat.train.momentum == 0.8);
  CHECK_FALSE(m.qat.train.nesterov);
  CHECK(m.qat.train.weight_decay == 1e-4);
  CHECK(m.qat.train.label_smoothing == 0.0);
  CHECK_FALSE(m.qat.train.augment);
  CHECK(m.qat.init_images == 512);
  REQUIRE(m.qat.overrides.size() == 2);
  // Typed values: integers stay integers, numbers are doubles, booleans booleans.
  CHECK(m.qat.overrides.at("lsq") == json{{"lr", 0.001}, {"epochs", 2}});
  CHECK(m.qat.overrides.at("lsq").at("epochs").is_number_integer());
  CHECK(m.qat.overrides.at("pact") == json{{"augment", true}, {"nesterov", true}, {"weight_decay", 0.0}});
  CHECK(m.qat.overrides.at("pact").at("weight_decay").is_number_float());
  // The fp32 recipe is untouched.
  CHECK(m.fp32.epochs == TrainRecipe{}.epochs);
  CHECK(m.fp32.lr == TrainRecipe{}.lr);

  SECTION("qat_recipe_for applies only that algorithm's overrides") {
    TrainRecipe lsq = qat_recipe_for(m, "lsq");
    CHECK(lsq.lr == 0.001);
    CHECK(lsq.epochs == 2);
    CHECK(lsq.batch_size == 64);
    CHECK_FALSE(lsq.augment);
    CHECK(lsq.warmup_epochs == 0.5);
    TrainRecipe pact = qat_recipe_for(m, "pact");
    CHECK(pact.lr == 0.002);
    CHECK(pact.epochs == 4);
    CHECK(pact.augment);
    CHECK(pact.nesterov);
    CHECK(pact.weight_decay == 0.0);
    TrainRecipe other = qat_recipe_for(m, "minmax");  // no overrides: the shared recipe
    CHECK(other.lr == 0.002);
    CHECK_FALSE(other.augment);
  }

  SECTION("the resolved configuration records the recipe after overrides and the overrides") {
    auto cells = expand_cells(m, fake_catalog());
    int qat_cells = 0;
    for (const auto& c : cells) {
      if (c.kind != CellKind::Qat) continue;
      ++qat_cells;
      const json& q = c.resolved.at("qat");
      CHECK_FALSE(c.resolved.contains("ptq"));
      CHECK(q.at("init_images") == 512);
      if (c.algorithm == "lsq") {
        CHECK(q == json{{"epochs", 2},
                        {"batch_size", 64},
                        {"lr", 0.001},
                        {"warmup_epochs", 0.5},
                        {"warmup_start_lr", 1e-5},
                        {"momentum", 0.8},
                        {"nesterov", false},
                        {"weight_decay", 1e-4},
                        {"label_smoothing", 0.0},
                        {"augment", false},
                        {"init_images", 512},
                        {"train_images", 0},
                        {"overrides_applied", {{"lr", 0.001}, {"epochs", 2}}}});
      } else {
        CHECK(c.algorithm == "pact");
        CHECK(q.at("lr") == 0.002);
        CHECK(q.at("augment") == true);
        CHECK(q.at("overrides_applied") == json{{"augment", true}, {"nesterov", true}, {"weight_decay", 0.0}});
      }
    }
    CHECK(qat_cells == 4);
  }
}

TEST_CASE("an override of a QAT algorithm that is not on the axis is accepted and used by nothing",
          "[config][qat][parse]") {
  auto cells = cells_by_id("name: t\ndataset: mnist\npipeline:\n  qat: {overrides: {pact: {lr: 0.5}}}\n"
                           "matrix:\n  algorithm: lsq\n  bits: w4a4\n  arch: resnet20\n");
  REQUIRE(cells.size() == 2);
  CHECK(cells.at("resnet20/0/lsq/w4a4/academic").resolved.at("qat").at("overrides_applied") == json::object());
  CHECK(cells.at("resnet20/0/lsq/w4a4/academic").resolved.at("qat").at("lr") == 0.01);
}

TEST_CASE("pipeline.ptq.observer is one name for both or a weight/activation map", "[config][observer][parse]") {
  Matrix both = parse(with_pipeline("  ptq: {observer: mse}\n"));
  CHECK(both.ptq.observer.weight == "mse");
  CHECK(both.ptq.observer.activation == "mse");
  Matrix split = parse(with_pipeline("  ptq:\n    observer: {weight: mse, activation: minmax}\n"));
  CHECK(split.ptq.observer.weight == "mse");
  CHECK(split.ptq.observer.activation == "minmax");
  Matrix act = parse(with_pipeline("  ptq:\n    observer: {activation: mse}\n"));
  CHECK(act.ptq.observer.weight == "minmax");  // the other keeps its default
  CHECK(act.ptq.observer.activation == "mse");

  for (const auto& c : expand_cells(split, fake_catalog())) {
    if (c.kind == CellKind::Ptq)
      CHECK(c.resolved.at("ptq").at("observer") == json{{"weight", "mse"}, {"activation", "minmax"}});
    if (c.kind == CellKind::Qat) CHECK_FALSE(c.resolved.contains("ptq"));
    if (c.kind == CellKind::Fp32) CHECK_FALSE(c.resolved.contains("ptq"));
  }
}

TEST_CASE("observer errors name the position, the key path and the closest observers", "[config][observer][errors]") {
  CHECK(error_of(with_pipeline("  ptq: {observer: mes}\n")) ==
        "m.yaml:4:19: pipeline.ptq.observer: unknown observer 'mes' (did you mean: mse?)");
  CHECK(error_of(with_pipeline("  ptq:\n    observer: {weight: minmx}\n")) ==
        "m.yaml:5:24: pipeline.ptq.observer.weight: unknown observer 'minmx' (did you mean: minmax?)");
  CHECK(error_of(with_pipeline("  ptq:\n    observer: {weights: mse}\n")) ==
        "m.yaml:5:16: pipeline.ptq.observer.weights: unknown key (did you mean: weight?)");
  CHECK(error_of(with_pipeline("  ptq:\n    observer: [mse]\n")) ==
        "m.yaml:5:15: pipeline.ptq.observer: expected an observer name or a map {weight: NAME, activation: NAME}, "
        "got a list");
  CHECK(error_of(with_pipeline("  ptq:\n    observr: mse\n")) ==
        "m.yaml:5:5: pipeline.ptq.observr: unknown key (did you mean: observer?)");
}

TEST_CASE("QAT recipe and override errors name the position and the key path", "[config][qat][errors]") {
  SECTION("recipe keys are validated like pipeline.fp32") {
    CHECK(error_of(with_pipeline("  qat: {lr: 0}\n")) == "m.yaml:4:13: pipeline.qat.lr: expected a number > 0, got 0");
    CHECK(error_of(with_pipeline("  qat: {init_images: 0}\n")) ==
          "m.yaml:4:22: pipeline.qat.init_images: expected an integer >= 1, got 0");
    CHECK(error_of(with_pipeline("  qat: {learning_rate: 0.1}\n")) ==
          "m.yaml:4:9: pipeline.qat.learning_rate: unknown key (did you mean: lr?)");
    CHECK(error_of(with_pipeline("  qat: {warmup_epochs: 1}\n")) ==
          "m.yaml:4:24: pipeline.qat.warmup_epochs: warmup_epochs (1) must be less than epochs (1)");
    CHECK(error_of(with_pipeline("  qat: {overide: {}}\n")) ==
          "m.yaml:4:9: pipeline.qat.overide: unknown key (did you mean: overrides?)");
    CHECK(error_of(with_pipeline("  qat: {range_init: max}\n")) ==
          "m.yaml:4:21: pipeline.qat.range_init: unknown range_init 'max' (did you mean: mse?)");
  }
  SECTION("override algorithms must be known QAT algorithms") {
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      minmax: {lr: 0.1}\n")) ==
          "m.yaml:6:7: pipeline.qat.overrides.minmax: algorithm 'minmax' is of kind ptq, not qat (overrides "
          "apply to QAT algorithms only)");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      fp32: {lr: 0.1}\n")) ==
          "m.yaml:6:7: pipeline.qat.overrides.fp32: algorithm 'fp32' is of kind fp32, not qat (overrides "
          "apply to QAT algorithms only)");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsqq: {lr: 0.1}\n")) ==
          "m.yaml:6:7: pipeline.qat.overrides.lsqq: unknown algorithm 'lsqq' (did you mean: lsq?)");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      adaround: {lr: 0.1}\n")) ==
          "m.yaml:6:7: pipeline.qat.overrides.adaround: algorithm 'adaround' is not implemented yet: planned");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {lr: 0.1}\n      lsq: {epochs: 2}\n")) ==
          "m.yaml:7:7: pipeline.qat.overrides.lsq: duplicate key (first given on line 6)");
    CHECK(error_of(with_pipeline("  qat: {overrides: [lsq]}\n")) ==
          "m.yaml:4:20: pipeline.qat.overrides: expected a map {<qat algorithm>: {<recipe key>: value}}, got a list");
  }
  SECTION("override keys are validated like the recipe keys") {
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {lrr: 0.1}\n")) ==
          "m.yaml:6:13: pipeline.qat.overrides.lsq.lrr: unknown key (did you mean: lr?)");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {learning_rate: 0.1}\n")) ==
          "m.yaml:6:13: pipeline.qat.overrides.lsq.learning_rate: unknown key (did you mean: lr?)");
    // init_images is shared by all QAT algorithms, not a recipe key.
    CHECK_THAT(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {init_images: 8}\n")),
               Catch::Matchers::StartsWith("m.yaml:6:13: pipeline.qat.overrides.lsq.init_images: unknown key"));
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {lr: fast}\n")) ==
          "m.yaml:6:17: pipeline.qat.overrides.lsq.lr: expected a number > 0, got 'fast'");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {epochs: 1.5}\n")) ==
          "m.yaml:6:21: pipeline.qat.overrides.lsq.epochs: expected an integer >= 1, got '1.5'");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {nesterov: \"yes\"}\n")) ==
          "m.yaml:6:23: pipeline.qat.overrides.lsq.nesterov: expected true or false, got the string \"yes\"");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: {momentum: 1}\n")) ==
          "m.yaml:6:23: pipeline.qat.overrides.lsq.momentum: expected a number in [0, 1), got 1");
    CHECK(error_of(with_pipeline("  qat:\n    overrides:\n      lsq: 0.1\n")) ==
          "m.yaml:6:12: pipeline.qat.overrides.lsq: expected a map of recipe keys such as {lr: 0.001}, got '0.1'");
    // The override is checked against the recipe it produces.
    CHECK(error_of(with_pipeline("  qat:\n    warmup_epochs: 1\n    epochs: 3\n    overrides:\n      lsq: {epochs: 1}\n")) ==
          "m.yaml:8:21: pipeline.qat.overrides.lsq.epochs: warmup_epochs (1) must be less than epochs (1)");
  }
}

TEST_CASE("qat_recipe_for on a Matrix built in code rejects bad override values", "[config][qat][errors]") {
  Matrix m = parse(with_pipeline(""));
  m.qat.overrides["lsq"] = json{{"lr", "fast"}};
  CHECK_THROWS_WITH(qat_recipe_for(m, "lsq"), "m.yaml: pipeline.qat.overrides.lsq.lr: value of the wrong type: \"fast\"");
  m.qat.overrides["lsq"] = json{{"lrr", 0.1}};
  CHECK_THROWS_WITH(qat_recipe_for(m, "lsq"), "m.yaml: pipeline.qat.overrides.lsq.lrr: unknown key (did you mean: lr?)");
}

TEST_CASE("QAT settings change only QAT keys, and an override only its algorithm's keys", "[config][qat][keys]") {
  const std::string head = "name: t\ndataset: mnist\npipeline:\n";
  const std::string axes = "matrix:\n  algorithm: [minmax, lsq, pact]\n  bits: [w8a8, w4a4]\n"
                           "  arch: [resnet20, resnet8]\n  profile: [academic, tensorrt]\n  seed: [0, 1]\n";
  auto base = cells_by_id(head + "  threads: 2\n" + axes);
  REQUIRE(base.size() == 4 * (1 + 3 * 2 * 2));

  SECTION("spelling out the defaults changes nothing") {
    auto same = cells_by_id(head + "  qat: {epochs: 1, lr: 0.01, warmup_epochs: 0, init_images: 256, overrides: {},"
                                   " range_init: paper}\n"
                                   "  ptq: {observer: {weight: minmax, activation: minmax}}\n" + axes);
    for (const auto& [id, c] : same) CHECK(base.at(id).key == c.key);
  }
  SECTION("qat.lr changes every QAT cell's key and nothing else") {
    auto other = cells_by_id(head + "  qat: {lr: 0.02}\n" + axes);
    REQUIRE(other.size() == base.size());
    for (const auto& [id, c] : other) {
      if (c.kind == CellKind::Qat)
        CHECK(base.at(id).key != c.key);
      else
        CHECK(base.at(id).key == c.key);
      CHECK(base.at(id).baseline_key == c.baseline_key);
    }
  }
  SECTION("qat.range_init: mse changes every QAT cell's key and nothing else, and is recorded") {
    auto other = cells_by_id(head + "  qat: {range_init: mse}\n" + axes);
    REQUIRE(other.size() == base.size());
    for (const auto& [id, c] : other) {
      if (c.kind == CellKind::Qat) {
        CHECK(base.at(id).key != c.key);
        CHECK(c.resolved.at("qat").at("range_init") == "mse");
      } else {
        CHECK(base.at(id).key == c.key);
      }
      CHECK(base.at(id).baseline_key == c.baseline_key);
    }
    for (const auto& [id, c] : base)
      if (c.kind == CellKind::Qat) CHECK_FALSE(c.resolved.at("qat").contains("range_init"));
  }
  SECTION("an override for lsq changes only the lsq cells' keys") {
    auto other = cells_by_id(head + "  qat:\n    overrides:\n      lsq: {lr: 0.003}\n" + axes);
    REQUIRE(other.size() == base.size());
    int changed = 0;
    for (const auto& [id, c] : other) {
      if (c.algorithm == "lsq") {
        CHECK(base.at(id).key != c.key);
        ++changed;
      } else {
        CHECK(base.at(id).key == c.key);
      }
      CHECK(base.at(id).baseline_key == c.baseline_key);
    }
    CHECK(changed == 4 * 4);
  }
  SECTION("an observer changes only the PTQ cells' keys") {
    auto other = cells_by_id(head + "  ptq: {observer: {weight: mse}}\n" + axes);
    for (const auto& [id, c] : other) {
      if (c.kind == CellKind::Ptq)
        CHECK(base.at(id).key != c.key);
      else
        CHECK(base.at(id).key == c.key);
    }
  }
  SECTION("baseline keys and baseline_config ignore every QAT and PTQ setting") {
    Matrix a = parse(head + "  threads: 2\n" + axes);
    Matrix b = parse(head + "  qat: {lr: 0.5, epochs: 7, overrides: {lsq: {lr: 0.2}}}\n  ptq: {observer: mse}\n" + axes);
    CHECK(baseline_config(a, "resnet20", 0) == baseline_config(b, "resnet20", 0));
    for (const auto& c : expand_cells(b, fake_catalog()))
      if (c.kind == CellKind::Fp32) {
        CHECK_FALSE(c.resolved.contains("qat"));
        CHECK_FALSE(c.resolved.contains("ptq"));
      }
  }
}
