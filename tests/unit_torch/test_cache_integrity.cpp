// What a cell reads back, verified by the runner: the baseline cache (verify, move aside, legacy
// hash, one builder at a time), QAT resumption from the last checkpoint that verifies, and the
// input validation with the option that points at a bad file.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/optim/sgd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"
#include "qbench/config/matrix.h"
#include "qbench/data/idx.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/runner/baseline_cache.h"
#include "qbench/runner/inputs.h"
#include "qbench/runner/registries.h"
#include "qbench/train/train.h"
#include "test_util.h"
#include "unit_torch/checkpoint_util.h"

using namespace qbench;
using namespace qbench::test;
namespace fs = std::filesystem;

namespace {

// A safetensors file as qbench wrote it before content hashes: the same layout, no hash keys.
void write_legacy_safetensors(const fs::path& p, quant::QuantModel& m) {
  std::map<std::string, at::Tensor> sorted;
  for (auto& [n, t] : models::model_state(m)) sorted[n] = t.contiguous();
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}, {"arch", "resnet8-w0.5"}};
  std::string data;
  for (auto& [n, t] : sorted) {
    const char* dt = t.scalar_type() == at::kFloat ? "F32" : "I64";
    const auto begin = data.size();
    data.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
    h[n] = {{"dtype", dt}, {"shape", t.sizes().vec()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((hs.size() >> (8 * i)) & 0xff));
  spit(p, out + hs + data);
}

struct Log {
  std::vector<std::string> notes, warnings;
  runner::CacheLog note() {
    return [this](const std::string& s) { notes.push_back(s); };
  }
  runner::CacheLog warn() {
    return [this](const std::string& s) { warnings.push_back(s); };
  }
};

}  // namespace

TEST_CASE("BaselineCheckpoint loads verified checkpoints, moves damaged ones aside, hashes legacy ones", "[runner][cache][integrity]") {
  const auto dir = test::scratch_dir("baseline_cache");
  const auto path = dir / "baselines" / "k.safetensors";
  auto trained = small_model(1);
  Log log;
  {
    runner::BaselineCheckpoint c(path.string(), log.note(), log.warn());
    auto m = small_model(2);
    CHECK_FALSE(c.load_into(*m));  // nothing cached yet
    models::export_weights(*trained, path.string());
  }
  SECTION("verified: loaded") {
    runner::BaselineCheckpoint c(path.string(), log.note(), log.warn());
    auto m = small_model(2);
    CHECK(c.load_into(*m));
    CHECK(same_state(*m, *trained));
    CHECK(log.warnings.empty());
    CHECK(log.notes.empty());
  }
  SECTION("damaged (flipped, truncated, bad header): moved aside, kept, model untouched") {
    const std::string good = slurp(path);
    for (int kind = 0; kind < 3; ++kind) {
      std::string b = good;
      if (kind == 0) b[b.size() - 7] ^= 0x01;
      if (kind == 1) b.resize(b.size() / 2);
      if (kind == 2) b[9] = '\x01';
      spit(path, b);
      runner::BaselineCheckpoint c(path.string(), log.note(), log.warn());
      auto m = small_model(2), untouched = small_model(2);
      CHECK_FALSE(c.load_into(*m));
      CHECK(same_state(*m, *untouched));
      CHECK_FALSE(fs::exists(path));
      const std::string aside = path.string() + ".corrupt" + (kind ? "." + std::to_string(kind) : std::string());
      CHECK(slurp(aside) == b);
      REQUIRE(log.warnings.size() == static_cast<std::size_t>(kind + 1));
      CHECK_THAT(log.warnings.back(), Catch::Contains(path.string()) && Catch::Contains(aside));
      spit(path, good);
    }
  }
  SECTION("legacy (no hash): accepted with a note, hash written, then verified") {
    write_legacy_safetensors(path, *trained);
    REQUIRE(models::read_safetensors(path.string()).check.status == Integrity::Unhashed);
    runner::BaselineCheckpoint c(path.string(), log.note(), log.warn());
    auto m = small_model(2);
    CHECK(c.load_into(*m));
    CHECK(same_state(*m, *trained));
    REQUIRE(log.notes.size() == 1);
    CHECK_THAT(log.notes[0], Catch::Contains("no content hash"));
    const auto after = models::read_safetensors(path.string());
    CHECK(after.check.status == Integrity::Verified);
    CHECK(after.metadata.at("arch") == "resnet8-w0.5");  // its metadata kept
  }
  SECTION("a checkpoint that does not fit the model is set aside too") {
    auto other = models::make_model("resnet8", {1, 4, 28});
    models::export_weights(*other, path.string());
    runner::BaselineCheckpoint c(path.string(), log.note(), log.warn());
    auto m = small_model(2);
    CHECK_FALSE(c.load_into(*m));
    CHECK(fs::exists(path.string() + ".corrupt"));
    CHECK_THAT(log.warnings.at(0), Catch::Contains("does not fit the model"));
  }
}

