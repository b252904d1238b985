// The work directory: paths, files written atomically, submissions and their key lists.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/common/files.h"

namespace qbench::cluster::detail {
namespace fs = std::filesystem;

std::string path_in(const std::string& workdir, const std::string& rel) { return (fs::path(workdir) / rel).string(); }

std::string submission_dir(const std::string& workdir, int number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%03d", number);
  return path_in(workdir, std::string("submissions/") + buf);
}

std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' || c == '-' || c == ':' ||
          c == '=' || c == ',' || c == '+' || c == '%' || c == '@'))
      plain = false;
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void write_file(const std::string& path, const std::string& text) { atomic_write_file(path, text); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot read");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

nlohmann::json Submission::to_json() const {
  nlohmann::json j;
  j["number"] = number;
  j["backend"] = backend;
  j["created_at"] = created_at;
  j["partition"] = partition;
  j["time"] = time;
  j["array_parallelism"] = array_parallelism;
  j["gpus_per_task"] = gpus_per_task;
  j["jobs"] = jobs;
  j["sbatch_args"] = sbatch_args;
  j["requeue"] = requeue;
  j["local_dir"] = local_dir;
  j["device"] = device;
  j["driver_host"] = driver_host;
  j["driver_pid"] = driver_pid;
  nlohmann::json arr = nlohmann::json::object();
  for (const auto& [name, a] : arrays) arr[name] = {{"count", a.count}, {"job_id", a.job_id}, {"command", a.command}};
  j["arrays"] = arr;
  return j;
}

Submission Submission::from_json(const nlohmann::json& j) {
  Submission s;
  s.number = j.at("number").get<int>();
  s.backend = j.at("backend").get<std::string>();
  s.created_at = j.value("created_at", "");
  s.partition = j.value("partition", "");
  s.time = j.value("time", "");
  s.array_parallelism = j.value("array_parallelism", 0);
  s.gpus_per_task = j.value("gpus_per_task", 0);
  s.jobs = j.value("jobs", 1);
  s.sbatch_args = j.value("sbatch_args", std::vector<std::string>{});
  s.requeue = j.value("requeue", false);
  s.local_dir = j.value("local_dir", "");
  s.device = j.value("device", "cpu");
  s.driver_host = j.value("driver_host", "");
  s.driver_pid = j.value("driver_pid", 0);
  if (j.contains("arrays"))
    for (const auto& [name, a] : j.at("arrays").items())
      s.arrays[name] = {a.value("count", 0), a.value("job_id", ""), a.value("command", "")};
  return s;
}

std::vector<Submission> load_submissions(const std::string& workdir) {
  std::vector<Submission> out;
  const fs::path dir = path_in(workdir, "submissions");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (fs::is_regular_file(e.path() / "submission.json")) files.push_back(e.path() / "submission.json");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    try {
      out.push_back(Submission::from_json(nlohmann::json::parse(read_file(f.string()))));
    } catch (const nlohmann::json::exception& e) {
      throw Error(f.string() + ": malformed submission record: " + e.what());
    }
  }
  return out;
}

void save_submission(const std::string& workdir, const Submission& s) {
  write_file(submission_dir(workdir, s.number) + "/submission.json", s.to_json().dump(2) + "\n");
}

std::vector<std::string> load_keys(const std::string& workdir, int submission, const std::string& array) {
  const std::string path = submission_dir(workdir, submission) + "/" + array + ".keys";
  std::istringstream in(read_file(path));
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) keys.push_back(line);
  return keys;
}

}  // namespace qbench::cluster::detail
