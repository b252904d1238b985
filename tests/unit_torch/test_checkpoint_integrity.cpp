// Training checkpoints (QAT epoch checkpoints): the qbench header with the archive's length and
// SHA-256, each kind of damage refused before anything is loaded, and bare archives written
// before the header (unhashed: accepted, then given their hash).
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/optim/sgd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/train/train.h"
#include "test_util.h"
#include "unit_torch/checkpoint_util.h"

using namespace qbench;
using namespace qbench::test;
namespace fs = std::filesystem;

TEST_CASE("training checkpoints carry a qbench header with the archive's length and SHA-256", "[train][checkpoint][integrity]") {
  const auto dir = test::scratch_dir("ckpt_integrity");
  auto m = small_model(1);
  auto opt = sgd(*m);
  one_step(*m, opt);
  const auto path = dir / "epoch_1.pt";
  train::save_checkpoint(*m, opt, path.string());
  const std::string bytes = slurp(path);
  REQUIRE(bytes.size() > 80);
  CHECK(bytes.substr(0, 8) == "QBCKPT01");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  CHECK(n == bytes.size() - 80);
  CHECK(bytes.substr(16, 64) == sha256_hex(bytes.substr(80)));
  CHECK(bytes.substr(80, 4) == std::string("PK\x03\x04", 4));  // the LibTorch archive (a zip) follows
  CHECK(train::verify_checkpoint(path.string()).status == Integrity::Verified);

  auto fresh = small_model(2);
  auto fresh_opt = sgd(*fresh);
  auto check = [&](const std::string& name, const std::string& b, const std::string& needle) {
    spit(dir / name, b);
    const auto c = train::verify_checkpoint((dir / name).string());
    CHECK(c.status == Integrity::Corrupt);
    CHECK_THAT(c.problem, Catch::Contains(name) && Catch::Contains(needle));
    // load_checkpoint refuses it before touching the model.
    auto before = small_model(2);
    CHECK_THROWS_AS(train::load_checkpoint(*fresh, fresh_opt, (dir / name).string()), DataError);
    CHECK(same_state(*fresh, *before));
  };
  SECTION("a flipped byte in the archive") {
    std::string b = bytes;
    b[b.size() / 2] ^= 0x10;
    check("flip.pt", b, "content hash mismatch");
  }
  SECTION("truncated in the archive, and in the header") {
    check("cut.pt", bytes.substr(0, bytes.size() - 10), "its header says " + std::to_string(n));
    check("short.pt", bytes.substr(0, 40), "truncated checkpoint");
  }
  SECTION("not a checkpoint at all") { check("junk.pt", std::string(200, 'j'), "bad magic"); }
  SECTION("load_checkpoint restores a verified one") {
    CHECK(train::load_checkpoint(*fresh, fresh_opt, path.string()) == Integrity::Verified);
    CHECK(same_state(*fresh, *m));
  }
  SECTION("a bare archive (written before the header) is unhashed, loads, and gets its hash") {
    const auto legacy = dir / "epoch_2.pt";
    spit(legacy, bytes.substr(80));
    const auto c = train::verify_checkpoint(legacy.string());
    CHECK(c.status == Integrity::Unhashed);
    CHECK(c.sha256 == sha256_hex(bytes.substr(80)));
    CHECK(train::load_checkpoint(*fresh, fresh_opt, legacy.string()) == Integrity::Unhashed);
    CHECK(same_state(*fresh, *m));
    CHECK(train::add_checkpoint_hash(legacy.string()).status == Integrity::Verified);
    CHECK(slurp(legacy) == bytes);  // exactly what save_checkpoint writes today
    CHECK_THROWS_AS(train::add_checkpoint_hash(legacy.string()), DataError);  // only unhashed ones
    // A damaged bare archive is corrupt, not unhashed.
    spit(legacy, bytes.substr(80, (bytes.size() - 80) / 2));
    CHECK(train::verify_checkpoint(legacy.string()).status == Integrity::Corrupt);
  }
}

