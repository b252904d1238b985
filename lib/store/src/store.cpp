#include "qbench/store/store.h"

#include <sqlite3.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <map>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::store {
namespace {

// Every failure names the database file: a user with several stores must know which one broke.
// The code is SQLite's primary result code (SQLITE_BUSY, SQLITE_CONSTRAINT, ...).
[[noreturn]] void fail(sqlite3* db, const std::string& path, const std::string& what, int rc) {
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw StoreError("store '" + path + "': " + what + ": " + detail, rc & 0xff);
}

void exec(sqlite3* db, const std::string& path, const std::string& sql) {
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(db, path, "cannot execute '" + sql.substr(0, 60) + "'", rc);
}

/// A prepared statement: bind by name (":run_id"), step, read columns; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, const std::string& sql) : db_(db), path_(path) {
    int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) fail(db, path, "cannot prepare '" + sql.substr(0, 60) + "'", rc);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(const char* name, std::nullptr_t) { return check(sqlite3_bind_null(stmt_, index(name))); }
  Statement& bind(const char* name, int v) { return bind(name, static_cast<int64_t>(v)); }
  Statement& bind(const char* name, int64_t v) { return check(sqlite3_bind_int64(stmt_, index(name), v)); }
  Statement& bind(const char* name, double v) { return check(sqlite3_bind_double(stmt_, index(name), v)); }
  Statement& bind(const char* name, const std::string& v) {
    return check(sqlite3_bind_text(stmt_, index(name), v.data(), static_cast<int>(v.size()),
                                   SQLITE_TRANSIENT));
  }
  template <class T>
  Statement& bind(const char* name, const std::optional<T>& v) {
    return v ? bind(name, *v) : bind(name, nullptr);
  }
  /// Empty text is stored as NULL (e.g. ended_at while a run is still going).
  Statement& bind_text_or_null(const char* name, const std::string& v) {
    return v.empty() ? bind(name, nullptr) : bind(name, v);
  }

  /// true: a row is available; false: done. Throws StoreError on any other result.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(db_, path_, "cannot execute '" + std::string(sqlite3_sql(stmt_)).substr(0, 60) + "'", rc);
  }
  void run() {
    while (step()) {
    }
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool is_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  int64_t int64(int i) const { return sqlite3_column_int64(stmt_, i); }
  int int32(int i) const { return sqlite3_column_int(stmt_, i); }
  double real(int i) const { return sqlite3_column_double(stmt_, i); }
  std::string text(int i) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i))) : std::string();
  }
  std::optional<double> opt_real(int i) const {
    return is_null(i) ? std::nullopt : std::optional<double>(real(i));
  }
  std::optional<int64_t> opt_int64(int i) const {
    return is_null(i) ? std::nullopt : std::optional<int64_t>(int64(i));
  }
  const std::string& path() const { return path_; }

 private:
  int index(const char* name) const {
    int i = sqlite3_bind_parameter_index(stmt_, name);
    if (i == 0)
      throw StoreError("store '" + path_ + "': no parameter " + name + " in '" + sqlite3_sql(stmt_) + "'");
    return i;
  }
  Statement& check(int rc) {
    if (rc != SQLITE_OK) fail(db_, path_, "cannot bind", rc);
    return *this;
  }
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// A cached statement in use; reset (bindings cleared, read lock released) when it goes out of
/// scope, so the cache can hand it out again.
class Query {
 public:
  explicit Query(Statement& s) : s_(s) {}
  ~Query() { s_.reset(); }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Statement* operator->() { return &s_; }
  Statement& operator*() { return s_; }

 private:
  Statement& s_;
};

/// BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so two qbench
/// processes on one store serialize instead of failing with SQLITE_BUSY on lock upgrade.
/// Rolls back in its destructor unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {
    exec(db_, path_, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    if (!committed_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    exec(db_, path_, "COMMIT");
    committed_ = true;
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool committed_ = false;
};

// Detail values as a JSON object text (NaN/Inf become null: JSON has no such numbers).
std::string values_json(const std::map<std::string, double>& v) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, x] : v) j[k] = std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
  return j.dump();
}

std::map<std::string, double> parse_values_json(const std::string& text) {
  std::map<std::string, double> out;
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (const auto& [k, x] : j.items()) out[k] = x.is_number() ? x.get<double>() : std::nan("");
  return out;
}

