// The safetensors cache files' integrity: the content hash and length qbench writes into
// __metadata__, the verifying read (verified / unhashed / corrupt and why), all-or-nothing import,
// and what an interrupted atomic write leaves behind.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "test_util.h"

using namespace qbench;
namespace fs = std::filesystem;
using qbench::test::slurp;
using qbench::test::spit;

namespace {

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return n;
}

// A file in the published layout with any header text and data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  return out + header + data;
}

models::NamedTensors abc() {
  auto t = at::empty({3}, at::kByte);
  t[0] = 'a';
  t[1] = 'b';
  t[2] = 'c';
  return {{"x", t}};
}

const char* kShaAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";  // FIPS 180-2

}  // namespace

TEST_CASE("save_safetensors records the SHA-256 and length of the tensor bytes in __metadata__", "[models][safetensors][integrity]") {
  const auto dir = test::scratch_dir("st_hash");
  const auto path = (dir / "abc.safetensors").string();
  // The data section is exactly the bytes "abc", whose SHA-256 is a published test vector; a
  // caller's own value for the hash keys is replaced.
  models::save_safetensors(path, abc(), {{"arch", "x"}, {models::kContentSha256Key, "forged"}});
  const std::string bytes = slurp(path);
  const uint64_t n = header_length(bytes);
  CHECK(bytes.substr(8 + n) == "abc");
  const auto j = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(j["__metadata__"]["qbench_sha256"] == kShaAbc);
  CHECK(j["__metadata__"]["qbench_data_bytes"] == "3");
  CHECK(j["__metadata__"]["arch"] == "x");
  const auto f = models::read_safetensors(path);
  CHECK(f.check.status == Integrity::Verified);
  CHECK(f.check.sha256 == kShaAbc);
  CHECK(f.check.bytes == 3);
  CHECK(f.metadata.at("arch") == "x");
  REQUIRE(f.tensors.size() == 1);
  CHECK(f.tensors[0].second[2].item<uint8_t>() == 'c');
}

TEST_CASE("read_safetensors tells verified, unhashed and corrupt files apart, and why", "[models][safetensors][integrity]") {
  const auto dir = test::scratch_dir("st_verify");
  const auto good = dir / "good.safetensors";
  at::manual_seed(3);
  models::save_safetensors(good.string(), {{"w", at::randn({16, 8})}, {"b", at::randn({16})}}, {{"format", "pt"}});
  const std::string bytes = slurp(good);
  const uint64_t n = header_length(bytes);
  REQUIRE(models::read_safetensors(good.string()).check.status == Integrity::Verified);
  auto status_of = [&](const std::string& name, const std::string& b) {
    spit(dir / name, b);
    return models::read_safetensors((dir / name).string());
  };

  SECTION("no hash: a file as PyTorch's safetensors writes it is unhashed but loads") {
    const auto f = status_of("plain.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                                           std::string(8, '\0')));
    CHECK(f.check.status == Integrity::Unhashed);
    CHECK(f.tensors.size() == 1);
  }
  SECTION("one flipped bit in a tensor") {
    std::string b = bytes;
    b[8 + n + 37] ^= 0x01;
    const auto f = status_of("flip.safetensors", b);
    CHECK(f.check.status == Integrity::Corrupt);
    CHECK_THAT(f.check.problem, Catch::Contains("flip.safetensors") && Catch::Contains("content hash mismatch"));
    CHECK(f.tensors.empty());
    CHECK_THROWS_WITH(models::load_safetensors((dir / "flip.safetensors").string()), Catch::Contains("content hash mismatch"));
  }
  SECTION("truncated in the tensor data, and by one byte") {
    const auto f = status_of("cut.safetensors", bytes.substr(0, bytes.size() - 100));
    CHECK(f.check.status == Integrity::Corrupt);
    CHECK_THAT(f.check.problem, Catch::Contains("cut.safetensors") && Catch::Contains("truncated"));
    const auto g = status_of("cut1.safetensors", bytes.substr(0, bytes.size() - 1));
    CHECK(g.check.status == Integrity::Corrupt);
  }
  SECTION("a damaged header: unparsable JSON, a wrong header length, a forged length") {
    std::string b = bytes;
    b[8] = '#';  // the opening brace
    CHECK_THAT(status_of("json.safetensors", b).check.problem, Catch::Contains("malformed safetensors header"));
    b = bytes;
    b[0] = static_cast<char>(static_cast<unsigned char>(b[0]) + 8);  // header length 8 bytes too long
    CHECK(status_of("len.safetensors", b).check.status == Integrity::Corrupt);
    // Same-length edit of the recorded byte count: the structure is sound, the length is not.
    b = bytes;
    const auto at = b.find("\"qbench_data_bytes\":\"576\"");
    REQUIRE(at != std::string::npos);
    b.replace(at + 21, 3, "577");
    CHECK_THAT(status_of("forged.safetensors", b).check.problem, Catch::Contains("holds 576 tensor bytes, its header says 577"));
    b = bytes;
    b.replace(b.find("qbench_data_bytes"), 17, "qbench_data_bytez");
    CHECK_THAT(status_of("half.safetensors", b).check.problem, Catch::Contains("only one of"));
  }
  SECTION("spans that leave a gap, overlap, or leave trailing bytes") {
    CHECK_THAT(status_of("gap.safetensors",
                         raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')))
                   .check.problem,
               Catch::Contains("leaving a gap"));
    CHECK_THAT(status_of("overlap.safetensors",
                         raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  std::string(8, '\0')))
                   .check.problem,
               Catch::Contains("overlapping"));
    CHECK_THAT(status_of("tail.safetensors",
                         raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(12, '\0')))
                   .check.problem,
               Catch::Contains("file holds 12 data bytes"));
  }
  CHECK_THROWS_AS(models::read_safetensors((dir / "absent.safetensors").string()), DataError);
}

