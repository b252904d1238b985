#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <tuple>

#include "qbench/common/errors.h"
#include "qbench/store/store.h"
#include "test_util.h"
#include "unit/store/store_test_util.h"

// sample_run, sample_result, RawDb, roll_back_schema and the store types.
using namespace qbench::store_test;

namespace {

/// A closed file store `file` in a fresh scratch directory `dir` with one run and one ok result
/// (cell k1, top-1 88.5): what the migration tests turn into an older version's file.
std::string one_result_store(const std::string& dir, const std::string& file) {
  const std::string path = (qbench::test::scratch_dir(dir) / file).string();
  Store s(path);
  const int64_t run_id = s.begin_run(sample_run());
  s.put_result(sample_result(run_id, "k1", "ok", 88.5));
  return path;
}

}  // namespace

TEST_CASE("store: every run and result field round-trips, NULLs and a huge seed included", "[store]") {
  Store s(":memory:");
  RunInfo info = sample_run();
  int64_t run_id = s.begin_run(info);
  CHECK(run_id > 0);

  auto got_run = s.run(run_id);
  REQUIRE(got_run);
  CHECK(got_run->id == run_id);
  CHECK(got_run->matrix_name == info.matrix_name);
  CHECK(got_run->matrix_file == info.matrix_file);
  CHECK(got_run->yaml_text == info.yaml_text);
  CHECK(got_run->yaml_hash == info.yaml_hash);
  CHECK(got_run->started_at == info.started_at);
  CHECK(got_run->ended_at.empty());
  CHECK(got_run->status == "running");
  CHECK(got_run->host == info.host);
  CHECK(got_run->git_rev == info.git_rev);
  CHECK(got_run->qbench_version == info.qbench_version);
  CHECK(got_run->torch_version == info.torch_version);
  CHECK(got_run->threads == 2);
  CHECK(got_run->command_line == info.command_line);
  CHECK(got_run->environment_json == info.environment_json);

  CellResult full;
  full.run_id = run_id;
  full.cell_key = "k-full";
  full.baseline_key = "k-base";
  full.dataset = "fashion-mnist";
  full.arch = "resnet20";
  full.algorithm = "lsq";
  full.profile = "academic";
  full.w_bits = 4;
  full.a_bits = 2;
  full.seed = (uint64_t{1} << 63) + 5;
  full.kind = "qat";
  full.status = "ok";
  full.error = "";
  full.top1 = 91.234567890123;
  full.top5 = 99.5;
  full.loss = 0.3125;
  full.fp32_top1 = 92.0;
  full.quant_wall_s = 12.5;
  full.eval_wall_s = 1.25;
  full.wall_s = 14.0;
  full.latency_ms_p50 = 0.875;
  full.latency_ms_p90 = 1.125;
  full.latency_batch = 32;
  full.latency_source = "measured-fakequant";
  full.eval_images = 10000;
  full.threads = 2;
  full.config_json = R"({"a":1,"text":"it's \"quoted\""})";
  full.started_at = "2026-11-23T10:00:01.000Z";
  full.finished_at = "2026-11-23T10:00:15.000Z";
  full.deploy_top1 = 91.125;
  full.deploy_agreement = 99.25;
  full.logit_cosine = 0.9987;
  full.sqnr_db = 31.5;
  int64_t full_id = s.put_result(full);

  CellResult sparse = sample_result(run_id, "k-sparse", "failed");
  sparse.seed = std::numeric_limits<uint64_t>::max();
  int64_t sparse_id = s.put_result(sparse);

  auto all = s.all_results();
  REQUIRE(all.size() == 2);
  const auto& a = all[0];
  CHECK(a.id == full_id);
  CHECK(a.run_id == run_id);
  CHECK(a.cell_key == full.cell_key);
  CHECK(a.baseline_key == full.baseline_key);
  CHECK(a.dataset == full.dataset);
  CHECK(a.arch == full.arch);
  CHECK(a.algorithm == full.algorithm);
  CHECK(a.profile == full.profile);
  CHECK(a.w_bits == 4);
  CHECK(a.a_bits == 2);
  CHECK(a.seed == 9223372036854775813ULL);
  CHECK(a.kind == "qat");
  CHECK(a.status == "ok");
  CHECK(a.error.empty());
  CHECK(a.top1 == full.top1);  // exact: REAL is a double
  CHECK(a.top5 == full.top5);
  CHECK(a.loss == full.loss);
  CHECK(a.fp32_top1 == full.fp32_top1);
  CHECK(a.quant_wall_s == full.quant_wall_s);
  CHECK(a.eval_wall_s == full.eval_wall_s);
  CHECK(a.wall_s == full.wall_s);
  CHECK(a.latency_ms_p50 == full.latency_ms_p50);
  CHECK(a.latency_ms_p90 == full.latency_ms_p90);
  CHECK(a.latency_batch == full.latency_batch);
  CHECK(a.latency_source == full.latency_source);
  CHECK(a.eval_images == 10000);
  CHECK(a.threads == 2);
  CHECK(a.config_json == full.config_json);
  CHECK(a.started_at == full.started_at);
  CHECK(a.finished_at == full.finished_at);
  CHECK(a.deploy_top1 == full.deploy_top1);
  CHECK(a.deploy_agreement == full.deploy_agreement);
  CHECK(a.logit_cosine == full.logit_cosine);
  CHECK(a.sqnr_db == full.sqnr_db);

  const auto& b = all[1];
  CHECK(b.id == sparse_id);
  CHECK(b.seed == std::numeric_limits<uint64_t>::max());
  CHECK(b.status == "failed");
  CHECK(b.error == "boom");
  CHECK_FALSE(b.top1);
  CHECK_FALSE(b.top5);
  CHECK_FALSE(b.loss);
  CHECK_FALSE(b.fp32_top1);
  CHECK_FALSE(b.quant_wall_s);
  CHECK_FALSE(b.eval_wall_s);
  CHECK_FALSE(b.wall_s);
  CHECK_FALSE(b.latency_ms_p50);
  CHECK_FALSE(b.latency_ms_p90);
  CHECK_FALSE(b.latency_batch);
  CHECK(b.latency_source.empty());
  CHECK_FALSE(b.deploy_top1);
  CHECK_FALSE(b.deploy_agreement);
  CHECK_FALSE(b.logit_cosine);
  CHECK_FALSE(b.sqnr_db);

  s.end_run(run_id, "finished");
  got_run = s.run(run_id);
  CHECK(got_run->status == "finished");
  CHECK(got_run->ended_at.size() == 24);  // 2026-11-23T10:32:23.123Z
  CHECK(got_run->ended_at.back() == 'Z');
}