// Schema migrations, applied in order; `PRAGMA user_version` records the last one applied.
// A new schema version appends an entry here and never edits an earlier one.
struct Migration {
  int version;
  const char* sql;
};
const Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE runs (
  id               INTEGER PRIMARY KEY,
  matrix_name      TEXT NOT NULL,
  matrix_file      TEXT NOT NULL,
  yaml_text        TEXT NOT NULL,
  yaml_hash        TEXT NOT NULL,
  started_at       TEXT NOT NULL,
  ended_at         TEXT,
  status           TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  host             TEXT NOT NULL,
  git_rev          TEXT NOT NULL,
  qbench_version   TEXT NOT NULL,
  torch_version    TEXT NOT NULL,
  threads          INTEGER NOT NULL,
  command_line     TEXT NOT NULL,
  environment_json TEXT NOT NULL
);
CREATE TABLE results (
  id             INTEGER PRIMARY KEY,
  run_id         INTEGER NOT NULL REFERENCES runs(id),
  cell_key       TEXT NOT NULL,
  baseline_key   TEXT NOT NULL,
  dataset        TEXT NOT NULL,
  arch           TEXT NOT NULL,
  algorithm      TEXT NOT NULL,
  profile        TEXT NOT NULL,
  w_bits         INTEGER NOT NULL,
  a_bits         INTEGER NOT NULL,
  seed           TEXT NOT NULL,  -- uint64 as decimal text: exact beyond 2^63
  kind           TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
  error          TEXT NOT NULL,
  top1           REAL,
  top5           REAL,
  loss           REAL,
  fp32_top1      REAL,
  quant_wall_s   REAL,
  eval_wall_s    REAL,
  wall_s         REAL,
  latency_ms_p50 REAL,
  latency_ms_p90 REAL,
  latency_batch  INTEGER,
  latency_source TEXT NOT NULL,
  eval_images    INTEGER NOT NULL,
  threads        INTEGER NOT NULL,
  config_json    TEXT NOT NULL,
  started_at     TEXT NOT NULL,
  finished_at    TEXT NOT NULL,
  UNIQUE (run_id, cell_key)
);
CREATE INDEX results_by_key_status ON results(cell_key, status);
CREATE TABLE run_cells (
  run_id      INTEGER NOT NULL REFERENCES runs(id),
  position    INTEGER NOT NULL,
  cell_key    TEXT NOT NULL,
  action      TEXT NOT NULL CHECK (action IN ('run', 'skipped', 'pending')),
  result_id   INTEGER REFERENCES results(id),
  config_json TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, position)
);
CREATE INDEX run_cells_by_key ON run_cells(run_id, cell_key);
CREATE INDEX run_cells_by_result ON run_cells(result_id);
)sql"},
    // Simulated-vs-deployed gap of a cell whose model was also run through an integer backend
    // (filled by the deploy path; NULL where a cell was only simulated).
    {2, R"sql(
ALTER TABLE results ADD COLUMN deploy_top1      REAL;
ALTER TABLE results ADD COLUMN deploy_agreement REAL;
ALTER TABLE results ADD COLUMN logit_cosine     REAL;
ALTER TABLE results ADD COLUMN sqnr_db          REAL;
)sql"},
    // Per-cell detail rows (per-layer deployment SQNR, per-unit reconstruction loss...), replaced
    // together with their result row.
    {3, R"sql(
CREATE TABLE cell_details (
  result_id   INTEGER NOT NULL REFERENCES results(id),
  section     TEXT NOT NULL,
  position    INTEGER NOT NULL,
  name        TEXT NOT NULL,
  values_json TEXT NOT NULL,
  text        TEXT NOT NULL,
  PRIMARY KEY (result_id, section, position)
);
)sql"},
    // The compute device a run used ("cpu", "cuda:0"), per run beside its thread count and per
    // result row. Every run before this version ran on the CPU, so existing rows read 'cpu'.
    {4, R"sql(
ALTER TABLE runs    ADD COLUMN device TEXT NOT NULL DEFAULT 'cpu';
ALTER TABLE results ADD COLUMN device TEXT NOT NULL DEFAULT 'cpu';
)sql"},
    // The engine a row's deploy_* columns come from ("libtorch-onednn", "libtorch-qnnpack",
    // "onnxruntime"; '' where the cell was not deployed). Before this version the only engines
    // were LibTorch's, chosen by the profile, and only x86-onednn and qnnpack named one.
    {5, R"sql(
ALTER TABLE results ADD COLUMN deploy_engine TEXT NOT NULL DEFAULT '';
UPDATE results SET deploy_engine = CASE profile WHEN 'x86-onednn' THEN 'libtorch-onednn'
                                                WHEN 'qnnpack' THEN 'libtorch-qnnpack' ELSE '' END
 WHERE deploy_top1 IS NOT NULL;
)sql"},
    // Where a run came from, so that stores merge (`qbench merge`) without losing provenance: a
    // random uid that stays with the run through every merge (a merge adds each run it does not
    // hold yet, once), the scheduler and job that ran it ('slurm' with SLURM_JOB_ID,
    // SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID; 'local'; 'merge' for a merged run; '' for a plain
    // `qbench run`), the cluster plan it belongs to and the file it was merged from. Existing runs
    // get a uid here.
    {6, R"sql(
ALTER TABLE runs ADD COLUMN uid           TEXT;
ALTER TABLE runs ADD COLUMN scheduler     TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN job_id        TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN array_job_id  TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN array_task_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN plan_id       TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN merged_from   TEXT NOT NULL DEFAULT '';
UPDATE runs SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
CREATE UNIQUE INDEX runs_by_uid ON runs(uid);
CREATE INDEX runs_by_plan ON runs(plan_id);
)sql"},
};

