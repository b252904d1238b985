// Schema version 6 (run uid and origin) and Store::merge_from: stores folded into one without
// losing or duplicating anything.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/store/store.h"
#include "test_util.h"
#include "unit/store/store_test_util.h"

// sample_run, sample_result, RawDb, roll_back_schema and the store types.
using namespace qbench::store_test;

namespace {

/// A shard as a cluster task writes it: one run, its plan of one cell, the result (with details).
void write_shard(const std::string& path, const std::string& key, double top1, const std::string& job) {
  Store s(path);
  const int64_t run = s.begin_run(sample_run("slurm", job));
  PlannedCell p;
  p.cell_key = key;
  p.action = "pending";
  p.config_json = "{\"k\":1}";
  s.plan_cells(run, {p});
  auto r = sample_result(run, key, "ok", top1);
  r.details.push_back({"recon_units", "layer1", {{"loss", 0.5}}, "first"});
  r.details.push_back({"recon_units", "layer2", {{"loss", 0.25}}, "second"});
  s.put_result(r);
  s.end_run(run, "finished");
}

std::string counts(const std::string& path) {
  RawDb r(path);
  return r.text("SELECT (SELECT count(*) FROM runs) || ' ' || (SELECT count(*) FROM results) || ' ' || "
                "(SELECT count(*) FROM run_cells) || ' ' || (SELECT count(*) FROM cell_details)");
}

}  // namespace

TEST_CASE("store v6: every run gets a distinct uid, a given uid and origin are kept", "[store][merge]") {
  Store s(":memory:");
  const int64_t a = s.begin_run(sample_run());
  const int64_t b = s.begin_run(sample_run());
  auto ra = s.run(a), rb = s.run(b);
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->uid.size() == 32);
  CHECK(ra->uid.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(ra->uid != rb->uid);
  CHECK(ra->origin.scheduler.empty());
  auto info = sample_run("slurm", "7");
  info.uid = "fixed-uid";
  const int64_t c = s.begin_run(info);
  CHECK(s.run(c)->uid == "fixed-uid");
  CHECK(s.run_by_uid("fixed-uid")->id == c);
  CHECK(s.run(c)->origin.job_id == "7");
  CHECK(s.run(c)->origin.array_job_id == "100");
  CHECK(s.run(c)->origin.plan_id == "plan-1");
  CHECK_FALSE(s.run_by_uid("nope"));
  CHECK_THROWS_AS(s.begin_run(info), StoreError);  // uids are unique
  qbench::store::RunOrigin o{"local", "vm-12", "1-cells", "3", "plan-2"};
  s.set_run_origin(a, o);
  CHECK(s.run(a)->origin.scheduler == "local");
  CHECK(s.run(a)->origin.array_task_id == "3");
  CHECK(s.run(a)->origin.plan_id == "plan-2");
  CHECK_THROWS_AS(s.set_run_origin(999, o), StoreError);
}

TEST_CASE("store v6: a version-5 file gains uids for its runs and keeps its rows", "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_v5");
  const std::string path = (dir / "v5.db").string();
  {
    Store s(path);
    const int64_t run = s.begin_run(sample_run());
    s.put_result(sample_result(run, "k1", "ok", 80.0));
    s.begin_run(sample_run());
  }
  roll_back_schema(path, "PRAGMA user_version = 5;");
  Store s(path);
  CHECK(s.user_version() == 6);
  auto runs = s.runs();
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].uid.size() == 32);
  CHECK(runs[1].uid.size() == 32);
  CHECK(runs[0].uid != runs[1].uid);
  CHECK(runs[0].origin.scheduler.empty());
  CHECK(s.finished_result("k1")->top1 == 80.0);
}

TEST_CASE("store: record_run writes a finished run and its plan at once", "[store][merge]") {
  Store s(":memory:");
  const int64_t first = s.begin_run(sample_run());
  const int64_t rid = s.put_result(sample_result(first, "k1", "ok", 70.0));
  auto info = sample_run("merge");
  info.status = "finished";
  info.ended_at = "2026-12-01T11:00:00.000Z";
  PlannedCell p1, p2;
  p1.position = 0;
  p1.cell_key = "k1";
  p1.action = "skipped";
  p1.result_id = rid;
  p2.position = 1;
  p2.cell_key = "k2";
  p2.action = "pending";
  const int64_t id = s.record_run(info, {p1, p2});
  CHECK(s.run(id)->status == "finished");
  CHECK(s.run(id)->ended_at == "2026-12-01T11:00:00.000Z");
  const auto rows = s.report_rows(id);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].result->top1 == 70.0);
  CHECK(rows[0].plan.action == "skipped");
  CHECK_FALSE(rows[1].result);
  CHECK(s.plan(id).size() == 2);
}

