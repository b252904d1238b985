// Crash-safe cache files: incremental SHA-256, atomic writes (and what a write killed half way or
// before its rename leaves), moving damaged files aside, and the flock lock across processes.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"
#include "test_util.h"

namespace fs = std::filesystem;
using qbench::test::slurp;
using qbench::test::spit;
using namespace qbench;

namespace {

std::vector<fs::path> temporaries_of(const fs::path& p) {
  std::vector<fs::path> out;
  const std::string prefix = p.filename().string() + ".tmp.";
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  return out;
}

// Runs `f` in a child process; returns its wait status.
template <typename F>
int in_child(F f) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    f();
    std::_Exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST_CASE("incremental SHA-256 gives the FIPS digests whatever the pieces", "[common][sha256]") {
  Sha256 h;
  h.update("a", 1);
  h.update("bc", 2);
  CHECK(h.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // One million 'a' in pieces of 7 bytes (never aligned to the 64-byte block).
  const std::string seven(7, 'a');
  for (int i = 0; i < 142857; ++i) h.update(seven.data(), 7);
  h.update("a", 1);
  CHECK(h.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // hex_digest resets: the empty string next.
  CHECK(h.hex_digest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Pieces straddling a block boundary (55 + 9 bytes of 'x' = 64).
  h.update(std::string(55, 'x').data(), 55);
  h.update(std::string(9, 'x').data(), 9);
  CHECK(h.hex_digest() == "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
}

TEST_CASE("atomic_write_file writes, replaces and leaves no temporary", "[common][files]") {
  const auto dir = test::scratch_dir("atomic_write");
  const auto p = dir / "sub" / "f.bin";  // the folder is created
  atomic_write_file(p.string(), std::string("first"));
  CHECK(slurp(p) == "first");
  const std::string a = "0123", b = "456789";
  atomic_write_file(p.string(), {ByteSpan{a.data(), a.size()}, ByteSpan{b.data(), b.size()}});
  CHECK(slurp(p) == "0123456789");
  CHECK(temporaries_of(p).empty());
  CHECK_THROWS_AS(atomic_write_file((p / "below-a-file").string(), std::string("x")), Error);  // p is a file
}

TEST_CASE("a write killed half way or before its rename leaves the old file whole", "[common][files][fault]") {
  const auto dir = test::scratch_dir("atomic_fault");
  const auto p = dir / "ckpt.bin";
  atomic_write_file(p.string(), std::string("old contents"));
  const std::string fresh(1000, 'N');

  SECTION("mid-write") {
    const int st = in_child([&] {
      ::setenv("QBENCH_TEST_FAULT", "checkpoint-mid-write", 1);
      const std::string a = fresh.substr(0, 300), b = fresh.substr(300);
      atomic_write_file(p.string(), {ByteSpan{a.data(), a.size()}, ByteSpan{b.data(), b.size()}}, "checkpoint");
    });
    REQUIRE(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
    CHECK(slurp(p) == "old contents");
    const auto tmp = temporaries_of(p);
    REQUIRE(tmp.size() == 1);
    CHECK(fs::file_size(tmp[0]) == 500);  // half of the 1000 bytes, split inside the second piece
    CHECK(remove_stale_temporaries(p.string()) == 1);
    CHECK(temporaries_of(p).empty());
    CHECK(slurp(p) == "old contents");
  }
  SECTION("before-rename") {
    const int st = in_child([&] {
      ::setenv("QBENCH_TEST_FAULT", "checkpoint-before-rename", 1);
      atomic_write_file(p.string(), fresh, "checkpoint");
    });
    REQUIRE(WIFSIGNALED(st));
    CHECK(slurp(p) == "old contents");
    const auto tmp = temporaries_of(p);
    REQUIRE(tmp.size() == 1);
    CHECK(slurp(tmp[0]) == fresh);
  }
  SECTION("a fault for another file or another tag does not fire") {
    for (const char* spec : {"checkpoint-mid-write:other.bin", "weights-mid-write", "checkpoint-never"}) {
      const int st = in_child([&] {
        ::setenv("QBENCH_TEST_FAULT", spec, 1);
        atomic_write_file(p.string(), fresh, "checkpoint");
      });
      CHECK(WIFEXITED(st));
      CHECK(slurp(p) == fresh);
      atomic_write_file(p.string(), std::string("old contents"));
    }
    // A qualifier that names this file fires.
    const int st = in_child([&] {
      ::setenv("QBENCH_TEST_FAULT", "checkpoint-before-rename:ckpt.bin", 1);
      atomic_write_file(p.string(), fresh, "checkpoint");
    });
    CHECK(WIFSIGNALED(st));
    CHECK(slurp(p) == "old contents");
  }
}

TEST_CASE("move_aside keeps every damaged copy", "[common][files]") {
  const auto dir = test::scratch_dir("move_aside");
  const auto p = dir / "x.safetensors";
  std::ofstream(p) << "one";
  CHECK(move_aside(p.string()) == p.string() + ".corrupt");
  CHECK(!fs::exists(p));
  std::ofstream(p) << "two";
  CHECK(move_aside(p.string()) == p.string() + ".corrupt.1");
  CHECK(slurp(p.string() + ".corrupt") == "one");
  CHECK(slurp(p.string() + ".corrupt.1") == "two");
  CHECK_THROWS_AS(move_aside((dir / "absent").string()), Error);
}

TEST_CASE("FileLock excludes other holders, in this process and in others", "[common][files][lock]") {
  const auto dir = test::scratch_dir("file_lock");
  const std::string lock = (dir / "k.lock").string();
  {
    auto held = FileLock::try_acquire(lock);
    REQUIRE(held);
    CHECK(fs::exists(lock));
    CHECK_FALSE(FileLock::try_acquire(lock));  // a second open file of the same path
    // Another process cannot take it either (exit code 1 = it could not).
    const int st = in_child([&] { std::_Exit(FileLock::try_acquire(lock) ? 0 : 1); });
    CHECK(WEXITSTATUS(st) == 1);
  }
  CHECK_FALSE(fs::exists(lock));  // removed on release
  CHECK(FileLock::try_acquire(lock));
}

TEST_CASE("FileLock::acquire waits for the holder, and a killed holder releases it", "[common][files][lock]") {
  const auto dir = test::scratch_dir("file_lock_wait");
  const std::string lock = (dir / "k.lock").string();
  int pipe_fd[2];
  REQUIRE(::pipe(pipe_fd) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // holds the lock, says so, then sleeps until killed
    auto l = FileLock::try_acquire(lock);
    const char c = l ? 'y' : 'n';
    (void)!::write(pipe_fd[1], &c, 1);
    for (;;) ::pause();
  }
  char c = 0;
  REQUIRE(::read(pipe_fd[0], &c, 1) == 1);
  REQUIRE(c == 'y');
  int waited = 0, polls = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(pid, SIGKILL);
  });
  auto l = FileLock::acquire(lock, [&] { ++waited; }, [&] { ++polls; }, 20);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  killer.join();
  ::waitpid(pid, nullptr, 0);
  CHECK(waited == 1);
  CHECK(polls >= 3);
  CHECK(s >= 0.25);
  ::close(pipe_fd[0]);
  ::close(pipe_fd[1]);
  // A poll that throws ends the wait.
  CHECK_THROWS_WITH(FileLock::acquire(lock, {}, [] { throw Error("stop waiting"); }, 5), "stop waiting");
}