// Column lists in the order read_run/read_result expect.
const char* const kRunColumns[] = {"id",          "matrix_name",   "matrix_file",    "yaml_text",
                                   "yaml_hash",   "started_at",    "ended_at",       "status",
                                   "host",        "git_rev",       "qbench_version", "torch_version",
                                   "threads",     "command_line",  "environment_json", "device",
                                   "uid",         "scheduler",     "job_id",         "array_job_id",
                                   "array_task_id", "plan_id",     "merged_from"};
const char* const kResultColumns[] = {
    "id",           "run_id",         "cell_key",       "baseline_key",  "dataset",
    "arch",         "algorithm",      "profile",        "w_bits",        "a_bits",
    "seed",         "kind",           "status",         "error",         "top1",
    "top5",         "loss",           "fp32_top1",      "quant_wall_s",  "eval_wall_s",
    "wall_s",       "latency_ms_p50", "latency_ms_p90", "latency_batch", "latency_source",
    "eval_images",  "threads",        "config_json",    "started_at",    "finished_at",
    "deploy_top1",  "deploy_agreement", "logit_cosine", "sqnr_db",         "device",
    "deploy_engine"};

template <std::size_t N>
std::string column_list(const char* const (&cols)[N], const std::string& prefix = "") {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) out += (i ? ", " : "") + prefix + cols[i];
  return out;
}

RunInfo read_run(const Statement& s) {
  RunInfo r;
  r.id = s.int64(0);
  r.matrix_name = s.text(1);
  r.matrix_file = s.text(2);
  r.yaml_text = s.text(3);
  r.yaml_hash = s.text(4);
  r.started_at = s.text(5);
  r.ended_at = s.text(6);
  r.status = s.text(7);
  r.host = s.text(8);
  r.git_rev = s.text(9);
  r.qbench_version = s.text(10);
  r.torch_version = s.text(11);
  r.threads = s.int32(12);
  r.command_line = s.text(13);
  r.environment_json = s.text(14);
  r.device = s.text(15);
  r.uid = s.text(16);
  r.origin.scheduler = s.text(17);
  r.origin.job_id = s.text(18);
  r.origin.array_job_id = s.text(19);
  r.origin.array_task_id = s.text(20);
  r.origin.plan_id = s.text(21);
  r.merged_from = s.text(22);
  return r;
}

uint64_t parse_seed(const std::string& text, const std::string& path) {
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || errno != 0 || *end != '\0')
    throw StoreError("store '" + path + "': malformed seed '" + text + "' in results", SQLITE_CORRUPT);
  return static_cast<uint64_t>(v);
}

CellResult read_result(const Statement& s, int o) {
  CellResult r;
  r.id = s.int64(o + 0);
  r.run_id = s.int64(o + 1);
  r.cell_key = s.text(o + 2);
  r.baseline_key = s.text(o + 3);
  r.dataset = s.text(o + 4);
  r.arch = s.text(o + 5);
  r.algorithm = s.text(o + 6);
  r.profile = s.text(o + 7);
  r.w_bits = s.int32(o + 8);
  r.a_bits = s.int32(o + 9);
  r.seed = parse_seed(s.text(o + 10), s.path());
  r.kind = s.text(o + 11);
  r.status = s.text(o + 12);
  r.error = s.text(o + 13);
  r.top1 = s.opt_real(o + 14);
  r.top5 = s.opt_real(o + 15);
  r.loss = s.opt_real(o + 16);
  r.fp32_top1 = s.opt_real(o + 17);
  r.quant_wall_s = s.opt_real(o + 18);
  r.eval_wall_s = s.opt_real(o + 19);
  r.wall_s = s.opt_real(o + 20);
  r.latency_ms_p50 = s.opt_real(o + 21);
  r.latency_ms_p90 = s.opt_real(o + 22);
  if (!s.is_null(o + 23)) r.latency_batch = s.int32(o + 23);
  r.latency_source = s.text(o + 24);
  r.eval_images = s.int64(o + 25);
  r.threads = s.int32(o + 26);
  r.config_json = s.text(o + 27);
  r.started_at = s.text(o + 28);
  r.finished_at = s.text(o + 29);
  r.deploy_top1 = s.opt_real(o + 30);
  r.deploy_agreement = s.opt_real(o + 31);
  r.logit_cosine = s.opt_real(o + 32);
  r.sqnr_db = s.opt_real(o + 33);
  r.device = s.text(o + 34);
  r.deploy_engine = s.text(o + 35);
  return r;
}

