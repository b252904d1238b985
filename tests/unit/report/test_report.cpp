#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/report/report.h"
#include "qbench/store/store.h"

using namespace qbench;
using store::CellResult;
using store::PlannedCell;
using store::RunInfo;
using store::Store;

namespace {

const std::filesystem::path kFixtures = std::filesystem::path(__FILE__).parent_path() / "../../fixtures/report";
const uint64_t kHugeSeed = (uint64_t{1} << 63) + 5;
const std::string kError = "calibration diverged: scale=0, \"nan\" in layer1.conv\nhint: more calibration images";

std::string key(const std::string& name) { return sha256_hex(name); }

RunInfo run_info(const std::string& started) {
  RunInfo r;
  r.matrix_name = "academic";
  r.matrix_file = "matrices/academic.yaml";
  r.yaml_text = "name: academic\n";
  r.yaml_hash = sha256_hex(r.yaml_text);
  r.started_at = started;
  r.host = "bench-box";
  r.git_rev = "0123abcd";
  r.qbench_version = "0.1.0";
  r.torch_version = "2.3.0";
  r.threads = 2;
  r.command_line = "qbench run matrices/academic.yaml --store results.db";
  r.environment_json = R"({"qengine":"fbgemm","cpu":"test"})";
  return r;
}

CellResult result(int64_t run_id, const std::string& arch, const std::string& algorithm, int bits,
                   uint64_t seed, std::optional<double> top1, std::optional<double> fp32_top1) {
  CellResult r;
  r.run_id = run_id;
  const bool fp32 = algorithm == "fp32";
  const std::string label = fp32 ? "fp32" : "w" + std::to_string(bits) + "a" + std::to_string(bits);
  r.cell_key = key(arch + "/" + algorithm + "/" + label + "/" + std::to_string(seed));
  r.baseline_key = key(arch + "/fp32/fp32/" + std::to_string(seed));
  r.dataset = "fashion-mnist";
  r.arch = arch;
  r.algorithm = algorithm;
  r.profile = fp32 ? "none" : "academic";
  r.w_bits = r.a_bits = fp32 ? 32 : bits;
  r.seed = seed;
  r.kind = fp32 ? "fp32" : "ptq";
  r.status = top1 ? "ok" : "failed";
  r.top1 = top1;
  if (top1) {
    r.top5 = 99.0;
    r.loss = 0.25;
  }
  r.fp32_top1 = fp32_top1;
  r.quant_wall_s = fp32 ? std::nullopt : std::optional<double>(2.5);
  r.eval_wall_s = 1.0;
  r.wall_s = 3.5;
  r.eval_images = 10000;
  r.threads = 2;
  r.started_at = "2026-11-23T10:00:01.000Z";
  r.finished_at = "2026-11-23T10:00:04.500Z";
  return r;
}

PlannedCell planned(int64_t run_id, int pos, const CellResult& r) {
  nlohmann::json cfg = {{"dataset", r.dataset}, {"arch", r.arch},     {"algorithm", r.algorithm},
                        {"profile", r.profile}, {"kind", r.kind},     {"w_bits", r.w_bits},
                        {"a_bits", r.a_bits},   {"seed", r.seed}};
  return PlannedCell{run_id, pos, r.cell_key, "pending", std::nullopt, cfg.dump()};
}

/// Two runs. Run 1 finished the FP32 baseline of resnet20 seed 0; run 2 reuses it (skipped),
/// runs resnet20 minmax at w8a8 for seeds 0 and 1 and at w4a4 (fails), and mlp (a huge seed) at
/// fp32 and w8a8, leaving mlp w4a4 and one cell without a configuration pending.
struct Fixture {
  Store store{":memory:"};
  int64_t run1 = 0, run2 = 0;

