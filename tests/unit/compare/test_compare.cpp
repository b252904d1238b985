#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/compare/compare.h"
#include "qbench/store/store.h"
#include "test_util.h"

using namespace qbench;
using compare::Verdict;
using store::CellResult;
using store::PlannedCell;
using store::Store;

namespace {

CellResult cell(int64_t run_id, const std::string& algorithm, int bits, std::optional<double> top1,
                const std::string& key_salt = "") {
  CellResult r;
  r.run_id = run_id;
  const bool fp32 = algorithm == "fp32";
  r.cell_key = sha256_hex(algorithm + std::to_string(bits) + key_salt);
  r.baseline_key = sha256_hex("fp3232");
  r.dataset = "fashion-mnist";
  r.arch = "resnet8";
  r.algorithm = algorithm;
  r.profile = fp32 ? "none" : "academic";
  r.w_bits = r.a_bits = fp32 ? 32 : bits;
  r.kind = fp32 ? "fp32" : algorithm == "lsq" ? "qat" : "ptq";
  r.status = top1 ? "ok" : "failed";
  r.top1 = top1;
  if (!top1) r.error = "NaN loss at epoch 1, step 3\nsecond line";
  r.started_at = r.finished_at = "2026-11-23T10:00:00.000Z";
  return r;
}

int64_t add_run(Store& s, const std::vector<CellResult>& cells, const std::vector<PlannedCell>& pending = {},
                const std::string& environment_json = "") {
  store::RunInfo info;
  info.matrix_name = "nightly";
  info.environment_json = environment_json;
  info.git_rev = "abc1234";
  info.host = "box";
  info.started_at = "2026-11-23T10:00:00.000Z";
  int64_t id = s.begin_run(info);
  std::vector<PlannedCell> plan;
  int pos = 0;
  for (auto c : cells) plan.push_back({id, pos++, c.cell_key, "pending", std::nullopt, ""});
  for (auto p : pending) {
    p.run_id = id;
    p.position = pos++;
    plan.push_back(p);
  }
  s.plan_cells(id, plan);
  for (auto c : cells) {
    c.run_id = id;
    s.put_result(c);
  }
  s.end_run(id, "finished");
  return id;
}

const char* const kFp32 = "fashion-mnist/resnet8/fp32/none/fp32/seed0";
const char* const kW8 = "fashion-mnist/resnet8/minmax/academic/w8a8/seed0";
const char* const kW4 = "fashion-mnist/resnet8/minmax/academic/w4a4/seed0";
const char* const kLsq = "fashion-mnist/resnet8/lsq/academic/w4a4/seed0";

/// The baseline run: FP32 88.50, minmax w8a8 88.40, w4a4 84.00, lsq w4a4 86.00.
struct Fixture {
  Store store{":memory:"};
  int64_t base_run = add_run(store, {cell(0, "fp32", 32, 88.50), cell(0, "minmax", 8, 88.40), cell(0, "minmax", 4, 84.00),
                                     cell(0, "lsq", 4, 86.00)});
  compare::Baseline baseline() const {
    return compare::baseline_from_run(report::load_input(store, base_run), 0.5, false);
  }
};

const compare::CellComparison& find(const compare::Comparison& c, const std::string& id) {
  for (const auto& x : c.cells)
    if (x.cell == id) return x;
  FAIL("no cell " << id);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("compare: a baseline file is one reviewable line per cell", "[compare]") {
  Fixture fx;
  auto b = fx.baseline();
  REQUIRE(b.cells.size() == 4);
  CHECK(b.matrix == "nightly");
  CHECK(b.source_run == "run 1, git abc1234, host box, 2026-11-23T10:00:00.000Z");
  auto text = compare::to_json(b);
  CHECK(text ==
        "{\n"
        "  \"format\": \"qbench-baseline\",\n"
        "  \"version\": 1,\n"
        "  \"matrix\": \"nightly\",\n"
        "  \"source\": \"run 1, git abc1234, host box, 2026-11-23T10:00:00.000Z\",\n"
        "  \"metric\": \"top1\",\n"
        "  \"tolerance\": 0.5,\n"
        "  \"cells\": [\n"
        "    {\"cell\":\"" + std::string(kFp32) + "\",\"top1\":88.5,\"key\":\"" + sha256_hex("fp3232").substr(0, 12) + "\"},\n"
        "    {\"cell\":\"" + std::string(kW8) + "\",\"top1\":88.4,\"key\":\"" + sha256_hex("minmax8").substr(0, 12) + "\"},\n"
        "    {\"cell\":\"" + std::string(kW4) + "\",\"top1\":84.0,\"key\":\"" + sha256_hex("minmax4").substr(0, 12) + "\"},\n"
        "    {\"cell\":\"" + std::string(kLsq) + "\",\"top1\":86.0,\"key\":\"" + sha256_hex("lsq4").substr(0, 12) + "\"}\n"
        "  ]\n"
        "}\n");
  // It parses back to the same baseline.
  auto back = compare::parse_baseline(text, "b.json");
  CHECK(compare::to_json(back) == text);
}

TEST_CASE("compare: an unchanged run passes with exit-code semantics", "[compare]") {
  Fixture fx;
  auto b = fx.baseline();
  auto c = compare::compare_run(b, "b.json", report::load_input(fx.store, fx.base_run));
  CHECK(c.passed());
  CHECK(c.count(Verdict::Ok) == 4);
  auto text = compare::render_text(c);
  CHECK_THAT(text, Catch::EndsWith("4 cells: 4 ok, 0 improved, 0 regressed, 0 failed, 0 missing, 0 new: PASS\n"));
  CHECK(c.warning.empty());
  b.matrix = "academic";  // a baseline of another matrix: said above the table
  auto other = compare::compare_run(b, "b.json", report::load_input(fx.store, fx.base_run));
  CHECK_THAT(compare::render_text(other),
             Catch::Contains("warning:  the baseline was written from matrix 'academic' but run 1 is matrix 'nightly'\n"));
  CHECK_THAT(text, Catch::Contains("ok         " + std::string(kW8) + "     88.40     88.40    +0.00    0.50\n"));
}

TEST_CASE("compare: a planted regression, a failed cell and a missing cell each fail with a clear line", "[compare]") {
  Fixture fx;
  auto b = fx.baseline();
  b.cells[3].tolerance = 2.5;  // lsq may move more
  // minmax w8a8 drops 0.60 > 0.50; w4a4 fails; FP32 drops exactly 0.50 (allowed); lsq drops 2.00
  // (within its own 2.5); the w4a4 cell of lsq's neighbour is gone; a new w2a2 cell appears.
  int64_t run = add_run(fx.store, {cell(0, "fp32", 32, 88.00), cell(0, "minmax", 8, 87.80), cell(0, "minmax", 4, std::nullopt),
                                   cell(0, "minmax", 2, 40.00)});
  auto in = report::load_input(fx.store, run);
  auto c = compare::compare_run(b, "b.json", in);
  CHECK_FALSE(c.passed());
  CHECK(find(c, kFp32).verdict == Verdict::Ok);
  CHECK(find(c, kW8).verdict == Verdict::Regressed);
  CHECK(*find(c, kW8).current == 87.80);
  CHECK(find(c, kW4).verdict == Verdict::Failed);
  CHECK(find(c, kW4).note == "error: NaN loss at epoch 1, step 3");
  CHECK(find(c, kLsq).verdict == Verdict::Missing);
  CHECK(find(c, kLsq).note == "not in run 2");
  CHECK(find(c, "fashion-mnist/resnet8/minmax/academic/w2a2/seed0").verdict == Verdict::New);
  auto text = compare::render_text(c);
  CHECK_THAT(text, Catch::Contains("REGRESSED  " + std::string(kW8) + "     88.40     87.80    -0.60    0.50\n"));
  CHECK_THAT(text, Catch::Contains("FAILED     " + std::string(kW4) + "     84.00         -        -    0.50  error: NaN loss at epoch 1, step 3\n"));
  CHECK_THAT(text, Catch::Contains("MISSING    " + std::string(kLsq) + "        86.00         -        -    2.50  not in run 2\n"));
  CHECK_THAT(text, Catch::EndsWith("5 cells: 1 ok, 0 improved, 1 regressed, 1 failed, 1 missing, 1 new: FAIL\n"));
  auto j = nlohmann::json::parse(compare::render_json(c));
  CHECK(j["passed"] == false);
  CHECK(j["counts"]["regressed"] == 1);
  CHECK(j["cells"][1]["delta"] == -0.6);

  SECTION("each problem alone fails") {
    auto only = [&](std::vector<CellResult> cells) {
      return compare::compare_run(b, "b.json", report::load_input(fx.store, add_run(fx.store, cells))).passed();
    };
    auto all_ok = std::vector<CellResult>{cell(0, "fp32", 32, 88.50), cell(0, "minmax", 8, 88.40), cell(0, "minmax", 4, 84.00),
                                          cell(0, "lsq", 4, 86.00)};
    CHECK(only(all_ok));
    auto regressed = all_ok;
    regressed[1].top1 = 87.89;
    CHECK_FALSE(only(regressed));
    auto failed = all_ok;
    failed[2] = cell(0, "minmax", 4, std::nullopt);
    CHECK_FALSE(only(failed));
    auto missing = all_ok;
    missing.pop_back();
    CHECK_FALSE(only(missing));
    auto improved = all_ok;
    improved[1].top1 = 89.50;
    CHECK(only(improved));  // reported, not failed
  }
}

TEST_CASE("compare: a pending cell is missing, and a changed key is compared and noted", "[compare]") {
  Fixture fx;
  auto b = fx.baseline();
  nlohmann::json cfg = {{"dataset", "fashion-mnist"}, {"arch", "resnet8"}, {"algorithm", "lsq"}, {"profile", "academic"},
                        {"kind", "qat"}, {"w_bits", 4}, {"a_bits", 4}, {"seed", 0}};
  int64_t run = add_run(fx.store, {cell(0, "fp32", 32, 88.50), cell(0, "minmax", 8, 88.40, "new-recipe"), cell(0, "minmax", 4, 84.00)},
                        {{0, 0, sha256_hex("lsq4"), "pending", std::nullopt, cfg.dump()}});
  auto c = compare::compare_run(b, "b.json", report::load_input(fx.store, run));
  CHECK(find(c, kLsq).verdict == Verdict::Missing);
  CHECK(find(c, kLsq).note == "pending in run 2 (never finished)");
  CHECK(find(c, kW8).verdict == Verdict::Ok);
  CHECK_THAT(find(c, kW8).note, Catch::StartsWith("configuration changed (key " + sha256_hex("minmax8new-recipe").substr(0, 12)));
}

TEST_CASE("compare: the baseline records the environment that moves numbers, and compare says when it differs",
          "[compare]") {
  const std::string env_a =
      R"({"torch_version":"1.13.0","cpu":"AMD EPYC","cpu_isa":"avx512f","blas":["/usr/lib/openblas-pthread/libblas.so.3"],)"
      R"("onednn_max_cpu_isa":"default","sqlite_version":"3.40.1","intra_op_threads":2})";
  std::string env_b = env_a;
  env_b.replace(env_b.find("openblas-pthread"), 16, "blas");
  Store s(":memory:");
  const std::vector<CellResult> cells = {cell(0, "fp32", 32, 88.50), cell(0, "minmax", 4, 84.00)};
  const int64_t run_a = add_run(s, cells, {}, env_a);
  const int64_t run_a2 = add_run(s, cells, {}, env_a);
  const int64_t run_b = add_run(s, cells, {}, env_b);
  auto b = compare::baseline_from_run(report::load_input(s, run_a), 0.5, false);
  // Only what can move a number: not the SQLite version or the thread count (threads are in
  // every cell's own configuration).
  CHECK(b.environment.size() == 5);
  CHECK(b.environment.at("blas") == R"(["/usr/lib/openblas-pthread/libblas.so.3"])");
  CHECK_FALSE(b.environment.count("sqlite_version"));
  const auto text = compare::to_json(b);
  CHECK_THAT(text, Catch::Contains("\n  \"environment\": {\"blas\":"));
  CHECK(compare::to_json(compare::parse_baseline(text, "b.json")) == text);

  auto same = compare::compare_run(b, "b.json", report::load_input(s, run_a2));
  CHECK(same.warning.empty());
  auto moved = compare::compare_run(b, "b.json", report::load_input(s, run_b));
  CHECK(moved.passed());  // the verdicts are the numbers' (equal here); the warning only explains
  CHECK_THAT(moved.warning, Catch::Contains("the environment differs from the baseline's (blas "
                                            R"(["/usr/lib/openblas-pthread/libblas.so.3"] -> ["/usr/lib/blas/libblas.so.3"]))"));
  CHECK_THAT(compare::render_text(moved), Catch::Contains("warning:  the environment differs"));
  // A baseline without an environment (written before it was recorded) warns about nothing.
  b.environment.clear();
  CHECK(compare::compare_run(b, "b.json", report::load_input(s, run_b)).warning.empty());
  CHECK_THROWS_WITH(compare::parse_baseline(R"({"format":"qbench-baseline","version":1,"tolerance":1,"environment":{"blas":3},"cells":[]})", "b.json"),
                    Catch::Contains("environment.blas"));
}

TEST_CASE("compare: writing a baseline from an incomplete run is refused unless asked", "[compare]") {
  Fixture fx;
  int64_t run = add_run(fx.store, {cell(0, "fp32", 32, 88.50), cell(0, "minmax", 4, std::nullopt)});
  auto in = report::load_input(fx.store, run);
  CHECK_THROWS_WITH(compare::baseline_from_run(in, 1.0, false),
                    Catch::Contains("run 2 has 1 cell(s) that did not finish ok: " + std::string(kW4) + " (failed)"));
  auto b = compare::baseline_from_run(in, 1.0, true);
  CHECK(b.cells.size() == 1);
  CHECK_THROWS_WITH(compare::baseline_from_run(in, -1.0, true), Catch::Contains("--tolerance"));
}

TEST_CASE("compare: rewriting a baseline keeps the reviewed tolerances", "[compare]") {
  Fixture fx;
  auto old = fx.baseline();
  old.tolerance = 0.8;
  old.cells[3].tolerance = 3.0;
  auto fresh = compare::baseline_from_run(report::load_input(fx.store, fx.base_run), std::nullopt, false, &old);
  CHECK(fresh.tolerance == 0.8);
  CHECK(fresh.cells[3].tolerance == 3.0);
  CHECK_FALSE(fresh.cells[0].tolerance);
  auto explicit_default = compare::baseline_from_run(report::load_input(fx.store, fx.base_run), 0.3, false, &old);
  CHECK(explicit_default.tolerance == 0.3);
  CHECK(explicit_default.cells[3].tolerance == 3.0);
}

TEST_CASE("compare: malformed baseline files name the file and the key", "[compare]") {
  const std::string head = R"({"format": "qbench-baseline", "version": 1, "tolerance": 0.5, )";
  auto err = [](const std::string& text) {
    try {
      compare::parse_baseline(text, "nightly.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err("{"), Catch::StartsWith("nightly.json: not valid JSON: "));
  CHECK(err("[]") == "nightly.json: expected a JSON object at the top level, got array");
  CHECK(err(head + R"("cells": [{"cell": "a/b/c/d/w4a4/seed0", "top1": "high"}]})") ==
        "nightly.json: cells[0].top1: expected a number, got \"high\"");
  CHECK(err(head + R"("cells": [{"cell": "a/b/c/d/w4a4/seed0"}]})") == "nightly.json: cells[0].top1: missing");
  CHECK(err(head + R"("cells": [{"cell": "a/b/c/d/w4a4/seed0", "top1": 1, "tolerence": 1}]})") ==
        "nightly.json: cells[0].tolerence: unknown key (did you mean: tolerance?)");
  CHECK(err(head + R"("cells": [{"cell": "a/b/c/d/w4a4/seed0", "top1": 1, "tolerance": -1}]})") ==
        "nightly.json: cells[0].tolerance: expected a non-negative finite number, got -1");
  CHECK(err(head + R"("cells": [{"cell": "resnet8-minmax", "top1": 1}]})") ==
        "nightly.json: cells[0].cell: expected dataset/arch/algorithm/profile/bits/seedN, got \"resnet8-minmax\"");
  CHECK(err(head + R"("cells": [{"cell": "a/b/c/d/e/seed0", "top1": 1}, {"cell": "a/b/c/d/e/seed0", "top1": 2}]})") ==
        "nightly.json: cells[1].cell: duplicate cell \"a/b/c/d/e/seed0\"");
  CHECK(err(R"({"format": "qbench-baseline", "version": 1, "cells": []})") == "nightly.json: tolerance: missing");
  CHECK(err(R"({"format": "qbench-baseline", "version": 2, "tolerance": 1, "cells": []})") ==
        "nightly.json: version: expected 1 (this qbench's baseline version), got 2");
  CHECK(err(R"({"format": "other", "version": 1, "tolerance": 1, "cells": []})") ==
        "nightly.json: format: expected \"qbench-baseline\", got \"other\"");
  CHECK(err(head + R"("cells": {}})") == "nightly.json: cells: expected a list, got {}");
  CHECK(err(head + R"("cells": [], "colour": 1})") ==
        "nightly.json: colour: unknown key (known: format, version, matrix, source, metric, tolerance, environment, cells)");
  CHECK_THROWS_WITH(compare::load_baseline("/nonexistent/b.json"), "/nonexistent/b.json: cannot read the baseline file");
}