int known_schema_version() { return kMigrations[std::size(kMigrations) - 1].version; }

void refuse_newer(const std::string& path, int file_version) {
  if (file_version > known_schema_version())
    throw StoreError("store '" + path + "' was written by a newer qbench (schema version " +
                         std::to_string(file_version) + ", this build knows up to " +
                         std::to_string(known_schema_version()) + ")",
                     SQLITE_ERROR);
}

bool is_special_path(const std::string& path) {
  return path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0;
}

}  // namespace

class StatementCache {
 public:
  StatementCache(sqlite3* db, const std::string& path) : db_(db), path_(path) {}
  /// The statement for `sql`, prepared on first use.
  Statement& get(const std::string& sql) {
    auto it = by_sql_.find(sql);
    if (it == by_sql_.end())
      it = by_sql_.emplace(sql, std::make_unique<Statement>(db_, path_, sql)).first;
    return *it->second;
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> by_sql_;
};

Store::Store(const std::string& path) : path_(path) {
  if (!is_special_path(path_)) {
    std::error_code ec;
    auto parent = std::filesystem::path(path_).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) throw StoreError("store '" + path_ + "': cannot create directory '" + parent.string() + "': " + ec.message());
  }
  int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                           nullptr);
  try {
    if (rc != SQLITE_OK) fail(db_, path_, "cannot open", rc);
    cache_ = std::make_unique<StatementCache>(db_, path_);
    // busy_timeout first so that everything below waits for another process's lock.
    exec(db_, path_, "PRAGMA busy_timeout=10000");
    exec(db_, path_, "PRAGMA foreign_keys=ON");
    // Reading the header also turns a file that is not a database into SQLITE_NOTADB here.
    // A newer file is refused before we touch it, not even its journal mode.
    refuse_newer(path_, user_version());
    // WAL lets `qbench report` read while a run writes; synchronous=NORMAL is durable across
    // process crashes in WAL mode (only an OS crash can lose the last commits).
    exec(db_, path_, "PRAGMA journal_mode=WAL");
    exec(db_, path_, "PRAGMA synchronous=NORMAL");
    migrate();
  } catch (...) {
    cache_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  cache_.reset();  // statements must be finalized before the connection closes
  sqlite3_close_v2(db_);
}

int Store::schema_version() { return known_schema_version(); }

int Store::user_version() const {
  Query q(cache_->get("PRAGMA user_version"));
  return q->step() ? q->int32(0) : 0;
}

void Store::migrate() {
  if (user_version() == schema_version()) return;
  Transaction tx(db_, path_);
  // Another process may have migrated between our first read and taking the write lock.
  int v = user_version();
  refuse_newer(path_, v);
  for (const auto& m : kMigrations) {
    if (m.version <= v) continue;
    exec(db_, path_, m.sql);
    exec(db_, path_, "PRAGMA user_version=" + std::to_string(m.version));
  }
  tx.commit();
}

int64_t Store::insert_run(const RunInfo& info, bool as_given) {
  static const std::string sql =
      "INSERT INTO runs (matrix_name, matrix_file, yaml_text, yaml_hash, started_at, ended_at, status, host, "
      "git_rev, qbench_version, torch_version, threads, command_line, environment_json, device, uid, scheduler, "
      "job_id, array_job_id, array_task_id, plan_id, merged_from) VALUES (:matrix_name, :matrix_file, :yaml_text, "
      ":yaml_hash, :started_at, :ended_at, :status, :host, :git_rev, :qbench_version, :torch_version, :threads, "
      ":command_line, :environment_json, :device, coalesce(:uid, lower(hex(randomblob(16)))), :scheduler, :job_id, "
      ":array_job_id, :array_task_id, :plan_id, :merged_from) RETURNING id";
  Query q(cache_->get(sql));
  q->bind(":matrix_name", info.matrix_name)
      .bind(":matrix_file", info.matrix_file)
      .bind(":yaml_text", info.yaml_text)
      .bind(":yaml_hash", info.yaml_hash)
      .bind(":started_at", info.started_at.empty() ? utc_now_iso() : info.started_at)
      .bind_text_or_null(":ended_at", as_given ? info.ended_at : std::string())
      .bind(":status", as_given && !info.status.empty() ? info.status : std::string("running"))
      .bind(":host", info.host)
      .bind(":git_rev", info.git_rev)
      .bind(":qbench_version", info.qbench_version)
      .bind(":torch_version", info.torch_version)
      .bind(":threads", info.threads)
      .bind(":command_line", info.command_line)
      .bind(":environment_json", info.environment_json)
      .bind(":device", info.device.empty() ? std::string("cpu") : info.device)
      .bind_text_or_null(":uid", info.uid)
      .bind(":scheduler", info.origin.scheduler)
      .bind(":job_id", info.origin.job_id)
      .bind(":array_job_id", info.origin.array_job_id)
      .bind(":array_task_id", info.origin.array_task_id)
      .bind(":plan_id", info.origin.plan_id)
      .bind(":merged_from", info.merged_from);
  if (!q->step()) throw StoreError("store '" + path_ + "': INSERT INTO runs returned no id");
  int64_t id = q->int64(0);
  q->run();
  return id;
}