  Fixture() {
    run1 = store.begin_run(run_info("2026-11-22T09:00:00.000Z"));
    int64_t earlier = store.put_result(result(run1, "resnet20", "fp32", 32, 0, 91.50, std::nullopt));
    store.end_run(run1, "finished");

    run2 = store.begin_run(run_info("2026-11-23T10:00:00.000Z"));
    auto r_fp32_0 = result(run2, "resnet20", "fp32", 32, 0, 91.50, std::nullopt);
    auto r_w8_0 = result(run2, "resnet20", "minmax", 8, 0, 91.23, 91.50);
    r_w8_0.latency_ms_p50 = 1.234;
    r_w8_0.latency_ms_p90 = 1.5;
    r_w8_0.latency_batch = 32;
    r_w8_0.latency_source = "measured-fakequant";
    auto r_w4_0 = result(run2, "resnet20", "minmax", 4, 0, std::nullopt, std::nullopt);
    r_w4_0.error = kError;
    auto r_fp32_1 = result(run2, "resnet20", "fp32", 32, 1, 91.70, std::nullopt);
    auto r_w8_1 = result(run2, "resnet20", "minmax", 8, 1, 91.43, 91.70);
    auto m_fp32 = result(run2, "mlp", "fp32", 32, kHugeSeed, 88.00, std::nullopt);
    m_fp32.latency_ms_p50 = 0.5;
    m_fp32.latency_ms_p90 = 0.61;
    m_fp32.latency_batch = 32;
    m_fp32.latency_source = "measured-fp32";
    auto m_w8 = result(run2, "mlp", "minmax", 8, kHugeSeed, 88.10, std::nullopt);  // FP32 from its baseline row
    m_w8.latency_ms_p50 = 0.25;
    m_w8.latency_ms_p90 = 0.3;
    m_w8.latency_batch = 32;
    m_w8.latency_source = "modeled";
    auto m_w4 = result(run2, "mlp", "minmax", 4, kHugeSeed, std::nullopt, std::nullopt);  // never run

    auto skipped = planned(run2, 0, r_fp32_0);
    skipped.action = "skipped";
    skipped.result_id = earlier;
    PlannedCell unknown{run2, 8, key("no-config"), "pending", std::nullopt, ""};
    store.plan_cells(run2, {skipped, planned(run2, 1, r_w8_0), planned(run2, 2, r_w4_0), planned(run2, 3, r_fp32_1),
                            planned(run2, 4, r_w8_1), planned(run2, 5, m_fp32), planned(run2, 6, m_w8),
                            planned(run2, 7, m_w4), unknown});
    for (const auto& r : {r_w8_0, r_w4_0, r_fp32_1, r_w8_1, m_fp32, m_w8}) store.put_result(r);
    store.end_run(run2, "finished");
  }

  report::ReportInput input() const {
    auto in = report::load_input(store, run2);
    in.run.ended_at = "2026-11-23T11:00:00.000Z";  // end_run stamps the current time
    return in;
  }
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Compares with the golden file; QBENCH_UPDATE_GOLDEN=1 rewrites it (then review the diff).
void check_golden(const std::string& name, const std::string& actual) {
  auto path = kFixtures / name;
  if (const char* u = std::getenv("QBENCH_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::filesystem::create_directories(kFixtures);
    std::ofstream(path, std::ios::binary) << actual;
  }
  INFO("golden file " << path.string());
  REQUIRE(std::filesystem::exists(path));
  CHECK(read_file(path) == actual);
}

std::string fmt2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

/// A plain RFC 4180 reader: records of fields, quotes doubled inside quoted fields.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records(1, std::vector<std::string>(1));
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        records.back().back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        records.back().back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      records.back().emplace_back();
    } else if (c == '\n') {
      records.emplace_back(1);
    } else {
      records.back().back() += c;
    }
  }
  if (records.back().size() == 1 && records.back()[0].empty()) records.pop_back();
  return records;
}

}  // namespace

TEST_CASE("report: markdown matches the golden file and its numbers", "[report]") {
  Fixture fx;
  auto md = report::render_markdown(fx.input());
  check_golden("academic.md", md);

  CHECK_THAT(md, Catch::StartsWith("# qbench report: academic\n"));
  CHECK_THAT(md, Catch::Contains("## fashion-mnist / academic"));
  CHECK_THAT(md, !Catch::Contains("## fashion-mnist / none"));  // baselines are a column, not a table
  CHECK_THAT(md, Catch::Contains("| arch | algorithm | FP32 | w8a8 | w4a4 |"));
  // resnet20 minmax w8a8 over seeds 0 and 1, computed here from the inserted values.
  const double a = 91.23, b = 91.43, m = (a + b) / 2;
  const double sd = std::sqrt(((a - m) * (a - m) + (b - m) * (b - m)) / 1.0);
  const double delta = ((a - 91.50) + (b - 91.70)) / 2;
  const std::string w8 = fmt2(m) + " \xc2\xb1 " + fmt2(sd) + " (" + fmt2(delta) + ", n=2)";
  CHECK(w8 == "91.33 \xc2\xb1 0.14 (-0.27, n=2)");
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | 91.60 \xc2\xb1 0.14 (n=2) | " + w8 + " | failed |"));
  // mlp: positive delta with an explicit sign; FP32 taken from the baseline row; w4a4 pending.
  CHECK_THAT(md, Catch::Contains("| mlp | minmax | 88.00 | 88.10 (+0.10) | \xe2\x80\x94 |"));
  CHECK_THAT(md, Catch::Contains("- run id: " + std::to_string(fx.run2)));
  CHECK_THAT(md, Catch::Contains("- cells: 9 planned: 6 ok, 1 failed, 2 pending; 1 reused from earlier runs"));
  CHECK_THAT(md, Catch::Contains("(sha256 `" + sha256_hex("name: academic\n") + "`)"));
  CHECK_THAT(md, Catch::Contains("| mlp | minmax | academic | w8a8 | 9223372036854775813 | 32 | 0.250 | 0.300 | modeled |"));
  CHECK_THAT(md, Catch::Contains("## Failed cells\n\n- `" + key("resnet20/minmax/w4a4/0").substr(0, 12) +
                                 "` resnet20 / minmax / academic / w4a4 / seed 0: calibration diverged: scale=0, "
                                 "\"nan\" in layer1.conv hint: more calibration images\n"));
}

