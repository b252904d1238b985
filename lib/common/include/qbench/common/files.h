#pragma once
// Crash-safe files for the cache (no LibTorch): atomic writes (temporary file in the same folder,
// fsync, rename, fsync of the folder), moving a damaged file aside, an advisory flock(2) lock per
// artefact, the integrity verdict every verifying loader returns, and the test-only fault hook
// (QBENCH_TEST_FAULT) that stops the process in the middle of a write.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qbench {

/// One piece of a file's bytes; atomic_write_file writes the pieces one after another.
struct ByteSpan {
  const void* data;
  std::size_t size;
};

/// Writes `path` so that a reader sees the old file or the whole new one, never a part, even if
/// the process or the machine dies: the bytes go to a new temporary file in the same folder
/// (temporary_prefix(path) + "<pid>.<n>"), which is fsynced and renamed over `path`; then the
/// folder is fsynced so the rename itself is durable. The folder is created when missing. Throws
/// qbench::Error naming the file (and errno's text) when any step fails; the temporary is removed.
/// `fault_tag` names the write for the test-only fault hook (see test_fault_point).
void atomic_write_file(const std::string& path, const std::vector<ByteSpan>& parts,
                       const std::string& fault_tag = "");
void atomic_write_file(const std::string& path, const std::string& bytes, const std::string& fault_tag = "");

/// "<path>.tmp." : every temporary atomic_write_file makes for `path` starts with it.
std::string temporary_prefix(const std::string& path);

/// Deletes the temporaries of `path` that a killed writer left behind (those whose writer process,
/// named in the temporary's name, is no longer alive); returns how many.
int remove_stale_temporaries(const std::string& path);
/// The same for every file's temporaries in folder `dir`.
int remove_stale_temporaries_in(const std::string& dir);

/// fsync(2) of a folder, so that entries created, renamed or removed in it survive a crash.
void fsync_directory(const std::string& dir);

/// Renames a damaged file out of the way, keeping it: to "<path><suffix>", or "<path><suffix>.1",
/// ".2", ... when that name is taken (an earlier damaged copy is never overwritten). Returns the new
/// path. Throws qbench::Error when the rename fails.
std::string move_aside(const std::string& path, const std::string& suffix = ".corrupt");

/// The test-only fault hook. When the environment variable QBENCH_TEST_FAULT is
/// "<tag>-<stage>" or "<tag>-<stage>:<text>" (and `path` contains <text>), the process prints one
/// line naming the fault and the file to stderr and kills itself with SIGKILL, as a crash would:
/// nothing is flushed, no destructor runs. Stages used by atomic_write_file: "mid-write" (half of
/// the bytes are in the temporary file) and "before-rename" (the temporary is whole and synced, the
/// rename has not happened). Does nothing when the variable is unset or `tag` is empty.
void test_fault_point(const std::string& tag, const std::string& stage, const std::string& path);

/// An advisory, exclusive flock(2) lock on a lock file (created when missing), held while the
/// object lives, e.g. by the one process that builds a cached artefact while others wait for it.
/// The lock belongs to the open file, so two FileLocks on one path exclude each other even in one
/// process; the kernel releases it when the process dies, so a crash never leaves it held. The lock
/// file is removed on release; a waiter that then holds a lock on the removed file notices (its
/// inode is no longer the path's) and locks the path again.
class FileLock {
 public:
  /// Takes the lock if nobody holds it; std::nullopt otherwise.
  static std::optional<FileLock> try_acquire(const std::string& path);
  /// Takes the lock, waiting for its holder: when the first attempt fails `on_wait` is called once,
  /// then `poll` every `poll_ms` milliseconds between attempts (it may throw, e.g. Interrupted, to
  /// stop waiting).
  static FileLock acquire(const std::string& path, const std::function<void()>& on_wait = {},
                          const std::function<void()>& poll = {}, int poll_ms = 100);
  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();
  const std::string& path() const { return path_; }
  /// Releases the lock now (the destructor does it otherwise).
  void release();

 private:
  FileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

/// What a verifying load found in a cached or imported file.
enum class Integrity {
  Verified,  ///< it carries a qbench content hash and byte length, and both match
  Unhashed,  ///< structurally sound, but no qbench hash (written before hashes, or by another tool)
  Corrupt,   ///< damaged: `problem` says what is wrong
};
const char* integrity_name(Integrity i);

struct IntegrityCheck {
  Integrity status = Integrity::Corrupt;
  std::string problem;  ///< Corrupt: the file and what is wrong
  std::string sha256;   ///< of the hashed bytes as read ("" when they could not be read)
  int64_t bytes = 0;    ///< length of the hashed bytes as read
};

}  // namespace qbench