int64_t Store::begin_run(const RunInfo& info) { return insert_run(info, /*as_given=*/false); }

void Store::end_run(int64_t run_id, const std::string& status) {
  Query q(cache_->get("UPDATE runs SET ended_at = :ended_at, status = :status WHERE id = :id"));
  q->bind(":ended_at", utc_now_iso()).bind(":status", status).bind(":id", run_id).run();
  if (sqlite3_changes(db_) == 0)
    throw StoreError("store '" + path_ + "': no run with id " + std::to_string(run_id), SQLITE_NOTFOUND);
}

std::optional<RunInfo> Store::run(int64_t run_id) const {
  static const std::string sql = "SELECT " + column_list(kRunColumns) + " FROM runs WHERE id = :id";
  Query q(cache_->get(sql));
  q->bind(":id", run_id);
  if (!q->step()) return std::nullopt;
  return read_run(*q);
}

std::optional<int64_t> Store::latest_run_id() const {
  Query q(cache_->get("SELECT max(id) FROM runs"));
  if (!q->step()) return std::nullopt;
  return q->opt_int64(0);
}

std::vector<RunInfo> Store::runs() const {
  static const std::string sql = "SELECT " + column_list(kRunColumns) + " FROM runs ORDER BY id";
  Query q(cache_->get(sql));
  std::vector<RunInfo> out;
  while (q->step()) out.push_back(read_run(*q));
  return out;
}

void Store::insert_plan_row(const PlannedCell& c) {
  Query q(cache_->get(
      "INSERT INTO run_cells (run_id, position, cell_key, action, result_id, config_json) "
      "VALUES (:run_id, :position, :cell_key, :action, :result_id, :config_json)"));
  q->bind(":run_id", c.run_id)
      .bind(":position", c.position)
      .bind(":cell_key", c.cell_key)
      .bind(":action", c.action)
      .bind(":result_id", c.result_id)
      .bind(":config_json", c.config_json)
      .run();
}

void Store::plan_cells(int64_t run_id, const std::vector<PlannedCell>& cells) {
  Transaction tx(db_, path_);
  for (auto c : cells) {
    c.run_id = run_id;
    insert_plan_row(c);
  }
  tx.commit();
}

std::optional<CellResult> Store::finished_result(const std::string& cell_key) const {
  static const std::string sql = "SELECT " + column_list(kResultColumns) +
                                 " FROM results WHERE cell_key = :key AND status = 'ok' ORDER BY id DESC LIMIT 1";
  Query q(cache_->get(sql));
  q->bind(":key", cell_key);
  if (!q->step()) return std::nullopt;
  return read_result(*q, 0);
}