TEST_CASE("report: CSV matches the golden file and quotes per RFC 4180", "[report]") {
  Fixture fx;
  auto csv = report::render_csv(fx.input());
  check_golden("academic.csv", csv);

  auto records = parse_csv(csv);
  REQUIRE(records.size() == 1 + 9);
  const auto& header = records[0];
  CHECK(join(header, ",") ==
        "run_id,cell_key,dataset,arch,algorithm,profile,w_bits,a_bits,bits,seed,kind,status,action,top1,top5,loss,"
        "fp32_top1,delta_top1,latency_ms_p50,latency_ms_p90,latency_batch,latency_source,quant_wall_s,eval_wall_s,"
        "wall_s,eval_images,threads,error,result_run_id,started_at,finished_at");
  for (const auto& rec : records) CHECK(rec.size() == header.size());
  auto col = [&](const std::string& name) {
    return static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  CHECK(records[3][col("error")] == kError);  // round-trips through quoting
  CHECK_THAT(csv, Catch::Contains("\"calibration diverged: scale=0, \"\"nan\"\" in layer1.conv\nhint: more "
                                  "calibration images\""));
  CHECK(records[3][col("status")] == "failed");
  CHECK(records[3][col("top1")].empty());  // null is empty
  CHECK(records[6][col("seed")] == "9223372036854775813");
  CHECK(records[1][col("action")] == "skipped");
  CHECK(records[1][col("result_run_id")] == std::to_string(fx.run1));
  CHECK(records[1][col("run_id")] == std::to_string(fx.run2));
  CHECK(records[7][col("delta_top1")] == "0.1");
  CHECK(records[9][col("status")] == "pending");
  CHECK(records[9][col("dataset")].empty());
}

TEST_CASE("report: JSON matches the golden file and parses back to the inserted values", "[report]") {
  Fixture fx;
  auto text = report::render_json(fx.input());
  check_golden("academic.json", text);

  auto j = nlohmann::json::parse(text);
  CHECK(j["schema_version"] == 1);
  CHECK(j["run"]["id"] == fx.run2);
  CHECK(j["run"]["matrix_name"] == "academic");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["run"]["ended_at"] == "2026-11-23T11:00:00.000Z");
  CHECK(j["run"]["environment"]["qengine"] == "fbgemm");
  const auto& rows = j["rows"];
  REQUIRE(rows.size() == 9);
  CHECK(rows[0]["action"] == "skipped");
  CHECK(rows[0]["run_id"] == fx.run2);
  CHECK(rows[0]["result_run_id"] == fx.run1);
  CHECK(rows[0]["top1"] == 91.50);
  CHECK(rows[1]["bits"] == "w8a8");
  CHECK(rows[1]["top1"] == 91.23);
  CHECK(rows[1]["fp32_top1"] == 91.50);
  CHECK(rows[1]["delta_top1"].get<double>() == Approx(91.23 - 91.50));
  CHECK(rows[1]["latency_ms_p50"] == 1.234);
  CHECK(rows[1]["latency_batch"] == 32);
  CHECK(rows[1]["latency_source"] == "measured-fakequant");
  CHECK(rows[2]["status"] == "failed");
  CHECK(rows[2]["error"] == kError);
  CHECK(rows[2]["top1"].is_null());
  CHECK(rows[5]["seed"].get<uint64_t>() == kHugeSeed);
  CHECK(rows[5]["bits"] == "fp32");
  CHECK(rows[6]["fp32_top1"] == 88.00);  // not stored: from the baseline row
  CHECK(rows[6]["delta_top1"].get<double>() > 0);
  // Pending with a configuration: axes from config_json, metrics null.
  CHECK(rows[7]["status"] == "pending");
  CHECK(rows[7]["action"] == "pending");
  CHECK(rows[7]["arch"] == "mlp");
  CHECK(rows[7]["bits"] == "w4a4");
  CHECK(rows[7]["seed"].get<uint64_t>() == kHugeSeed);
  CHECK(rows[7]["top1"].is_null());
  CHECK(rows[7]["result_run_id"].is_null());
  // Pending without one: only its key.
  CHECK(rows[8]["cell_key"] == key("no-config"));
  CHECK(rows[8]["dataset"].is_null());
  CHECK(rows[8]["seed"].is_null());
}

