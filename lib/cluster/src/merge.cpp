// qbench merge: every shard of a work directory folded into one store (Store::merge_from, one
// transaction per shard), then one merged run for the plan whose rows point at one result per cell.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "internal.h"
#include "qbench/buildinfo.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::cluster {
using namespace detail;

namespace {

bool same_metrics(const store::CellResult& a, const store::CellResult& b) {
  return a.top1 == b.top1 && a.top5 == b.top5 && a.loss == b.loss;
}

bool earlier(const store::CellResult& a, const store::CellResult& b) {
  return a.finished_at != b.finished_at ? a.finished_at < b.finished_at : a.id < b.id;
}

std::string describe(const store::CellResult& r, const store::RunInfo* run) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "top-1 %.2f", r.top1.value_or(0));
  std::string where;
  if (run) {
    const auto& o = run->origin;
    where = (o.scheduler.empty() ? std::string("run ") + std::to_string(run->id) : o.scheduler + " job " + o.job_id) +
            " on " + run->host + ", ";
  }
  return "result " + std::to_string(r.id) + ": " + (r.top1 ? buf : "top-1 n/a") + " (" + where + r.finished_at + ")";
}

}  // namespace

MergeReport merge_workdir(store::Store& target, const Plan& plan, const std::string& command_line) {
  MergeReport rep;
  for (const auto& file : shard_files(plan)) {
    ++rep.shards;
    try {
      const auto st = target.merge_from(file);
      auto& t = rep.totals;
      t.runs_added += st.runs_added;
      t.runs_present += st.runs_present;
      t.results_added += st.results_added;
      t.results_present += st.results_present;
      t.plan_rows_added += st.plan_rows_added;
      t.plan_rows_updated += st.plan_rows_updated;
      t.details_added += st.details_added;
      if (st.runs_added || st.results_added || st.plan_rows_added || st.plan_rows_updated) ++rep.shards_new;
    } catch (const store::SourceStoreError& e) {
      // A bad shard is skipped; a problem of the target (locked, full disk) is any other
      // StoreError, and stops the merge.
      rep.unreadable.push_back(e.what());
    }
  }

  // The merged run: one row per cell of the plan.
  std::map<int64_t, store::RunInfo> runs;
  for (auto& r : target.runs()) runs.emplace(r.id, std::move(r));
  std::map<std::string, std::vector<store::CellResult>> by_key;
  for (auto& r : target.plan_results(plan.id)) by_key[r.cell_key].push_back(std::move(r));
  std::vector<store::PlannedCell> rows;
  std::vector<const store::CellResult*> chosen_results;
  std::string identity = plan.id;
  nlohmann::json conflicts = nlohmann::json::array();
  for (const auto& c : plan.cells) {
    store::PlannedCell row;
    row.position = c.position;
    row.cell_key = c.key;
    row.config_json = c.config_json;
    row.action = "pending";
    const store::CellResult* chosen = nullptr;
    const auto& results = by_key[c.key];
    std::vector<const store::CellResult*> oks;
    for (const auto& r : results)
      if (r.status == "ok") oks.push_back(&r);
    if (!oks.empty()) {
      chosen = *std::min_element(oks.begin(), oks.end(), [](auto* a, auto* b) { return earlier(*a, *b); });
      bool differ = false;
      for (const auto* r : oks) differ |= !same_metrics(*r, *chosen);
      if (differ) {
        Conflict k;
        k.cell_key = c.key;
        k.label = c.label;
        k.chosen = chosen->id;
        nlohmann::json jr = nlohmann::json::array();
        for (const auto* r : oks) {
          auto it = runs.find(r->run_id);
          k.results.push_back(describe(*r, it == runs.end() ? nullptr : &it->second));
          jr.push_back({{"result_id", r->id},
                        {"top1", r->top1 ? nlohmann::json(*r->top1) : nlohmann::json(nullptr)},
                        {"job", it == runs.end() ? "" : it->second.origin.scheduler + " " + it->second.origin.job_id},
                        {"host", it == runs.end() ? "" : it->second.host},
                        {"finished_at", r->finished_at}});
        }
        conflicts.push_back({{"cell_key", c.key}, {"label", c.label}, {"chosen", chosen->id}, {"results", jr}});
        rep.conflicts.push_back(std::move(k));
      } else if (oks.size() > 1) {
        ++rep.duplicates;
      }
      ++rep.ok;
    } else if (!results.empty()) {
      chosen = &*std::max_element(results.begin(), results.end(), earlier);  // the latest attempt's error
      ++rep.failed;
    } else {
      ++rep.pending;
    }
    if (chosen) {
      row.action = "skipped";  // finished by the task's run, which the row points at
      row.result_id = chosen->id;
      chosen_results.push_back(chosen);
      auto it = runs.find(chosen->run_id);
      identity += "|" + c.key + "=" + (it == runs.end() ? std::to_string(chosen->id) : it->second.uid);
    } else {
      identity += "|" + c.key + "=-";
    }
    rows.push_back(std::move(row));
  }
  const std::string uid = "merge-" + sha256_hex(identity).substr(0, 32);
  if (auto held = target.run_by_uid(uid)) {
    rep.merged_run = held->id;
    return rep;
  }

  store::RunInfo info;
  info.uid = uid;
  info.matrix_name = plan.name;
  info.matrix_file = plan.matrix_path();
  info.yaml_text = read_file(plan.matrix_path());
  info.yaml_hash = plan.yaml_hash;
  info.host = host_name();
  info.git_rev = QBENCH_GIT_REV;
  info.qbench_version = QBENCH_VERSION;
  info.threads = plan.threads;
  info.command_line = command_line;
  info.origin.scheduler = "merge";
  info.origin.plan_id = plan.id;
  info.merged_from = plan.workdir;
  info.status = rep.failed ? "failed" : rep.pending ? "interrupted" : "finished";
  std::string started, ended;
  nlohmann::json env = nlohmann::json::object();
  std::map<std::string, int> hosts, schedulers;
  for (const auto* r : chosen_results) {
    if (started.empty() || r->started_at < started) started = r->started_at;
    if (r->finished_at > ended) ended = r->finished_at;
    auto it = runs.find(r->run_id);
    if (it == runs.end()) continue;
    ++hosts[it->second.host];
    ++schedulers[it->second.origin.scheduler];
    if (info.torch_version.empty() && !it->second.torch_version.empty()) {
      info.torch_version = it->second.torch_version;
      info.device = it->second.device;
      auto e = nlohmann::json::parse(it->second.environment_json, nullptr, false);
      if (e.is_object()) env = e;
    }
  }
  info.started_at = started.empty() ? utc_now_iso() : started;
  info.ended_at = ended.empty() ? utc_now_iso() : ended;
  env["merge"] = {{"workdir", plan.workdir},
                  {"plan_id", plan.id},
                  {"shards", rep.shards},
                  {"cells", plan.cells.size()},
                  {"ok", rep.ok},
                  {"failed", rep.failed},
                  {"pending", rep.pending},
                  {"hosts", hosts},
                  {"schedulers", schedulers},
                  {"conflicts", conflicts}};
  info.environment_json = env.dump();
  rep.merged_run = target.record_run(info, rows);
  rep.merged_run_new = true;
  return rep;
}