int64_t Store::write_result(const CellResult& r) {
  // An upsert keeps the row id when a run re-executes a cell, so plan rows of later runs that
  // point at it stay valid (a REPLACE would delete it under their foreign key).
  static const std::string sql = [] {
    std::string cols, params, updates;
    for (std::size_t i = 1; i < std::size(kResultColumns); ++i) {  // all but id
      std::string c = kResultColumns[i];
      cols += (i > 1 ? ", " : "") + c;
      params += (i > 1 ? ", :" : ":") + c;
      if (c != "run_id" && c != "cell_key") updates += (updates.empty() ? "" : ", ") + c + " = excluded." + c;
    }
    return "INSERT INTO results (" + cols + ") VALUES (" + params +
           ") ON CONFLICT (run_id, cell_key) DO UPDATE SET " + updates + " RETURNING id";
  }();
  int64_t id = 0;
  {
    Query q(cache_->get(sql));
    q->bind(":run_id", r.run_id)
        .bind(":cell_key", r.cell_key)
        .bind(":baseline_key", r.baseline_key)
        .bind(":dataset", r.dataset)
        .bind(":arch", r.arch)
        .bind(":algorithm", r.algorithm)
        .bind(":profile", r.profile)
        .bind(":w_bits", r.w_bits)
        .bind(":a_bits", r.a_bits)
        .bind(":seed", std::to_string(r.seed))
        .bind(":kind", r.kind)
        .bind(":status", r.status)
        .bind(":error", r.error)
        .bind(":top1", r.top1)
        .bind(":top5", r.top5)
        .bind(":loss", r.loss)
        .bind(":fp32_top1", r.fp32_top1)
        .bind(":quant_wall_s", r.quant_wall_s)
        .bind(":eval_wall_s", r.eval_wall_s)
        .bind(":wall_s", r.wall_s)
        .bind(":latency_ms_p50", r.latency_ms_p50)
        .bind(":latency_ms_p90", r.latency_ms_p90)
        .bind(":latency_batch", r.latency_batch)
        .bind(":latency_source", r.latency_source)
        .bind(":eval_images", r.eval_images)
        .bind(":threads", r.threads)
        .bind(":config_json", r.config_json)
        .bind(":started_at", r.started_at)
        .bind(":finished_at", r.finished_at)
        .bind(":deploy_top1", r.deploy_top1)
        .bind(":deploy_agreement", r.deploy_agreement)
        .bind(":logit_cosine", r.logit_cosine)
        .bind(":sqnr_db", r.sqnr_db)
        .bind(":device", r.device.empty() ? std::string("cpu") : r.device)
        .bind(":deploy_engine", r.deploy_engine);
    if (!q->step()) throw StoreError("store '" + path_ + "': INSERT INTO results returned no id");
    id = q->int64(0);
    q->run();
  }
  {
    Query q(cache_->get("DELETE FROM cell_details WHERE result_id = :id"));
    q->bind(":id", id).run();
  }
  {
    std::map<std::string, int> next;  // position within each section
    for (const auto& d : r.details) {
      Query q(cache_->get(
          "INSERT INTO cell_details (result_id, section, position, name, values_json, text) "
          "VALUES (:id, :section, :position, :name, :values_json, :text)"));
      q->bind(":id", id)
          .bind(":section", d.section)
          .bind(":position", next[d.section]++)
          .bind(":name", d.name)
          .bind(":values_json", values_json(d.values))
          .bind(":text", d.text)
          .run();
    }
  }
  return id;
}

int64_t Store::put_result(const CellResult& r) {
  Transaction tx(db_, path_);
  const int64_t id = write_result(r);
  {
    Query q(cache_->get(
        "UPDATE run_cells SET action = 'run', result_id = :id WHERE run_id = :run_id AND cell_key = :key"));
    q->bind(":id", id).bind(":run_id", r.run_id).bind(":key", r.cell_key).run();
  }
  if (sqlite3_changes(db_) == 0) {
    // Not in the plan (e.g. a caller that records without planning): append it.
    Query q(cache_->get(
        "INSERT INTO run_cells (run_id, position, cell_key, action, result_id, config_json) "
        "SELECT :run_id, coalesce(max(position) + 1, 0), :key, 'run', :id, :config_json "
        "FROM run_cells WHERE run_id = :run_id"));
    q->bind(":run_id", r.run_id).bind(":key", r.cell_key).bind(":id", id).bind(":config_json", r.config_json).run();
  }
  tx.commit();
  return id;
}

std::vector<ReportRow> Store::report_rows(int64_t run_id) const {
  static const std::string sql =
      "SELECT rc.run_id, rc.position, rc.cell_key, rc.action, rc.result_id, rc.config_json, " +
      column_list(kResultColumns, "r.") +
      " FROM run_cells rc LEFT JOIN results r ON r.id = rc.result_id WHERE rc.run_id = :run_id "
      "ORDER BY rc.position";
  Query q(cache_->get(sql));
  q->bind(":run_id", run_id);
  std::vector<ReportRow> out;
  while (q->step()) {
    ReportRow row;
    row.plan.run_id = q->int64(0);
    row.plan.position = q->int32(1);
    row.plan.cell_key = q->text(2);
    row.plan.action = q->text(3);
    row.plan.result_id = q->opt_int64(4);
    row.plan.config_json = q->text(5);
    if (!q->is_null(6)) row.result = read_result(*q, 6);
    out.push_back(std::move(row));
  }
  return out;
}