TEST_CASE("store: a file store is in WAL mode at the current schema version, in a new directory", "[store]") {
  auto dir = qbench::test::scratch_dir("store_wal");
  auto path = (dir / "nested" / "deeper" / "results.db").string();
  {
    Store s(path);
    CHECK(s.path() == path);
    CHECK(s.user_version() == Store::schema_version());
    CHECK(Store::schema_version() >= 1);
  }
  RawDb raw(path);
  CHECK(raw.text("PRAGMA journal_mode") == "wal");
  CHECK(raw.text("PRAGMA user_version") == std::to_string(Store::schema_version()));
  CHECK(raw.text("SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                 "('runs','results','run_cells')") == "3");
  CHECK(raw.text("SELECT count(*) FROM sqlite_master WHERE type='index' AND name='results_by_key_status'") ==
        "1");
}

TEST_CASE("store: reopening a file keeps its runs and results", "[store]") {
  auto path = (qbench::test::scratch_dir("store_reopen") / "r.db").string();
  int64_t run_id = 0, result_id = 0;
  {
    Store s(path);
    run_id = s.begin_run(sample_run());
    s.plan_cells(run_id, {{run_id, 0, "k1", "pending", std::nullopt, "{}"}});
    result_id = s.put_result(sample_result(run_id, "k1"));
    s.end_run(run_id, "finished");
  }
  Store s(path);
  CHECK(s.user_version() == Store::schema_version());
  CHECK(s.latest_run_id() == run_id);
  REQUIRE(s.runs().size() == 1);
  CHECK(s.runs()[0].status == "finished");
  auto rows = s.report_rows(run_id);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].plan.result_id == result_id);
  REQUIRE(rows[0].result);
  CHECK(rows[0].result->top1 == 90.0);
  // A second run appends; ids keep growing.
  int64_t run2 = s.begin_run(sample_run());
  CHECK(run2 > run_id);
  CHECK(s.latest_run_id() == run2);
}

