// Common helpers: SHA-256 (cell keys depend on it being exactly FIPS 180-4), edit distance and
// "did you mean", the Registry template and ConfigError's message format.
#include <catch2/catch.hpp>

#include <string>

#include "qbench/common/errors.h"
#include "qbench/common/registry.h"
#include "qbench/common/strings.h"

using qbench::sha256_hex;

TEST_CASE("sha256_hex matches the FIPS 180-2 test vectors", "[common][sha256]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
                   "nopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256_hex pads correctly around the 64-byte block boundary", "[common][sha256]") {
  // Reference digests from Python's hashlib: lengths where the length field spills into a second block.
  CHECK(sha256_hex(std::string(55, 'x')) == "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
  CHECK(sha256_hex(std::string(56, 'x')) == "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
  CHECK(sha256_hex(std::string(63, 'x')) == "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2");
  CHECK(sha256_hex(std::string(64, 'x')) == "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
  CHECK(sha256_hex(std::string(65, 'x')) == "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9");
  CHECK(sha256_hex(std::string(119, 'x')) == "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c");
  CHECK(sha256_hex(std::string(120, 'x')) == "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98");
}

TEST_CASE("sha256_hex hashes bytes, including NUL and high bytes", "[common][sha256]") {
  std::string with_nul("a\0b", 3);
  CHECK(sha256_hex(with_nul) != sha256_hex("a"));
  CHECK(sha256_hex(with_nul) != sha256_hex("ab"));
  std::string high("\xff\x80", 2);
  CHECK(sha256_hex(high).size() == 64);
  CHECK(sha256_hex(high) != sha256_hex(std::string("\x7f\x00", 2)));
}

TEST_CASE("edit_distance is the Levenshtein distance", "[common][strings]") {
  CHECK(qbench::edit_distance("", "") == 0);
  CHECK(qbench::edit_distance("abc", "") == 3);
  CHECK(qbench::edit_distance("", "abc") == 3);
  CHECK(qbench::edit_distance("kitten", "sitting") == 3);
  CHECK(qbench::edit_distance("flaw", "lawn") == 2);
  CHECK(qbench::edit_distance("minmx", "minmax") == 1);
  CHECK(qbench::edit_distance("lsq", "lqs") == 2);
  CHECK(qbench::edit_distance("resnet20", "resnet20") == 0);
}

TEST_CASE("closest_names ranks by distance and honours prefixes and the limit", "[common][strings]") {
  std::vector<std::string> names = {"minmax", "percentile", "lsq", "lsq+", "mse", "adaround"};
  CHECK(qbench::closest_names("minmx", names) == std::vector<std::string>{"minmax"});
  CHECK(qbench::closest_names("lsqq", names) == std::vector<std::string>{"lsq", "lsq+"});
  CHECK(qbench::closest_names("zzzzzzzz", names).empty());
  // "ada" is far from "adaround" in edits but a prefix of it.
  CHECK(qbench::closest_names("ada", names) == std::vector<std::string>{"adaround"});
  CHECK(qbench::closest_names("ls", names, 1).size() == 1);
}

TEST_CASE("did_you_mean formats the suggestion or lists what is known", "[common][strings]") {
  std::vector<std::string> names = {"minmax", "lsq"};
  CHECK(qbench::did_you_mean("minmx", names) == " (did you mean: minmax?)");
  CHECK(qbench::did_you_mean("qqqqqqqqqq", names) == " (known: minmax, lsq)");
  CHECK(qbench::did_you_mean("x", {}) == "");
  CHECK(qbench::join({"a", "b", "c"}, ", ") == "a, b, c");
  CHECK(qbench::join({}, ", ") == "");
}

TEST_CASE("Registry keeps registration order and rejects unknown and duplicate names", "[common][registry]") {
  qbench::Registry<int> reg("algorithm");
  reg.add("minmax", 1);
  reg.add("lsq", 2);
  reg.add("adaround", 3);
  CHECK(reg.kind() == "algorithm");
  CHECK(reg.contains("lsq"));
  CHECK_FALSE(reg.contains("lsqq"));
  CHECK(reg.get("minmax") == 1);
  CHECK(reg.get("adaround") == 3);
  CHECK(reg.names() == std::vector<std::string>{"minmax", "lsq", "adaround"});
  REQUIRE(reg.entries().size() == 3);
  CHECK(reg.entries()[1].first == "lsq");

  try {
    reg.get("minmx");
    FAIL("get of an unknown name did not throw");
  } catch (const qbench::UnknownNameError& e) {
    CHECK(std::string(e.what()) == "unknown algorithm 'minmx' (did you mean: minmax?)");
  }
  // UnknownNameError is a ConfigError, so main maps it to exit code 2.
  CHECK_THROWS_AS(reg.get("nope"), qbench::ConfigError);
  CHECK_THROWS_WITH(reg.add("lsq", 9), "algorithm 'lsq' registered twice");
  CHECK(reg.get("lsq") == 2);
}

TEST_CASE("ConfigError formats file:line:column: key.path: message", "[common][errors]") {
  qbench::ConfigError full("academic.yaml", 14, 7, "matrix.bits[2]", "expected 2..8, got 16");
  CHECK(std::string(full.what()) == "academic.yaml:14:7: matrix.bits[2]: expected 2..8, got 16");
  CHECK(full.file() == "academic.yaml");
  CHECK(full.line() == 14);
  CHECK(full.column() == 7);
  CHECK(full.key_path() == "matrix.bits[2]");
  CHECK(full.message() == "expected 2..8, got 16");

  CHECK(std::string(qbench::ConfigError("m.yaml", 3, 0, "name", "bad").what()) == "m.yaml:3: name: bad");
  CHECK(std::string(qbench::ConfigError("m.yaml", 0, 0, "", "not found").what()) == "m.yaml: not found");
  CHECK(std::string(qbench::ConfigError("m.yaml", 2, 5, "", "syntax").what()) == "m.yaml:2:5: syntax");
  CHECK(std::string(qbench::ConfigError("plain message").what()) == "plain message");

  // Every project error is a qbench::Error, the one type main catches.
  CHECK_THROWS_AS(throw qbench::ConfigError("f", 1, 1, "k", "m"), qbench::Error);
}
