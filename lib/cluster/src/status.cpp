// qbench status: the plan's cells from the published shards, squeue (Slurm submissions) and the
// running markers of local tasks. No accounting (sacct) is needed.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "internal.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::cluster {
namespace fs = std::filesystem;
using namespace detail;

namespace detail {

std::vector<QueuedTask> queued_tasks(const Plan& plan, const std::vector<Submission>& subs, std::string* note) {
  std::map<std::string, std::pair<int, std::string>> by_job;  // array job id -> (submission, array)
  std::vector<std::string> ids;
  for (const auto& s : subs) {
    if (s.backend != "slurm") continue;
    for (const auto& [array, a] : s.arrays)
      if (!a.job_id.empty()) {
        by_job[a.job_id] = {s.number, array};
        ids.push_back(a.job_id);
      }
  }
  std::vector<QueuedTask> out;
  if (ids.empty()) return out;
  std::map<std::pair<int, std::string>, std::vector<std::string>> keys;
  for (const auto& e : query_queue(ids, note)) {
    auto it = by_job.find(e.array_job_id);
    if (it == by_job.end()) continue;
    auto& k = keys[it->second];
    if (k.empty()) k = load_keys(plan.workdir, it->second.first, it->second.second);
    int index = -1;
    try {
      index = std::stoi(e.task_id);
    } catch (const std::exception&) {
      continue;  // "N/A": not an array task
    }
    if (index < 0 || index >= static_cast<int>(k.size())) continue;
    QueuedTask t;
    t.key = k[index];
    t.submission = it->second.first;
    t.array = it->second.second;
    t.job = e.array_job_id + "_" + e.task_id;
    t.entry = e;
    out.push_back(std::move(t));
  }
  std::stable_sort(out.begin(), out.end(), [](const QueuedTask& a, const QueuedTask& b) { return a.submission < b.submission; });
  return out;
}

}  // namespace detail

namespace {

std::string job_of(const ShardResult& r) {
  const auto& o = r.origin;
  if (o.scheduler == "slurm")
    return "slurm job " + (o.array_job_id.empty() ? o.job_id : o.array_job_id + "_" + o.array_task_id + " (" + o.job_id + ")");
  return o.scheduler + " " + o.job_id + " task " + o.array_job_id + "/" + o.array_task_id;
}

struct Marker {
  std::string host, job;
  int pid = 0;
  long long started = 0;
};

std::map<std::string, Marker> running_markers(const Plan& plan) {
  std::map<std::string, Marker> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(path_in(plan.workdir, "running"), ec)) {
    if (e.path().extension() != ".json" || e.path().filename().string()[0] == '.') continue;
    try {
      const auto j = nlohmann::json::parse(read_file(e.path().string()));
      Marker m;
      m.host = j.value("host", "");
      m.job = j.value("job", "");
      m.pid = j.value("pid", 0);
      m.started = j.value("started", 0LL);
      out[e.path().stem().string()] = m;
    } catch (const std::exception&) {
      // a marker being written or removed: not a running task we can describe
    }
  }
  return out;
}

std::string elapsed_since(long long started) {
  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const long long s = std::max(0LL, now - started);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

}  // namespace