TEST_CASE("store: a file from a newer qbench is refused and left alone", "[store]") {
  auto path = (qbench::test::scratch_dir("store_newer") / "new.db").string();
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE future (x); PRAGMA user_version = 999;");
  }
  try {
    Store s(path);
    FAIL("expected StoreError");
  } catch (const StoreError& e) {
    CHECK_THAT(e.what(), Catch::Contains("written by a newer qbench"));
    CHECK_THAT(e.what(), Catch::Contains(path));
    CHECK_THAT(e.what(), Catch::Contains("999"));
  }
  RawDb raw(path);
  CHECK(raw.text("PRAGMA user_version") == "999");
  CHECK(raw.text("PRAGMA journal_mode") == "delete");
}

TEST_CASE("store: a file that is not a database gives a StoreError", "[store]") {
  auto dir = qbench::test::scratch_dir("store_corrupt");
  SECTION("garbage bytes") {
    auto path = (dir / "garbage.db").string();
    {
      std::ofstream f(path, std::ios::binary);
      for (int i = 0; i < 512; ++i) f << "not a database, just garbage bytes\x01\x02\xff";
    }
    CHECK_THROWS_AS(Store(path), StoreError);
    try {
      Store s(path);
    } catch (const StoreError& e) {
      CHECK_THAT(e.what(), Catch::Contains(path));
      CHECK(e.code() == SQLITE_NOTADB);
    }
  }
  SECTION("a valid header followed by garbage") {
    auto path = (dir / "truncated.db").string();
    {
      std::ofstream f(path, std::ios::binary);
      f.write("SQLite format 3\0", 16);
      for (int i = 0; i < 300; ++i) f << "\xde\xad\xbe\xef garbage";
    }
    CHECK_THROWS_AS(Store(path), StoreError);
  }
  SECTION("a directory where the file should be") {
    CHECK_THROWS_AS(Store(dir.string()), StoreError);
  }
}

TEST_CASE("store: put_result twice for one run and key leaves one row with the new values", "[store]") {
  Store s(":memory:");
  int64_t run_id = s.begin_run(sample_run());
  s.plan_cells(run_id, {{run_id, 0, "k1", "pending", std::nullopt, ""}});
  auto first = sample_result(run_id, "k1", "failed");
  int64_t id1 = s.put_result(first);
  auto second = sample_result(run_id, "k1", "ok", 88.5);
  int64_t id2 = s.put_result(second);
  CHECK(id1 == id2);  // updated in place: plan rows pointing at it stay valid
  auto all = s.all_results();
  REQUIRE(all.size() == 1);
  CHECK(all[0].status == "ok");
  CHECK(all[0].error.empty());
  CHECK(all[0].top1 == 88.5);
  auto rows = s.report_rows(run_id);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].plan.action == "run");
  CHECK(rows[0].plan.result_id == id2);
}

TEST_CASE("store: finished_result ignores failed rows and picks the newest ok one", "[store]") {
  Store s(":memory:");
  CHECK_FALSE(s.finished_result("k1"));
  int64_t r1 = s.begin_run(sample_run());
  s.put_result(sample_result(r1, "k1", "ok", 80.0));
  s.put_result(sample_result(r1, "other", "ok", 10.0));
  int64_t r2 = s.begin_run(sample_run());
  int64_t newest_ok = s.put_result(sample_result(r2, "k1", "ok", 81.0));
  int64_t r3 = s.begin_run(sample_run());
  s.put_result(sample_result(r3, "k1", "failed"));
  auto f = s.finished_result("k1");
  REQUIRE(f);
  CHECK(f->id == newest_ok);
  CHECK(f->run_id == r2);
  CHECK(f->top1 == 81.0);
  s.put_result(sample_result(r3, "only-failed", "failed"));
  CHECK_FALSE(s.finished_result("only-failed"));
}