CellDetails Store::details(int64_t result_id, const std::string& section) const {
  Query q(cache_->get(
      "SELECT section, name, values_json, text FROM cell_details WHERE result_id = :id "
      "AND (:section = '' OR section = :section) ORDER BY section, position"));
  q->bind(":id", result_id).bind(":section", section);
  CellDetails out;
  while (q->step()) out.push_back({q->text(0), q->text(1), parse_values_json(q->text(2)), q->text(3)});
  return out;
}

std::vector<CellResult> Store::all_results() const {
  static const std::string sql = "SELECT " + column_list(kResultColumns) + " FROM results ORDER BY id";
  Query q(cache_->get(sql));
  std::vector<CellResult> out;
  while (q->step()) out.push_back(read_result(*q, 0));
  return out;
}

std::optional<RunInfo> Store::run_by_uid(const std::string& uid) const {
  static const std::string sql = "SELECT " + column_list(kRunColumns) + " FROM runs WHERE uid = :uid";
  Query q(cache_->get(sql));
  q->bind(":uid", uid);
  if (!q->step()) return std::nullopt;
  return read_run(*q);
}

void Store::set_run_origin(int64_t run_id, const RunOrigin& o) {
  Query q(cache_->get(
      "UPDATE runs SET scheduler = :scheduler, job_id = :job_id, array_job_id = :array_job_id, "
      "array_task_id = :array_task_id, plan_id = :plan_id WHERE id = :id"));
  q->bind(":scheduler", o.scheduler)
      .bind(":job_id", o.job_id)
      .bind(":array_job_id", o.array_job_id)
      .bind(":array_task_id", o.array_task_id)
      .bind(":plan_id", o.plan_id)
      .bind(":id", run_id)
      .run();
  if (sqlite3_changes(db_) == 0)
    throw StoreError("store '" + path_ + "': no run with id " + std::to_string(run_id), SQLITE_NOTFOUND);
}

int64_t Store::record_run(const RunInfo& info, const std::vector<PlannedCell>& cells) {
  Transaction tx(db_, path_);
  const int64_t id = insert_run(info, /*as_given=*/true);
  for (auto c : cells) {
    c.run_id = id;
    insert_plan_row(c);
  }
  tx.commit();
  return id;
}