TEST_CASE("store: merge_from copies runs, results, details and plans with their provenance, and twice adds nothing",
          "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_basic");
  const std::string a = (dir / "a.db").string(), b = (dir / "b.db").string(), target = (dir / "t.db").string();
  write_shard(a, "k1", 81.0, "11");
  write_shard(b, "k2", 82.0, "12");
  {
    // The target already holds a run of its own.
    Store t(target);
    const int64_t run = t.begin_run(sample_run());
    t.put_result(sample_result(run, "k0", "ok", 50.0));
  }
  Store t(target);
  auto st = t.merge_from(a);
  CHECK(st.runs_added == 1);
  CHECK(st.results_added == 1);
  CHECK(st.plan_rows_added == 1);
  CHECK(st.details_added == 2);
  st = t.merge_from(b);
  CHECK(st.results_added == 1);
  const std::string after = counts(target);
  CHECK(after == "3 3 3 4");
  // Again: nothing new, the same rows.
  st = t.merge_from(a);
  CHECK(st.runs_added == 0);
  CHECK(st.runs_present == 1);
  CHECK(st.results_added == 0);
  CHECK(st.results_present == 1);
  CHECK(st.plan_rows_added == 0);
  t.merge_from(b);
  CHECK(counts(target) == after);
  // Provenance: the shard's uid, job, array task, host and the file it came from.
  const auto src = Store::read_contents(a);
  auto held = t.run_by_uid(src.runs.at(0).uid);
  REQUIRE(held);
  CHECK(held->origin.scheduler == "slurm");
  CHECK(held->origin.job_id == "11");
  CHECK(held->origin.array_task_id == "11");
  CHECK(held->host == "box");
  CHECK(held->merged_from == a);
  CHECK(held->status == "finished");
  // The plan row points at the copied result, whose details came along in order.
  const auto rows = t.report_rows(held->id);
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].result);
  CHECK(rows[0].plan.action == "run");
  CHECK(rows[0].result->top1 == 81.0);
  CHECK(rows[0].plan.config_json == "{\"k\":1}");
  const auto details = t.details(rows[0].result->id);
  REQUIRE(details.size() == 2);
  CHECK(details[0].name == "layer1");
  CHECK(details[1].values.at("loss") == 0.25);
  CHECK(t.plan_results("plan-1").size() == 2);
  CHECK(t.plan_results("other").empty());
  // The sources are unchanged: still the one row each, still in rollback-journal mode.
  CHECK(counts(a) == "1 1 1 2");
  CHECK(RawDb(t.path()).text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("store: merge_from renumbers a store with several runs and a skipped row, and a merged store merges on",
          "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_skipped");
  const std::string src = (dir / "src.db").string(), mid = (dir / "mid.db").string(), last = (dir / "last.db").string();
  {
    Store s(src);
    const int64_t r1 = s.begin_run(sample_run());
    s.plan_cells(r1, {PlannedCell{0, 0, "k1", "pending", std::nullopt, "{}"}});
    const int64_t id1 = s.put_result(sample_result(r1, "k1", "ok", 60.0));
    s.end_run(r1, "finished");
    const int64_t r2 = s.begin_run(sample_run());
    s.plan_cells(r2, {PlannedCell{0, 0, "k1", "skipped", id1, "{}"}, PlannedCell{0, 1, "k2", "pending", std::nullopt, "{}"}});
    s.put_result(sample_result(r2, "k2", "failed", 0));
    s.end_run(r2, "failed");
  }
  {
    Store m(mid);
    // Shift the ids so that the copies get other numbers than the originals.
    const int64_t pad = m.begin_run(sample_run());
    m.put_result(sample_result(pad, "pad1", "ok", 1));
    m.put_result(sample_result(pad, "pad2", "ok", 2));
    m.merge_from(src);
    Store l(last);
    l.merge_from(mid);
    l.merge_from(src);  // already there through mid: nothing added
    CHECK(counts(last) == counts(mid));
    const auto runs = l.runs();
    REQUIRE(runs.size() == 3);
    // The second source run's skipped row points at the first one's result, as in the source.
    const auto rows = l.report_rows(runs[2].id);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].plan.action == "skipped");
    REQUIRE(rows[0].result);
    CHECK(rows[0].result->top1 == 60.0);
    CHECK(rows[0].result->run_id == runs[1].id);
    CHECK(rows[1].result->status == "failed");
    // A run merged on keeps the file it first came from.
    CHECK(runs[1].merged_from == src);
    CHECK(runs[0].merged_from == mid);
  }
}