TEST_CASE("import_weights is all or nothing: a file that does not fit leaves the model as it was", "[models][safetensors][integrity]") {
  const auto dir = test::scratch_dir("st_atomic_import");
  models::ModelSpec s{1, 10, 28, 1.0, models::Stem::Small};
  at::manual_seed(1);
  auto a = models::make_model("resnet8", s);
  auto state = models::model_state(*a);
  // The last tensor in the model's order gets a wrong shape: everything before it would fit.
  state.back().second = at::zeros({7});
  const std::string path = (dir / "misfit.safetensors").string();
  models::save_safetensors(path, state);
  at::manual_seed(2);
  auto b = models::make_model("resnet8", s);
  std::vector<at::Tensor> before;
  for (auto& [n, t] : models::model_state(*b)) before.push_back(t.clone());
  CHECK_THROWS_AS(models::import_weights(*b, path), DataError);
  std::size_t i = 0;
  for (auto& [n, t] : models::model_state(*b)) {
    INFO(n);
    CHECK(at::equal(t, before[i++]));
  }
}

TEST_CASE("a save killed half way or before its rename leaves the old checkpoint, which still verifies", "[models][safetensors][integrity][fault]") {
  const auto dir = test::scratch_dir("st_fault");
  const auto path = (dir / "b.safetensors").string();
  models::save_safetensors(path, {{"w", at::ones({64, 64})}});
  const std::string old = slurp(path);
  const models::NamedTensors fresh = {{"w", at::zeros({64, 64})}};  // made before fork: the child only writes
  for (const char* fault : {"checkpoint-mid-write", "checkpoint-before-rename"}) {
    INFO(fault);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::setenv("QBENCH_TEST_FAULT", fault, 1);
      models::save_safetensors(path, fresh);
      std::_Exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE(WIFSIGNALED(st));
    CHECK(slurp(path) == old);
    const auto f = models::read_safetensors(path);
    CHECK(f.check.status == Integrity::Verified);
    CHECK(f.tensors.at(0).second[0][0].item<float>() == 1.0f);
    // The temporary the killed writer left is never taken for the checkpoint: a half-written one
    // does not verify, and the next writer removes it.
    std::vector<fs::path> tmp;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("b.safetensors.tmp.", 0) == 0) tmp.push_back(e.path());
    REQUIRE(tmp.size() == 1);
    if (std::string(fault) == "checkpoint-mid-write") {
      CHECK(models::read_safetensors(tmp[0].string()).check.status == Integrity::Corrupt);
    }
    CHECK(remove_stale_temporaries(path) == 1);
  }
}