TEST_CASE("report: render dispatches on the parsed format", "[report]") {
  Fixture fx;
  auto in = fx.input();
  CHECK(report::render(report::parse_format("md"), in) == report::render_markdown(in));
  CHECK(report::render(report::parse_format("markdown"), in) == report::render_markdown(in));
  CHECK(report::render(report::parse_format("csv"), in) == report::render_csv(in));
  CHECK(report::render(report::parse_format("JSON"), in) == report::render_json(in));
}

TEST_CASE("report: an unknown format names the valid ones", "[report]") {
  try {
    report::parse_format("jsn");
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("unknown report format 'jsn' (did you mean: json"));
  }
  CHECK_THROWS_AS(report::parse_format("xml"), ConfigError);
  CHECK_THROWS_WITH(report::parse_format(""), Catch::Contains("unknown report format ''"));
}

TEST_CASE("report: bits labels", "[report]") {
  CHECK(report::bits_label(32, 32) == "fp32");
  CHECK(report::bits_label(4, 4) == "w4a4");
  CHECK(report::bits_label(2, 4) == "w2a4");
  CHECK(report::bits_label(8, 32) == "w8a32");
}

TEST_CASE("report: load_input picks the latest run and refuses missing ones", "[report]") {
  Store empty(":memory:");
  CHECK_THROWS_AS(report::load_input(empty), ConfigError);
  Fixture fx;
  CHECK(report::load_input(fx.store).run.id == fx.run2);
  CHECK(report::load_input(fx.store, fx.run1).rows.size() == 1);
  CHECK_THROWS_WITH(report::load_input(fx.store, 99), Catch::Contains("no run 99"));
}

TEST_CASE("report: edge cases render without surprises", "[report]") {
  report::ReportInput in;
  in.run.id = 3;
  in.run.matrix_name = "empty";
  SECTION("a run with no cells") {
    auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("No cell has a latency measurement."));
    CHECK_THAT(md, !Catch::Contains("## Failed cells"));
    CHECK(report::render_csv(in).find('\n') == report::render_csv(in).size() - 1);  // header only
    CHECK(nlohmann::json::parse(report::render_json(in))["rows"].empty());
  }
  SECTION("only FP32 baselines get a section of their own; table text is escaped") {
    store::ReportRow row;
    row.plan = {3, 0, "k", "run", 1, ""};
    CellResult r;
    r.run_id = 3;
    r.cell_key = "k";
    r.dataset = "toy";
    r.arch = "a|b";
    r.algorithm = "fp32";
    r.profile = "none";
    r.kind = "fp32";
    r.status = "ok";
    r.top1 = 50.0;
    row.result = r;
    in.rows.push_back(row);
    auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("## toy / none\n\n| arch | algorithm | FP32 |\n|---|---|---|\n| a\\|b | fp32 | 50.00 |"));
    auto j = nlohmann::json::parse(report::render_json(in));
    CHECK(j["rows"][0]["delta_top1"] == 0.0);
    CHECK(j["run"]["ended_at"].is_null());
  }
  SECTION("a delta that rounds to zero is +0.00, and failures next to values are counted") {
    auto add = [&](uint64_t seed, std::optional<double> top1) {
      store::ReportRow row;
      row.plan = {3, static_cast<int>(in.rows.size()), "k" + std::to_string(seed), "run", 1, ""};
      CellResult r;
      r.run_id = 3;
      r.cell_key = row.plan.cell_key;
      r.dataset = "toy";
      r.arch = "net";
      r.algorithm = "minmax";
      r.profile = "p";
      r.w_bits = r.a_bits = 8;
      r.seed = seed;
      r.kind = "ptq";
      r.status = top1 ? "ok" : "failed";
      r.top1 = top1;
      r.fp32_top1 = 80.0;
      row.result = r;
      in.rows.push_back(row);
    };
    add(0, 79.999);
    add(1, std::nullopt);
    auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("| net | minmax | 80.00 \xc2\xb1 0.00 (n=2) | 80.00 (+0.00, 1 failed) |"));
  }
}