TEST_CASE("BaselineCheckpoint holds the baseline's lock: a second builder waits for the first", "[runner][cache][lock]") {
  const auto dir = test::scratch_dir("baseline_lock");
  const auto path = (dir / "k.safetensors").string();
  Log first, second;
  std::atomic<bool> loaded{false};
  auto trained = small_model(1);
  std::thread waiter;
  {
    runner::BaselineCheckpoint builder(path, first.note(), first.warn());
    CHECK_FALSE(FileLock::try_acquire(path + ".lock"));
    waiter = std::thread([&] {
      runner::BaselineCheckpoint reuser(path, second.note(), second.warn());
      auto m = small_model(2);
      loaded = reuser.load_into(*m) && same_state(*m, *trained);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK_FALSE(loaded.load());  // still waiting while the builder "trains"
    models::export_weights(*trained, path);
  }
  waiter.join();
  CHECK(loaded.load());  // and then reused what the builder wrote
  REQUIRE(second.notes.size() == 1);
  CHECK_THAT(second.notes[0], Catch::Contains("waiting for another qbench process"));
  CHECK(FileLock::try_acquire(path + ".lock"));
}

TEST_CASE("qat_resume_epoch resumes after the last checkpoint that verifies", "[runner][cache][qat]") {
  const auto dir = test::scratch_dir("qat_resume");
  const auto cell = dir / "cells" / "key";
  Log log;
  CHECK(runner::qat_resume_epoch(cell.string(), log.note(), log.warn()) == 0);  // no folder
  auto m = small_model(1);
  auto opt = sgd(*m);
  one_step(*m, opt);
  fs::create_directories(cell);
  train::save_checkpoint(*m, opt, (cell / "epoch_1.pt").string());
  train::save_checkpoint(*m, opt, (cell / "epoch_2.pt").string());
  spit(cell / "epoch_9.pt.tmp.999999999.0", "left by a writer that is gone");
  CHECK(runner::qat_resume_epoch(cell.string(), log.note(), log.warn()) == 2);
  CHECK_FALSE(fs::exists(cell / "epoch_9.pt.tmp.999999999.0"));
  SECTION("a damaged last checkpoint: moved aside, the previous one is used") {
    std::string b = slurp(cell / "epoch_2.pt");
    b[b.size() - 30] ^= 0x40;
    spit(cell / "epoch_2.pt", b);
    CHECK(runner::qat_resume_epoch(cell.string(), log.note(), log.warn()) == 1);
    CHECK(slurp(cell / "epoch_2.pt.corrupt") == b);
    REQUIRE(log.warnings.size() == 1);
    CHECK_THAT(log.warnings[0], Catch::Contains("epoch_2.pt") && Catch::Contains("content hash mismatch"));
    // Only damaged ones left: the cell starts over; after it, the .corrupt files stay.
    spit(cell / "epoch_1.pt", "garbage");
    CHECK(runner::qat_resume_epoch(cell.string(), log.note(), log.warn()) == 0);
    CHECK_THAT(log.warnings.back(), Catch::Contains("starts again from the baseline"));
    runner::remove_qat_checkpoints(cell.string());
    CHECK(fs::exists(cell / "epoch_2.pt.corrupt"));
    CHECK(fs::exists(cell / "epoch_1.pt.corrupt"));
  }
  SECTION("a legacy (bare archive) checkpoint: accepted and given its hash") {
    const std::string b = slurp(cell / "epoch_2.pt");
    spit(cell / "epoch_2.pt", b.substr(80));
    CHECK(runner::qat_resume_epoch(cell.string(), log.note(), log.warn()) == 2);
    CHECK(log.notes.size() == 1);
    CHECK(train::verify_checkpoint((cell / "epoch_2.pt").string()).status == Integrity::Verified);
  }
  SECTION("after a finished cell the folder goes") {
    runner::remove_qat_checkpoints(cell.string());
    CHECK_FALSE(fs::exists(cell));
  }
}

namespace {

// A Fashion-MNIST-style root with n train and m test images.
fs::path idx_root(const fs::path& dir, int n, int m) {
  fs::create_directories(dir);
  for (auto [prefix, count] : {std::pair<const char*, int>{"train", n}, {"t10k", m}}) {
    std::vector<uint8_t> lbl(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) lbl[static_cast<std::size_t>(i)] = static_cast<uint8_t>(i % 10);
    data::write_idx((dir / (std::string(prefix) + "-images-idx3-ubyte")).string(), {count, 28, 28},
                    std::vector<uint8_t>(static_cast<std::size_t>(count) * 784, 9));
    data::write_idx((dir / (std::string(prefix) + "-labels-idx1-ubyte")).string(), {count}, lbl);
  }
  return dir;
}

std::string error_of(const std::string& yaml, const runner::RunOptions& opt, const std::string& size = "") {
  const auto catalog = runner::build_catalog();
  const auto m = config::parse_matrix(yaml, "m.yaml", catalog, size);
  try {
    runner::validate_inputs(m, config::expand_cells(m, catalog), opt);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("validate_inputs names the file, what is wrong and the option that points there", "[runner][inputs]") {
  const auto dir = test::scratch_dir("inputs");
  const auto root = idx_root(dir / "data", 20, 10);
  auto matrix = [](const std::string& root_line, const std::string& extra = "") {
    return "name: t\n"
           "dataset:\n"
           "  name: fashion-mnist\n" +
           root_line +
           "matrix:\n"
           "  algorithm: [minmax]\n"
           "  bits: [w8a8]\n"
           "  arch: [resnet8-w0.5]\n"
           "sizes:\n"
           "  elsewhere: {dataset: {root: /also/missing}}\n" +
           extra;
  };
  runner::RunOptions opt;
  CHECK(error_of(matrix("  root: " + root.string() + "\n"), opt) == "(no error)");
  CHECK(error_of(matrix("  root: /no/such/dir\n"), opt) ==
        "m.yaml:4:9: dataset.root: /no/such/dir: no such folder (the fashion-mnist dataset folder)");
  CHECK(error_of(matrix("  root: /no/such/dir\n"), opt, "elsewhere") ==
        "m.yaml:10:31: sizes.elsewhere.dataset.root: /also/missing: no such folder (the fashion-mnist dataset folder)");
  opt.data_root = "/flag/dir";
  CHECK(error_of(matrix("  root: " + root.string() + "\n"), opt) ==
        "--data-root /flag/dir: no such folder (the fashion-mnist dataset folder)");
  opt.data_root.clear();

  // A damaged split: the file and the damage after the option.
  const auto img = root / "train-images-idx3-ubyte";
  const std::string good = slurp(img);
  spit(img, good.substr(0, good.size() - 784));
  CHECK(error_of(matrix("  root: " + root.string() + "\n"), opt) ==
        "m.yaml:4:9: dataset.root: " + img.string() +
            ": truncated IDX payload: header says 15680 bytes, file has 14896");
  opt.data_root = root.string();
  CHECK_THAT(error_of(matrix(""), opt), Catch::StartsWith("--data-root " + root.string() + ": " + img.string()));
  opt.data_root.clear();

  // Imported weights and data-free calibration need no training split: the damaged one is not read.
  auto fits = models::make_model("resnet8-w0.5", {1, 10, 28});
  const auto weights = dir / "w.safetensors";
  models::export_weights(*fits, weights.string());
  const std::string imported = "architectures:\n  resnet8-w0.5: {weights: " + weights.string() + "}\n";
  const std::string datafree = "pipeline:\n  ptq: {calibration: {source: zeroq, iters: 1}}\n";
  CHECK(error_of(matrix("  root: " + root.string() + "\n", imported + datafree), opt) == "(no error)");
  CHECK_THAT(error_of(matrix("  root: " + root.string() + "\n", imported), opt),
             Catch::Contains("truncated IDX payload"));  // calibration reads the training split
  spit(img, good);

  // Weights that fail: truncated, and for another network.
  const std::string w = slurp(weights);
  spit(weights, w.substr(0, w.size() - 8));
  CHECK_THAT(error_of(matrix("  root: " + root.string() + "\n", imported), opt),
             Catch::StartsWith("m.yaml:12:27: architectures.resnet8-w0.5.weights: " + weights.string() + ":"));
  auto wider = models::make_model("resnet8", {1, 10, 28});
  models::export_weights(*wider, weights.string());
  CHECK_THAT(error_of(matrix("  root: " + root.string() + "\n", imported), opt),
             Catch::Contains("architectures.resnet8-w0.5.weights: ") && Catch::Contains("has shape"));
}