TEST_CASE("store: plan rows keep order, skipped rows point at an earlier run's result", "[store]") {
  Store s(":memory:");
  int64_t r1 = s.begin_run(sample_run());
  int64_t earlier = s.put_result(sample_result(r1, "k-done", "ok", 91.0));
  s.end_run(r1, "finished");

  int64_t r2 = s.begin_run(sample_run());
  s.plan_cells(r2, {{r2, 0, "k-done", "skipped", earlier, R"({"arch":"a"})"},
                    {r2, 1, "k-new", "pending", std::nullopt, R"({"arch":"b"})"},
                    {r2, 2, "k-later", "pending", std::nullopt, ""}});
  int64_t fresh = s.put_result(sample_result(r2, "k-new", "ok", 70.0));
  // A result for a cell that was not planned is appended to the plan.
  s.put_result(sample_result(r2, "k-unplanned", "failed"));

  auto rows = s.report_rows(r2);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].plan.position == 0);
  CHECK(rows[0].plan.action == "skipped");
  CHECK(rows[0].plan.result_id == earlier);
  CHECK(rows[0].plan.config_json == R"({"arch":"a"})");
  REQUIRE(rows[0].result);
  CHECK(rows[0].result->run_id == r1);
  CHECK(rows[0].result->top1 == 91.0);

  CHECK(rows[1].plan.action == "run");
  CHECK(rows[1].plan.result_id == fresh);
  REQUIRE(rows[1].result);
  CHECK(rows[1].result->run_id == r2);

  CHECK(rows[2].plan.cell_key == "k-later");
  CHECK(rows[2].plan.action == "pending");
  CHECK_FALSE(rows[2].plan.result_id);
  CHECK_FALSE(rows[2].result);

  CHECK(rows[3].plan.position == 3);
  CHECK(rows[3].plan.cell_key == "k-unplanned");
  CHECK(rows[3].plan.action == "run");
  REQUIRE(rows[3].result);
  CHECK(rows[3].result->status == "failed");

  CHECK(s.report_rows(r1).size() == 1);  // recorded without a plan: appended
  CHECK(s.report_rows(12345).empty());
}

TEST_CASE("store: a failure midway through a transaction leaves no partial rows", "[store]") {
  auto path = (qbench::test::scratch_dir("store_atomic") / "a.db").string();
  Store s(path);
  int64_t run_id = s.begin_run(sample_run());

  SECTION("plan_cells: a duplicate position on the third row") {
    CHECK_THROWS_AS(s.plan_cells(run_id, {{run_id, 0, "a", "pending", std::nullopt, ""},
                                          {run_id, 1, "b", "pending", std::nullopt, ""},
                                          {run_id, 1, "c", "pending", std::nullopt, ""}}),
                    StoreError);
    CHECK(s.report_rows(run_id).empty());
    // The store is still usable afterwards.
    s.plan_cells(run_id, {{run_id, 0, "a", "pending", std::nullopt, ""}});
    CHECK(s.report_rows(run_id).size() == 1);
  }
  SECTION("put_result: the results row is written, then the plan update fails") {
    s.plan_cells(run_id, {{run_id, 0, "k1", "pending", std::nullopt, ""}});
    {
      RawDb raw(path);
      raw.exec("CREATE TRIGGER fail_plan BEFORE UPDATE ON run_cells BEGIN "
               "SELECT RAISE(ABORT, 'simulated failure'); END;");
    }
    try {
      s.put_result(sample_result(run_id, "k1"));
      FAIL("expected StoreError");
    } catch (const StoreError& e) {
      CHECK_THAT(e.what(), Catch::Contains("simulated failure"));
      CHECK(e.code() == SQLITE_CONSTRAINT);
    }
    CHECK(s.all_results().empty());
    CHECK(s.report_rows(run_id)[0].plan.action == "pending");
    {
      RawDb raw(path);
      raw.exec("DROP TRIGGER fail_plan");
    }
    s.put_result(sample_result(run_id, "k1"));
    CHECK(s.all_results().size() == 1);
  }
}

TEST_CASE("store: constraint violations surface as StoreError with the SQLite code", "[store]") {
  Store s(":memory:");
  SECTION("a result for a run that does not exist") {
    try {
      s.put_result(sample_result(42, "k"));
      FAIL("expected StoreError");
    } catch (const StoreError& e) {
      CHECK(e.code() == SQLITE_CONSTRAINT);
      CHECK_THAT(e.what(), Catch::Contains("FOREIGN KEY"));
    }
    CHECK(s.all_results().empty());
  }
  SECTION("an unknown status") {
    int64_t run_id = s.begin_run(sample_run());
    CHECK_THROWS_AS(s.put_result(sample_result(run_id, "k", "weird")), StoreError);
    CHECK_THROWS_AS(s.end_run(run_id, "sleeping"), StoreError);
    CHECK_THROWS_AS(s.end_run(run_id + 100, "finished"), StoreError);
  }
}