TEST_CASE("store: merge_from takes what a live source added since (results, plan rows, the run's end)",
          "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_live");
  const std::string src = (dir / "src.db").string(), target = (dir / "t.db").string();
  Store s(src);
  const int64_t run = s.begin_run(sample_run());
  s.plan_cells(run, {PlannedCell{0, 0, "k1", "pending", std::nullopt, "{}"},
                     PlannedCell{0, 1, "k2", "pending", std::nullopt, "{}"}});
  s.put_result(sample_result(run, "k1", "ok", 70.0));
  Store t(target);
  auto st = t.merge_from(src);
  CHECK(st.results_added == 1);
  const int64_t held = t.run_by_uid(s.run(run)->uid)->id;
  CHECK(t.run(held)->status == "running");
  CHECK_FALSE(t.report_rows(held)[1].result);
  s.put_result(sample_result(run, "k2", "ok", 71.0));
  s.end_run(run, "finished");
  st = t.merge_from(src);
  CHECK(st.runs_added == 0);
  CHECK(st.results_added == 1);
  CHECK(st.results_present == 1);
  CHECK(st.plan_rows_updated == 1);
  CHECK(t.run(held)->status == "finished");
  CHECK(t.report_rows(held)[1].result->top1 == 71.0);
}

TEST_CASE("store: merge_from migrates an older source, refuses itself, a missing or foreign file", "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_refuse");
  const std::string old = (dir / "old.db").string(), target = (dir / "t.db").string();
  write_shard(old, "k1", 75.0, "3");
  roll_back_schema(old, "ALTER TABLE results DROP COLUMN deploy_engine; PRAGMA user_version = 4;");
  Store t(target);
  const auto contents = Store::read_contents(old);
  CHECK(contents.user_version == 4);  // as found; migrated in place before it was read
  CHECK(RawDb(old).text("PRAGMA user_version") == "6");
  auto st = t.merge_from(old);
  CHECK(st.results_added == 1);
  CHECK(t.finished_result("k1")->top1 == 75.0);
  CHECK(t.merge_from(old).results_added == 0);  // the uid drawn by the migration is kept

  const std::string before = counts(target);
  CHECK_THROWS_WITH(t.merge_from(target), Catch::Contains("cannot merge a store into itself"));
  CHECK_THROWS_WITH(t.merge_from((dir / "missing.db").string()), Catch::Contains("no such file"));
  qbench::test::spit(dir / "junk.db", std::string(4096, 'x'));
  CHECK_THROWS_AS(t.merge_from((dir / "junk.db").string()), qbench::store::SourceStoreError);
  CHECK_THROWS_AS(t.merge_from((dir / "missing.db").string()), qbench::store::SourceStoreError);
  // Merging into itself is not a bad source: merge_workdir must stop on it, not skip it.
  try {
    t.merge_from(target);
    FAIL("merging a store into itself did not throw");
  } catch (const qbench::store::SourceStoreError&) {
    FAIL("merging a store into itself was reported as a bad source");
  } catch (const StoreError&) {
  }
  {
    RawDb empty((dir / "empty.db").string());
    empty.exec("CREATE TABLE x (a)");
  }
  CHECK_THROWS_WITH(t.merge_from((dir / "empty.db").string()), Catch::Contains("not a qbench results store"));
  CHECK(counts(target) == before);
}

TEST_CASE("store: merge_from into a store a reader is reading (WAL): the reader's snapshot stays, then sees it",
          "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_reader");
  const std::string src = (dir / "s.db").string(), target = (dir / "t.db").string();
  write_shard(src, "k1", 90.0, "5");
  Store t(target);
  t.begin_run(sample_run());
  RawDb reader(target);
  reader.exec("BEGIN");
  CHECK(reader.text("SELECT count(*) FROM runs") == "1");
  t.merge_from(src);  // does not wait for the reader
  CHECK(reader.text("SELECT count(*) FROM runs") == "1");
  reader.exec("COMMIT");
  CHECK(reader.text("SELECT count(*) FROM runs") == "2");
}

TEST_CASE("store: copy_to writes one self-contained file in rollback-journal mode", "[store][merge]") {
  auto dir = qbench::test::scratch_dir("merge_copy");
  const std::string src = (dir / "s.db").string(), copy = (dir / "copy.db").string();
  write_shard(src, "k1", 65.0, "9");
  {
    Store s(src);
    s.copy_to(copy);
    CHECK_THROWS_AS(s.copy_to(copy), StoreError);  // never over an existing file
  }
  CHECK(RawDb(copy).text("PRAGMA journal_mode") == "delete");
  CHECK_FALSE(std::filesystem::exists(copy + "-wal"));
  CHECK(counts(copy) == counts(src));
  const auto c = Store::read_contents(copy);
  REQUIRE(c.results.size() == 1);
  CHECK(c.results[0].details.size() == 2);
  CHECK(c.runs[0].origin.job_id == "9");
}
