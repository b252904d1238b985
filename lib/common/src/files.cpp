#include "qbench/common/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "qbench/common/errors.h"

namespace qbench {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

fs::path folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

void ensure_folder(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);  // a failure shows up as the open's error
}

// write(2) until done (short writes, EINTR); false with errno set on failure.
bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

std::string temporary_prefix(const std::string& path) { return path + ".tmp."; }

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(dir + ": cannot open folder to sync it: " + errno_text(errno));
  const int r = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  // Some file systems cannot sync a folder (EINVAL); the rename is still atomic there.
  if (r != 0 && e != EINVAL) throw Error(dir + ": fsync of the folder failed: " + errno_text(e));
}

void test_fault_point(const std::string& tag, const std::string& stage, const std::string& path) {
  if (tag.empty()) return;
  const char* env = std::getenv("QBENCH_TEST_FAULT");
  if (!env || !*env) return;
  const std::string spec = env, want = tag + "-" + stage;
  bool fire = spec == want;
  if (!fire && spec.size() > want.size() + 1 && spec.compare(0, want.size() + 1, want + ":") == 0)
    fire = path.find(spec.substr(want.size() + 1)) != std::string::npos;
  if (!fire) return;
  std::fprintf(stderr, "qbench: QBENCH_TEST_FAULT=%s: killing the process at %s of %s\n", spec.c_str(),
               stage.c_str(), path.c_str());
  std::fflush(stderr);
  ::raise(SIGKILL);
  std::_Exit(137);
}

void atomic_write_file(const std::string& path, const std::vector<ByteSpan>& parts, const std::string& fault_tag) {
  static std::atomic<unsigned> counter{0};
  const fs::path dir = folder_of(path);
  ensure_folder(dir);
  const std::string tmp =
      temporary_prefix(path) + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0 && errno == ENOENT) {  // the folder went away (another process cleaned it up): once more
    ensure_folder(dir);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  }
  if (fd < 0) throw Error(path + ": cannot create the temporary file " + tmp + ": " + errno_text(errno));
  auto fail = [&](const std::string& what, int e) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": " + what + " (temporary file " + tmp + "): " + errno_text(e));
  };
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size;
  const std::size_t half = total / 2;
  std::size_t done = 0;
  bool mid_passed = false;
  for (const auto& p : parts) {
    const char* data = static_cast<const char*>(p.data);
    std::size_t n = p.size;
    if (!mid_passed && done + n >= half) {  // the piece that crosses the middle: split it there
      const std::size_t first = half - done;
      if (!write_all(fd, data, first)) fail("write failed", errno);
      test_fault_point(fault_tag, "mid-write", path);
      mid_passed = true;
      data += first;
      n -= first;
      done += first;
    }
    if (!write_all(fd, data, n)) fail("write failed", errno);
    done += n;
  }
  if (::fsync(fd) != 0) fail("fsync failed", errno);
  if (::close(fd) != 0) {
    fd = -1;
    fail("close failed", errno);
  }
  fd = -1;
  test_fault_point(fault_tag, "before-rename", path);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename onto the file failed", errno);
  fsync_directory(dir.string());
}

void atomic_write_file(const std::string& path, const std::string& bytes, const std::string& fault_tag) {
  atomic_write_file(path, {ByteSpan{bytes.data(), bytes.size()}}, fault_tag);
}

namespace {

// "<anything>.tmp.<pid>.<n>" -> pid, or -1 when `name` is not a temporary's name.
long temporary_pid(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return -1;
  const auto pid_dot = name.rfind('.', dot - 1);
  if (pid_dot == std::string::npos || pid_dot < 4 || name.compare(pid_dot - 4, 4, ".tmp") != 0) return -1;
  const std::string pid = name.substr(pid_dot + 1, dot - pid_dot - 1), n = name.substr(dot + 1);
  auto digits = [](const std::string& s) {
    return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(pid) || !digits(n)) return -1;
  return std::stol(pid);
}

bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

int remove_dead_temporaries(const fs::path& dir, const std::string& prefix) {
  int removed = 0;
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = temporary_pid(name);
    if (pid > 0 && !process_alive(pid)) stale.push_back(it->path());
  }
  for (const auto& p : stale)
    if (fs::remove(p, ec)) ++removed;
  return removed;
}

}  // namespace

int remove_stale_temporaries(const std::string& path) {
  return remove_dead_temporaries(folder_of(path), fs::path(temporary_prefix(path)).filename().string());
}

int remove_stale_temporaries_in(const std::string& dir) { return remove_dead_temporaries(dir, ""); }

std::string move_aside(const std::string& path, const std::string& suffix) {
  for (int i = 0; i < 10000; ++i) {
    const std::string target = path + suffix + (i ? "." + std::to_string(i) : std::string());
    // link(2) fails when the name is taken, so an earlier copy is never replaced.
    if (::link(path.c_str(), target.c_str()) == 0) {
      if (::unlink(path.c_str()) != 0) throw Error(path + ": cannot remove it after copying it to " + target + ": " + errno_text(errno));
      fsync_directory(folder_of(path).string());
      return target;
    }
    if (errno == EEXIST) continue;
    // A file system without hard links: rename, after checking the name is free.
    if (errno == EPERM || errno == EXDEV || errno == ENOTSUP || errno == EOPNOTSUPP) {
      if (fs::exists(target)) continue;
      if (::rename(path.c_str(), target.c_str()) != 0)
        throw Error(path + ": cannot move it aside to " + target + ": " + errno_text(errno));
      fsync_directory(folder_of(path).string());
      return target;
    }
    throw Error(path + ": cannot move it aside to " + target + ": " + errno_text(errno));
  }
  throw Error(path + ": cannot move it aside: too many earlier copies named " + path + suffix + ".N");
}

// ---- FileLock ------------------------------------------------------------------------------------

std::optional<FileLock> FileLock::try_acquire(const std::string& path) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0 && errno == ENOENT) {
      ensure_folder(folder_of(path));
      fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    }
    if (fd < 0) throw Error(path + ": cannot open the lock file: " + errno_text(errno));
    int r;
    do r = ::flock(fd, LOCK_EX | LOCK_NB);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
      const int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK) return std::nullopt;
      throw Error(path + ": cannot lock the lock file: " + errno_text(e));
    }
    // The holder before us removes the file when it releases: if what we locked is no longer
    // the file at `path`, lock the path's current file instead.
    struct stat held{}, now{};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev)
      return FileLock(fd, path);
    ::close(fd);
  }
  throw Error(path + ": cannot lock the lock file: it keeps being replaced");
}

FileLock FileLock::acquire(const std::string& path, const std::function<void()>& on_wait,
                           const std::function<void()>& poll, int poll_ms) {
  if (auto l = try_acquire(path)) return std::move(*l);
  if (on_wait) on_wait();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    if (poll) poll();
    if (auto l = try_acquire(path)) return std::move(*l);
  }
}

FileLock::FileLock(FileLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still holding it: see try_acquire
  ::close(fd_);
  fd_ = -1;
}

const char* integrity_name(Integrity i) {
  switch (i) {
    case Integrity::Verified: return "verified";
    case Integrity::Unhashed: return "unhashed";
    case Integrity::Corrupt: return "corrupt";
  }
  return "?";
}

}  // namespace qbench