std::vector<MergeSource> check_merge_sources(const std::vector<std::string>& sources, const std::string& into) {
  namespace fs = std::filesystem;
  std::vector<MergeSource> out;
  for (const auto& src : sources) {
    std::error_code ec;
    if (!fs::exists(src)) throw ConfigError(src + ": no such work directory or store");
    if (fs::exists(into) && fs::equivalent(src, into, ec)) throw ConfigError(src + ": is the --into store itself");
    MergeSource m;
    m.path = src;
    if (fs::is_directory(src)) {
      m.plan = load_plan(src);
    } else {
      std::string head;
      try {
        head = read_file(src).substr(0, 16);
      } catch (const Error& e) {
        throw ConfigError(src + ": cannot read it");
      }
      if (head != std::string("SQLite format 3\0", 16))
        throw ConfigError(src + ": not an SQLite database (a results store or a work directory was expected)");
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string render_merge(const Plan& plan, const MergeReport& r) {
  std::string out;
  const auto& t = r.totals;
  out += "merged " + std::to_string(r.shards) + " shard(s) of plan '" + plan.name + "' (" + plan.workdir + "): " +
         std::to_string(r.shards_new) + " new, " + std::to_string(r.shards - r.shards_new - static_cast<int>(r.unreadable.size())) +
         " already merged; added " + std::to_string(t.runs_added) + " run(s), " + std::to_string(t.results_added) +
         " result(s), " + std::to_string(t.details_added) + " detail row(s)\n";
  for (const auto& u : r.unreadable) out += "SKIPPED unreadable shard: " + u + "\n";
  out += std::string(r.merged_run_new ? "recorded merged run " : "merged run already recorded: run ") +
         std::to_string(r.merged_run) + ": " + std::to_string(plan.cells.size()) + " cells, " + std::to_string(r.ok) +
         " ok, " + std::to_string(r.failed) + " failed, " + std::to_string(r.pending) + " pending\n";
  if (r.duplicates)
    out += std::to_string(r.duplicates) + " cell(s) have more than one ok result with the same metrics (kept; the run uses the earliest)\n";
  for (const auto& c : r.conflicts) {
    out += "CONFLICT " + c.cell_key.substr(0, 12) + " (" + c.label + "): " + std::to_string(c.results.size()) +
           " ok results differ; the merged run uses result " + std::to_string(c.chosen) + " (the earliest)\n";
    for (const auto& line : c.results) out += "  " + line + "\n";
  }
  return out;
}

}  // namespace qbench::cluster