TEST_CASE("store: runs are listed oldest first, missing ones are empty", "[store]") {
  Store s(":memory:");
  CHECK_FALSE(s.latest_run_id());
  CHECK(s.runs().empty());
  CHECK_FALSE(s.run(1));
  auto info = sample_run();
  info.started_at.clear();  // filled with the current time
  int64_t a = s.begin_run(info);
  info.matrix_name = "second";
  int64_t b = s.begin_run(info);
  auto all = s.runs();
  REQUIRE(all.size() == 2);
  CHECK(all[0].id == a);
  CHECK(all[1].id == b);
  CHECK(all[1].matrix_name == "second");
  CHECK(all[0].started_at.size() == 24);
  CHECK(s.latest_run_id() == b);
}

TEST_CASE("store: two connections to one file see each other's commits", "[store]") {
  auto path = (qbench::test::scratch_dir("store_two") / "shared.db").string();
  Store writer(path);
  Store reader(path);  // already migrated: opens without a second migration
  int64_t run_id = writer.begin_run(sample_run());
  writer.put_result(sample_result(run_id, "k1", "ok", 77.0));
  auto f = reader.finished_result("k1");
  REQUIRE(f);
  CHECK(f->top1 == 77.0);
  CHECK(reader.latest_run_id() == run_id);
}

TEST_CASE("store: a version-1 file gains the nullable sim-to-deploy columns and keeps its rows", "[store]") {
  const std::string path = one_result_store("migrate_v1", "v1.db");
  // Turn the file back into what schema version 1 wrote: no deploy columns, no detail table,
  // no device columns, user_version 1.
  roll_back_schema(path, "ALTER TABLE results DROP COLUMN deploy_top1; ALTER TABLE results DROP COLUMN deploy_agreement; "
                         "ALTER TABLE results DROP COLUMN logit_cosine; ALTER TABLE results DROP COLUMN sqnr_db; "
                         "ALTER TABLE results DROP COLUMN device; ALTER TABLE runs DROP COLUMN device; "
                         "ALTER TABLE results DROP COLUMN deploy_engine; "
                         "DROP TABLE cell_details; PRAGMA user_version = 1;");
  CHECK(RawDb(path).text("SELECT count(*) FROM pragma_table_info('results') WHERE name = 'sqnr_db'") == "0");
  Store s(path);
  CHECK(s.user_version() == Store::schema_version());
  CHECK(Store::schema_version() == 6);
  auto all = s.all_results();
  REQUIRE(all.size() == 1);
  CHECK(s.details(all[0].id).empty());  // the v3 table exists and the old row has no details
  CHECK(all[0].top1 == 88.5);
  CHECK_FALSE(all[0].deploy_top1);
  CHECK_FALSE(all[0].sqnr_db);
  auto r = sample_result(all[0].run_id, "k2");
  r.deploy_top1 = 87.0;
  r.deploy_agreement = 98.5;
  s.put_result(r);
  CHECK(s.finished_result("k2")->deploy_agreement == 98.5);
}

TEST_CASE("store: a version-3 file gains the device columns, its runs and rows read cpu", "[store]") {
  const std::string path = one_result_store("migrate_v3", "v3.db");
  // What schema version 3 wrote: everything but the device columns.
  roll_back_schema(path, "ALTER TABLE results DROP COLUMN device; ALTER TABLE runs DROP COLUMN device; "
                         "ALTER TABLE results DROP COLUMN deploy_engine; PRAGMA user_version = 3;");
  CHECK(RawDb(path).text("SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'device'") == "0");
  Store s(path);
  CHECK(s.user_version() == Store::schema_version());
  auto runs = s.runs();
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].device == "cpu");  // every run before version 4 ran on the CPU
  CHECK(runs[0].threads == 2);
  auto all = s.all_results();
  REQUIRE(all.size() == 1);
  CHECK(all[0].device == "cpu");
  CHECK(all[0].top1 == 88.5);
  // New runs and rows record their device.
  auto info = sample_run();
  info.device = "cuda:0";
  const int64_t run2 = s.begin_run(info);
  auto r = sample_result(run2, "k2");
  r.device = "cuda:0";
  s.put_result(r);
  CHECK(s.run(run2)->device == "cuda:0");
  CHECK(s.finished_result("k2")->device == "cuda:0");
  RawDb raw(path);
  CHECK(raw.text("SELECT group_concat(device, ',') FROM (SELECT device FROM results ORDER BY id)") == "cpu,cuda:0");
}

