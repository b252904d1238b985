#pragma once
// What the store tests share: a run and a result with every required field set, a raw SQLite
// connection to poke at a file the way a user with the sqlite3 shell would, and the SQL that turns
// a current file back into what an older schema version wrote.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/store/store.h"

namespace qbench::store_test {

using qbench::StoreError;
using store::CellResult;
using store::PlannedCell;
using store::RunInfo;
using store::Store;

/// A run as `qbench run` records it; `scheduler` and `job` fill its origin (a cluster task's run:
/// array job 100, task `job`, plan plan-1) when given.
inline RunInfo sample_run(const std::string& scheduler = "", const std::string& job = "") {
  RunInfo r;
  r.matrix_name = "academic";
  r.matrix_file = "matrices/academic.yaml";
  r.yaml_text = "name: academic\nbits: [w8a8, w4a4]\n";
  r.yaml_hash = "ab12";
  r.started_at = "2026-11-23T10:00:00.000Z";
  r.host = "box";
  r.git_rev = "deadbeef";
  r.qbench_version = "0.1.0";
  r.torch_version = "2.3.0";
  r.threads = 2;
  r.command_line = "qbench run matrices/academic.yaml";
  r.environment_json = R"({"qengine":"fbgemm"})";
  r.origin.scheduler = scheduler;
  r.origin.job_id = job;
  if (!job.empty()) {
    r.origin.array_job_id = "100";
    r.origin.array_task_id = job;
    r.origin.plan_id = "plan-1";
  }
  return r;
}

/// A PTQ cell's result: top-1 `top1` when `status` is ok, the error "boom" otherwise.
inline CellResult sample_result(int64_t run_id, const std::string& key, const std::string& status = "ok",
                                double top1 = 90.0) {
  CellResult r;
  r.run_id = run_id;
  r.cell_key = key;
  r.baseline_key = "base-" + key;
  r.dataset = "fashion-mnist";
  r.arch = "resnet20";
  r.algorithm = "minmax";
  r.profile = "academic";
  r.w_bits = 4;
  r.a_bits = 8;
  r.seed = 7;
  r.kind = "ptq";
  r.status = status;
  if (status == "ok") r.top1 = top1;
  else r.error = "boom";
  r.eval_images = 10000;
  r.threads = 2;
  r.config_json = R"({"arch":"resnet20"})";
  r.started_at = "2026-11-23T10:00:01.000Z";
  r.finished_at = "2026-11-23T10:00:02.000Z";
  return r;
}

/// A raw connection for poking at the file the way a user with the sqlite3 shell would.
struct RawDb {
  explicit RawDb(const std::string& path) { REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK); }
  ~RawDb() { sqlite3_close(db); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
  /// The first column of the first row ("" when there is none or it is NULL).
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  sqlite3* db = nullptr;
};

// What schema version 6 added (run uid and origin): dropped to turn a file back into version 5.
inline const char* const kUndoV6 =
    "DROP INDEX runs_by_uid; DROP INDEX runs_by_plan; ALTER TABLE runs DROP COLUMN uid; "
    "ALTER TABLE runs DROP COLUMN scheduler; ALTER TABLE runs DROP COLUMN job_id; "
    "ALTER TABLE runs DROP COLUMN array_job_id; ALTER TABLE runs DROP COLUMN array_task_id; "
    "ALTER TABLE runs DROP COLUMN plan_id; ALTER TABLE runs DROP COLUMN merged_from; ";

/// Turns the (closed) store file at `path` back into what an older qbench wrote: version 6's
/// additions dropped, then `older` (the later versions' additions and the older user_version).
inline void roll_back_schema(const std::string& path, const std::string& older) {
  RawDb raw(path);
  raw.exec(std::string(kUndoV6) + older);
}

}  // namespace qbench::store_test