Status collect_status(const Plan& plan) {
  Status st;
  const auto subs = load_submissions(plan.workdir);
  st.submissions = static_cast<int>(subs.size());
  std::vector<std::string> unreadable;
  const auto shards = read_shards(plan, "", &unreadable);
  for (const auto& u : unreadable) st.notes.push_back("unreadable shard " + u);
  std::map<std::string, const ShardResult*> ok, failed;
  std::map<std::string, int> attempts;
  for (const auto& r : shards) {  // oldest first
    ++attempts[r.cell_key];
    if (r.status == "ok") {
      if (!ok.count(r.cell_key)) ok[r.cell_key] = &r;
    } else {
      failed[r.cell_key] = &r;
    }
  }
  std::string note;
  std::map<std::string, QueuedTask> queued;  // the latest submission's task per cell
  for (auto& t : queued_tasks(plan, subs, &note)) {
    auto it = queued.find(t.key);
    if (it == queued.end() || t.submission >= it->second.submission) queued[t.key] = t;
  }
  if (!note.empty()) st.notes.push_back(note);
  const auto markers = running_markers(plan);
  const std::string here = host_name();
  bool local_driver = false;
  for (const auto& s : subs)
    if (s.backend == "local" && s.driver_pid && s.driver_host == here && process_alive(s.driver_pid)) local_driver = true;

  for (const auto& c : plan.cells) {
    CellState cs;
    cs.cell = &c;
    cs.attempts = attempts[c.key];
    const auto q = queued.find(c.key);
    const auto m = markers.find(c.key);
    const bool marker_live =
        m != markers.end() && (m->second.host != here || process_alive(m->second.pid));
    if (auto it = ok.find(c.key); it != ok.end()) {
      cs.state = "done";
      cs.top1 = it->second->top1;
      cs.job = job_of(*it->second);
      cs.node = it->second->host;
    } else if (q != queued.end() && q->second.entry.active()) {
      const auto& e = q->second.entry;
      const bool runs = e.state == "RUNNING" || e.state == "COMPLETING" || e.state == "CONFIGURING";
      cs.state = runs ? "running" : "pending";
      cs.job = "slurm job " + q->second.job;
      cs.node = e.nodes;
      cs.elapsed = e.elapsed;
      cs.reason = runs ? "" : (e.state == "PENDING" ? e.reason : e.state);
    } else if (marker_live) {
      cs.state = "running";
      cs.job = m->second.job;
      cs.node = m->second.host;
      cs.elapsed = elapsed_since(m->second.started);
    } else if (auto f = failed.find(c.key); f != failed.end()) {
      cs.state = "failed";
      cs.error = f->second->error;
      cs.job = job_of(*f->second);
      cs.node = f->second->host;
    } else if (local_driver) {
      cs.state = "pending";
      cs.reason = "waiting for a local process";
    } else {
      cs.state = "missing";
      if (q != queued.end()) {
        cs.job = "slurm job " + q->second.job;
        cs.node = q->second.entry.nodes;
        cs.error = "its task ended " + q->second.entry.state + " without a result";
      } else {
        cs.error = "no result and nothing queued (never submitted, or its task was lost)";
      }
    }
    if (cs.state == "done") ++st.done;
    else if (cs.state == "failed") ++st.failed;
    else if (cs.state == "running") ++st.running;
    else if (cs.state == "pending") ++st.pending;
    else ++st.missing;
    st.cells.push_back(std::move(cs));
  }
  int temporaries = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(plan.shards_dir(), ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.' && name.find(".tmp.") != std::string::npos) ++temporaries;
  }
  if (temporaries)
    st.notes.push_back(std::to_string(temporaries) + " temporary file(s) in " + plan.shards_dir() +
                       " from publications in progress or killed half way (never merged; delete them once no task runs)");
  return st;
}

std::string render_status(const Plan& plan, const Status& s) {
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "plan '%s' (%s) in %s: %zu cells (%d baselines), %d submission(s)\n", plan.name.c_str(),
                plan.id.substr(0, 8).c_str(), plan.workdir.c_str(), plan.cells.size(), plan.baselines(), s.submissions);
  out += buf;
  std::snprintf(buf, sizeof buf, "done %d, failed %d, running %d, pending %d, missing %d\n", s.done, s.failed, s.running,
                s.pending, s.missing);
  out += buf;
  std::size_t width = 0;
  for (const auto& c : s.cells) width = std::max(width, c.cell->label.size());
  for (const auto& c : s.cells) {
    std::string detail;
    if (c.state == "done") {
      char t[32];
      std::snprintf(t, sizeof t, "top-1 %.2f", c.top1.value_or(0));
      detail = std::string(c.top1 ? t : "top-1 n/a") + "  " + c.job + " on " + c.node;
    } else if (c.state == "failed") {
      detail = c.error + "  (" + c.job + " on " + c.node + (c.attempts > 1 ? ", " + std::to_string(c.attempts) + " attempts" : "") + ")";
    } else if (c.state == "running") {
      detail = c.job + " on " + c.node + ", " + c.elapsed + " elapsed";
    } else if (c.state == "pending") {
      detail = (c.job.empty() ? "" : c.job + " ") + "(" + c.reason + ")";
    } else {
      detail = c.error + (c.job.empty() ? "" : " (" + c.job + ")") + "; `qbench submit --resume` runs it";
    }
    std::string state = c.state;
    for (auto& ch : state) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::snprintf(buf, sizeof buf, "%-8s %s  %-*s  ", state.c_str(), c.cell->short_key().c_str(), static_cast<int>(width),
                  c.cell->label.c_str());
    out += buf + detail + "\n";
  }
  for (const auto& n : s.notes) out += "note: " + n + "\n";
  return out;
}

}  // namespace qbench::cluster