TEST_CASE("store: a version-4 file gains deploy_engine, named from the profile for rows LibTorch deployed",
          "[store]") {
  auto dir = qbench::test::scratch_dir("migrate_v4");
  const std::string path = (dir / "v4.db").string();
  {
    Store s(path);
    int64_t run_id = s.begin_run(sample_run());
    for (const auto& [key, profile, deployed] :
         std::vector<std::tuple<std::string, std::string, bool>>{{"k1", "x86-onednn", true},
                                                                 {"k2", "qnnpack", true},
                                                                 {"k3", "academic", false},
                                                                 {"k4", "x86-onednn", false}}) {
      auto r = sample_result(run_id, key, "ok", 80.0);
      r.profile = profile;
      if (deployed) r.deploy_top1 = 79.5;
      s.put_result(r);
    }
  }
  roll_back_schema(path, "ALTER TABLE results DROP COLUMN deploy_engine; PRAGMA user_version = 4;");
  Store s(path);
  CHECK(s.user_version() == Store::schema_version());
  CHECK(s.finished_result("k1")->deploy_engine == "libtorch-onednn");
  CHECK(s.finished_result("k2")->deploy_engine == "libtorch-qnnpack");
  CHECK(s.finished_result("k3")->deploy_engine.empty());
  CHECK(s.finished_result("k4")->deploy_engine.empty());  // x86-onednn but not deployed (e.g. refused)
  auto r = sample_result(s.finished_result("k1")->run_id, "k5");
  r.deploy_top1 = 70.0;
  r.deploy_engine = "onnxruntime";
  s.put_result(r);
  CHECK(s.finished_result("k5")->deploy_engine == "onnxruntime");
}

TEST_CASE("store: the device round-trips, an empty one is stored as cpu", "[store]") {
  Store s(":memory:");
  auto info = sample_run();
  CHECK(info.device == "cpu");  // the default
  info.device.clear();
  const int64_t a = s.begin_run(info);
  info.device = "cuda:1";
  const int64_t b = s.begin_run(info);
  CHECK(s.run(a)->device == "cpu");
  CHECK(s.run(b)->device == "cuda:1");
  auto r = sample_result(b, "k");
  r.device = "cuda:1";
  s.put_result(r);
  auto rows = s.report_rows(b);
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].result);
  CHECK(rows[0].result->device == "cuda:1");
  auto r2 = sample_result(a, "k2");
  r2.device.clear();
  s.put_result(r2);
  CHECK(s.finished_result("k2")->device == "cpu");
}

TEST_CASE("store: detail rows round-trip per section in order and are replaced with their result", "[store]") {
  Store s(":memory:");
  const int64_t run = s.begin_run(sample_run());
  CellResult r = sample_result(run, "k1");
  r.details.push_back({"deploy_layers", "conv1", {{"sqnr_db", 41.5}, {"max_abs_err", 0.02}}, ""});
  r.details.push_back({"recon_units", "layer1.0", {{"final_loss", 0.125}}, "block"});
  r.details.push_back({"deploy_layers", "layer1.0.conv1", {{"sqnr_db", std::nan("")}}, "diverges here"});
  const int64_t id = s.put_result(r);

  auto all = s.details(id);
  REQUIRE(all.size() == 3);
  auto deploy = s.details(id, "deploy_layers");
  REQUIRE(deploy.size() == 2);
  CHECK(deploy[0].name == "conv1");  // insertion order within the section
  CHECK(deploy[0].values.at("sqnr_db") == 41.5);
  CHECK(deploy[0].values.at("max_abs_err") == 0.02);
  CHECK(deploy[1].name == "layer1.0.conv1");
  CHECK(std::isnan(deploy[1].values.at("sqnr_db")));  // stored as JSON null, read back as NaN
  CHECK(deploy[1].text == "diverges here");
  auto recon = s.details(id, "recon_units");
  REQUIRE(recon.size() == 1);
  CHECK(recon[0].text == "block");
  CHECK(s.details(id, "nothing").empty());

  // Re-running the cell in the same run replaces the row and its details (no duplicates).
  r.details = {{"deploy_layers", "fc", {{"sqnr_db", 30.0}}, ""}};
  CHECK(s.put_result(r) == id);
  auto again = s.details(id);
  REQUIRE(again.size() == 1);
  CHECK(again[0].name == "fc");
}
