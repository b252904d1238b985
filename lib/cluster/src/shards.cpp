// Shards: one finished task's store each, published into <workdir>/shards/ atomically and read
// back (read-only) by status, resume, the tasks' checks and merge.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"

namespace qbench::cluster::detail {
namespace fs = std::filesystem;

std::vector<std::string> shard_files(const Plan& plan) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(plan.shards_dir(), ec)) {
    const std::string name = e.path().filename().string();
    // Hidden names are temporaries of a publication in progress (or of one killed half way).
    if (name.empty() || name[0] == '.' || e.path().extension() != ".db") continue;
    if (!e.is_regular_file(ec)) continue;
    out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<ShardResult> read_shards(const Plan& plan, const std::string& key_prefix,
                                     std::vector<std::string>* unreadable) {
  std::vector<ShardResult> out;
  for (const auto& file : shard_files(plan)) {
    if (!key_prefix.empty() && fs::path(file).filename().string().rfind(key_prefix, 0) != 0) continue;
    try {
      const auto contents = store::Store::read_contents(file);
      for (const auto& r : contents.results) {
        ShardResult s;
        s.file = file;
        s.cell_key = r.cell_key;
        s.status = r.status;
        s.error = r.error;
        s.finished_at = r.finished_at;
        s.top1 = r.top1;
        s.top5 = r.top5;
        s.loss = r.loss;
        for (const auto& run : contents.runs)
          if (run.id == r.run_id) {
            s.origin = run.origin;
            s.host = run.host;
          }
        out.push_back(std::move(s));
      }
    } catch (const Error& e) {
      if (unreadable) unreadable->push_back(file + ": " + e.what());
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const ShardResult& a, const ShardResult& b) { return a.finished_at < b.finished_at; });
  return out;
}

std::string publish_shard(const std::string& local, const Plan& plan, const std::string& name,
                          const store::RunOrigin& origin) {
  const std::string dir = plan.shards_dir();
  fs::create_directories(dir);
  const std::string final_path = (fs::path(dir) / name).string();
  const std::string tmp =
      (fs::path(dir) / ("." + name + ".tmp." + host_name() + "." + std::to_string(::getpid()))).string();
  fs::remove(tmp);
  {
    store::Store s(local);
    for (const auto& run : s.runs()) s.set_run_origin(run.id, origin);
    s.copy_to(tmp);  // one self-contained file, written on the shared folder under a hidden name
  }
  test_fault_point("shard", "before-rename", final_path);
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    fs::remove(tmp);
    throw Error("cannot sync the shard " + tmp + ": " + why);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    fs::remove(tmp);
    throw Error("cannot publish the shard as " + final_path + ": " + why);
  }
  fsync_directory(dir);
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(local + suffix, ec);
  return final_path;
}

}  // namespace qbench::cluster::detail