std::vector<PlannedCell> Store::plan(int64_t run_id) const {
  Query q(cache_->get(
      "SELECT run_id, position, cell_key, action, result_id, config_json FROM run_cells WHERE run_id = :run_id "
      "ORDER BY position"));
  q->bind(":run_id", run_id);
  std::vector<PlannedCell> out;
  while (q->step()) {
    PlannedCell c;
    c.run_id = q->int64(0);
    c.position = q->int32(1);
    c.cell_key = q->text(2);
    c.action = q->text(3);
    c.result_id = q->opt_int64(4);
    c.config_json = q->text(5);
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<CellResult> Store::plan_results(const std::string& plan_id) const {
  static const std::string sql = "SELECT " + column_list(kResultColumns, "r.") +
                                 " FROM results r JOIN runs u ON u.id = r.run_id WHERE u.plan_id = :plan "
                                 "ORDER BY r.id";
  Query q(cache_->get(sql));
  q->bind(":plan", plan_id);
  std::vector<CellResult> out;
  while (q->step()) out.push_back(read_result(*q, 0));
  return out;
}

StoreContents Store::read_contents(const std::string& path) {
  namespace fs = std::filesystem;
  if (is_special_path(path)) throw StoreError("store '" + path + "': read_contents needs a file", SQLITE_CANTOPEN);
  if (!fs::is_regular_file(path)) throw StoreError("store '" + path + "': no such file", SQLITE_CANTOPEN);
  StoreContents out;
  for (int attempt = 0;; ++attempt) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    struct Closer {
      sqlite3* db;
      ~Closer() { sqlite3_close_v2(db); }
    } closer{db};
    if (rc != SQLITE_OK) fail(db, path, "cannot open", rc);
    exec(db, path, "PRAGMA busy_timeout=10000");
    int version = 0;
    {
      Statement s(db, path, "PRAGMA user_version");
      if (s.step()) version = s.int32(0);
    }
    refuse_newer(path, version);
    if (version == 0) throw StoreError("store '" + path + "': not a qbench results store (schema version 0)", SQLITE_NOTADB);
    if (attempt == 0) out.user_version = version;
    if (version < known_schema_version()) {
      if (attempt > 0) throw StoreError("store '" + path + "': still at schema version " + std::to_string(version) + " after migrating");
      sqlite3_close_v2(db);
      closer.db = nullptr;
      Store migrated(path);  // the migrations, in their own transaction
      continue;
    }
    // One read transaction: a consistent snapshot even while a writer goes on.
    exec(db, path, "BEGIN");
    {
      Statement s(db, path, "SELECT " + column_list(kRunColumns) + " FROM runs ORDER BY id");
      while (s.step()) out.runs.push_back(read_run(s));
    }
    std::map<int64_t, std::size_t> by_id;
    {
      Statement s(db, path, "SELECT " + column_list(kResultColumns) + " FROM results ORDER BY id");
      while (s.step()) {
        by_id[s.int64(0)] = out.results.size();
        out.results.push_back(read_result(s, 0));
      }
    }
    {
      Statement s(db, path,
                  "SELECT result_id, section, name, values_json, text FROM cell_details "
                  "ORDER BY result_id, section, position");
      while (s.step()) {
        auto it = by_id.find(s.int64(0));
        if (it == by_id.end()) continue;
        out.results[it->second].details.push_back({s.text(1), s.text(2), parse_values_json(s.text(3)), s.text(4)});
      }
    }
    {
      Statement s(db, path,
                  "SELECT run_id, position, cell_key, action, result_id, config_json FROM run_cells "
                  "ORDER BY run_id, position");
      while (s.step()) {
        PlannedCell c;
        c.run_id = s.int64(0);
        c.position = s.int32(1);
        c.cell_key = s.text(2);
        c.action = s.text(3);
        c.result_id = s.opt_int64(4);
        c.config_json = s.text(5);
        out.plan.push_back(std::move(c));
      }
    }
    exec(db, path, "COMMIT");
    return out;
  }
}

MergeStats Store::merge_from(const std::string& source_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!is_special_path(path_) && fs::equivalent(path_, source_path, ec))
    throw StoreError("store '" + path_ + "': cannot merge a store into itself ('" + source_path + "')");
  StoreContents src;
  try {
    src = read_contents(source_path);
  } catch (const StoreError& e) {
    throw SourceStoreError(e.what(), e.code());
  }

  MergeStats st;
  Transaction tx(db_, path_);
  std::map<int64_t, int64_t> run_map;  // source run id -> id here
  for (const auto& run : src.runs) {
    if (auto held = run_by_uid(run.uid)) {
      run_map[run.id] = held->id;
      ++st.runs_present;
      // A run merged while it was still going: take its end now that the source has it.
      if (held->status == "running" && run.status != "running") {
        Query q(cache_->get("UPDATE runs SET status = :status, ended_at = :ended_at WHERE id = :id"));
        q->bind(":status", run.status).bind_text_or_null(":ended_at", run.ended_at).bind(":id", held->id).run();
      }
      continue;
    }
    RunInfo copy = run;
    if (copy.merged_from.empty()) copy.merged_from = source_path;
    run_map[run.id] = insert_run(copy, /*as_given=*/true);
    ++st.runs_added;
  }
  std::map<int64_t, int64_t> result_map;  // source result id -> id here
  for (const auto& r : src.results) {
    const int64_t run_id = run_map.at(r.run_id);
    {
      Query q(cache_->get("SELECT id FROM results WHERE run_id = :run_id AND cell_key = :key"));
      q->bind(":run_id", run_id).bind(":key", r.cell_key);
      if (q->step()) {
        result_map[r.id] = q->int64(0);
        ++st.results_present;
        continue;
      }
    }
    CellResult copy = r;
    copy.run_id = run_id;
    st.details_added += static_cast<int>(copy.details.size());
    result_map[r.id] = write_result(copy);
    ++st.results_added;
  }
  for (auto c : src.plan) {
    c.run_id = run_map.at(c.run_id);
    if (c.result_id) {
      auto it = result_map.find(*c.result_id);
      if (it == result_map.end()) {  // not in a consistent source: keep the row, unresolved
        c.result_id.reset();
        c.action = "pending";
      } else {
        c.result_id = it->second;
      }
    }
    std::optional<std::string> held_action;
    {
      Query q(cache_->get("SELECT action FROM run_cells WHERE run_id = :run_id AND position = :position"));
      q->bind(":run_id", c.run_id).bind(":position", c.position);
      if (q->step()) held_action = q->text(0);
    }
    if (!held_action) {
      insert_plan_row(c);
      ++st.plan_rows_added;
    } else if (*held_action == "pending" && c.action != "pending") {
      Query q(cache_->get(
          "UPDATE run_cells SET action = :action, result_id = :result_id WHERE run_id = :run_id AND "
          "position = :position"));
      q->bind(":action", c.action).bind(":result_id", c.result_id).bind(":run_id", c.run_id).bind(":position", c.position);
      q->run();
      ++st.plan_rows_updated;
    }
  }
  tx.commit();
  return st;
}

void Store::copy_to(const std::string& dest) const {
  Query q(cache_->get("VACUUM INTO :dest"));
  q->bind(":dest", dest).run();
}

}  // namespace qbench::store
