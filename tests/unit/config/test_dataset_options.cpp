// Per-dataset options of the `dataset:` section: which dataset reads which key (from the
// catalog), defaults filled into the resolved configuration, range errors with file:line:col, and
// the cell key changing with every option but not with `workers` or `root`.
#include <catch2/catch.hpp>

#include <string>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"


using namespace qbench::config;

namespace {

// The fake catalog plus two datasets with options, declared the way the data registry declares
// them (imagefolder: image_size; synthetic: the shape, classes and split sizes).
Catalog catalog() {
  Catalog c = qbench::config::test::fake_catalog();
  c.datasets.push_back("imagefolder");
  c.datasets.push_back("synthetic");
  c.dataset_options["imagefolder"] = {{"image_size", 224}};
  c.dataset_options["synthetic"] = {
      {"image_size", 32}, {"channels", 3}, {"classes", 10}, {"train_size", 2048}, {"test_size", 512}};
  return c;
}

const std::string kAxes = "matrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n  arch: [resnet20]\n";

Matrix parse(const std::string& dataset_lines) {
  return parse_matrix("name: t\n" + dataset_lines + kAxes, "m.yaml", catalog());
}

std::string error_of(const std::string& dataset_lines) {
  return qbench::config::test::config_error([&] { parse(dataset_lines); });
}

std::string first_key(const std::string& dataset_lines) {
  Matrix m = parse(dataset_lines);
  return expand_cells(m, catalog()).at(0).key;
}

}  // namespace

TEST_CASE("dataset options are read, and defaults fill the ones left out", "[config][dataset]") {
  Matrix m = parse("dataset: {name: synthetic, image_size: 16, classes: 4, train_size: 100, workers: 3}\n");
  CHECK(m.dataset.name == "synthetic");
  CHECK(m.dataset.image_size == 16);
  CHECK(m.dataset.classes == 4);
  CHECK(m.dataset.train_size == 100);
  CHECK(m.dataset.channels == 3);     // default
  CHECK(m.dataset.test_size == 512);  // default
  CHECK(m.dataset.workers == 3);

  Matrix s = parse("dataset: imagefolder\n");  // the scalar form fills the defaults too
  CHECK(s.dataset.image_size == 224);
  CHECK(s.dataset.classes == 0);  // not an option of imagefolder
  CHECK(s.dataset.workers == 0);

  Matrix f = parse("dataset: fashion-mnist\n");
  CHECK(f.dataset.image_size == 0);
  CHECK(f.dataset.train_size == 0);
}

TEST_CASE("the resolved configuration names each option the dataset reads, and only those", "[config][dataset]") {
  Matrix m = parse("dataset: {name: imagefolder, root: /data/imagenet}\n");
  auto cells = expand_cells(m, catalog());
  const auto& d = cells.at(0).resolved.at("dataset");
  CHECK(d.at("image_size") == 224);
  CHECK_FALSE(d.contains("classes"));
  CHECK_FALSE(d.contains("workers"));
  CHECK_FALSE(d.contains("root"));
  // A dataset without options resolves to exactly the three keys it always had (old keys stay).
  Matrix f = parse("dataset: fashion-mnist\n");
  CHECK(expand_cells(f, catalog()).at(0).resolved.at("dataset") ==
        nlohmann::json({{"name", "fashion-mnist"}, {"train_subset", 0}, {"test_subset", 0}}));
}

TEST_CASE("every dataset option changes the cell key but workers and root do not", "[config][dataset][keys]") {
  const std::string base = first_key("dataset: {name: synthetic}\n");
  // Writing the default explicitly is the same configuration.
  CHECK(first_key("dataset: {name: synthetic, image_size: 32, classes: 10}\n") == base);
  CHECK(first_key("dataset: {name: synthetic, image_size: 16}\n") != base);
  CHECK(first_key("dataset: {name: synthetic, channels: 1}\n") != base);
  CHECK(first_key("dataset: {name: synthetic, classes: 5}\n") != base);
  CHECK(first_key("dataset: {name: synthetic, train_size: 100}\n") != base);
  CHECK(first_key("dataset: {name: synthetic, test_size: 100}\n") != base);
  CHECK(first_key("dataset: {name: synthetic, workers: 7}\n") == base);
  CHECK(first_key("dataset: {name: synthetic, root: /somewhere}\n") == base);
  CHECK(first_key("dataset: {name: imagefolder, image_size: 160}\n") !=
        first_key("dataset: {name: imagefolder, image_size: 224}\n"));
}

TEST_CASE("dataset option errors name file, line, column and key", "[config][dataset][errors]") {
  CHECK(error_of("dataset: {name: fashion-mnist, image_size: 32}\n") ==
        "m.yaml:2:44: dataset.image_size: dataset 'fashion-mnist' has no option image_size (it takes none)");
  CHECK(error_of("dataset: {name: imagefolder, classes: 5}\n") ==
        "m.yaml:2:39: dataset.classes: dataset 'imagefolder' has no option classes (its options: image_size)");
  CHECK(error_of("dataset: {name: synthetic, image_size: 4}\n") ==
        "m.yaml:2:40: dataset.image_size: expected an integer 8..4096, got 4");
  CHECK(error_of("dataset: {name: synthetic, classes: 1}\n") ==
        "m.yaml:2:37: dataset.classes: expected an integer 2..1000000, got 1");
  CHECK(error_of("dataset: {name: synthetic, train_size: 0}\n") ==
        "m.yaml:2:40: dataset.train_size: expected an integer 1..2147483648, got 0");
  CHECK(error_of("dataset: {name: synthetic, channels: many}\n") ==
        "m.yaml:2:38: dataset.channels: expected an integer 1..64, got 'many'");
  CHECK(error_of("dataset: {name: synthetic, workers: -1}\n") ==
        "m.yaml:2:37: dataset.workers: expected an integer 0..256, got -1");
  CHECK(error_of("dataset: {name: synthetic, image_sise: 16}\n") ==
        "m.yaml:2:28: dataset.image_sise: unknown key (did you mean: image_size?)");
}
