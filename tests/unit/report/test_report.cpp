#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"
#include "qbench/report/report.h"
#include "qbench/store/store.h"
#include "unit/report/fixture.h"

using namespace qbench;
using store::CellResult;
using store::Store;

namespace {

using namespace qbench::report_test;

const std::filesystem::path kFixtures = std::filesystem::path(QBENCH_TEST_SOURCE_DIR) / "fixtures/report";

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

/// A hand-built report input's result: cell `key` of run `run_id`, toy / net / minmax on profile p
/// at w8a8, a PTQ cell that finished (no numbers: each test sets those it looks at).
CellResult toy_result(int64_t run_id, const std::string& key) {
  CellResult r;
  r.run_id = run_id;
  r.cell_key = key;
  r.dataset = "toy";
  r.arch = "net";
  r.algorithm = "minmax";
  r.profile = "p";
  r.w_bits = r.a_bits = 8;
  r.kind = "ptq";
  r.status = "ok";
  return r;
}

/// Appends `r` as a row its run ran itself: the plan's next position, pointing at result 1.
void add_row(report::ReportInput& in, const CellResult& r) {
  store::ReportRow row;
  row.plan = {r.run_id, static_cast<int>(in.rows.size()), r.cell_key, "run", 1, ""};
  row.result = r;
  in.rows.push_back(row);
}

}  // namespace

TEST_CASE("report: markdown matches the golden file and its numbers", "[report]") {
  Fixture fx;
  auto md = report::render_markdown(fx.input());
  check_golden("academic.md", md);

  CHECK_THAT(md, Catch::StartsWith("# qbench report: academic\n"));
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / academic"));
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / tensorrt"));
  CHECK_THAT(md, !Catch::Contains("/ none"));  // baselines are a column, not a table
  CHECK_THAT(md, Catch::Contains("| arch | algorithm | FP32 | w8a8 | w4a4 |\n|---|---|---:|---:|---:|\n"));
  // resnet20 minmax w8a8 over seeds 0 and 1, computed here from the inserted values.
  const double a = 91.23, b = 91.43, m = (a + b) / 2;
  const double sd = std::sqrt(((a - m) * (a - m) + (b - m) * (b - m)) / 1.0);
  const double delta = ((a - 91.50) + (b - 91.70)) / 2;
  const std::string w8 = fmt2(m) + " \xc2\xb1 " + fmt2(sd) + " (" + fmt2(delta) + ", n=2)";
  CHECK(w8 == "91.33 \xc2\xb1 0.14 (-0.27, n=2)");
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | 91.60 \xc2\xb1 0.14 (n=2) | " + w8 + " | failed |"));
  // mlp: positive delta with an explicit sign; FP32 taken from the baseline row; w4a4 pending.
  CHECK_THAT(md, Catch::Contains("| mlp | minmax | 88.00 | 88.10 (+0.10) | \xe2\x80\x94 |"));
  // lsq w4a4: 90.10 and 90.50 -> mean 90.30, std sqrt(0.2^2 * 2 / 1) = 0.28; deltas -1.40, -1.20.
  CHECK_THAT(md, Catch::Contains("| resnet20 | lsq | 91.60 \xc2\xb1 0.14 (n=2) | \xe2\x80\x94 | 90.30 \xc2\xb1 0.28 (-1.30, n=2) |"));
  // Hardware track: the profiles as columns, per bit width.
  CHECK_THAT(md, Catch::Contains("## Hardware track: fashion-mnist / w8a8\n"));
  CHECK_THAT(md, Catch::Contains("| arch | algorithm | FP32 | academic | tensorrt | x86-onednn | ort-cpu |"));
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | 91.60 \xc2\xb1 0.14 (n=2) | " + w8 +
                                 " | 91.20 (-0.30) | 91.30 (-0.20) | 91.28 (-0.22) |"));
  CHECK_THAT(md, Catch::Contains("- run id: " + std::to_string(fx.run2)));
  CHECK_THAT(md, Catch::Contains("- cells: 15 planned: 12 ok, 1 failed, 2 pending; 1 reused from earlier runs"));
  CHECK_THAT(md, Catch::Contains("- matrix sha256: `" + sha256_hex("name: academic\n") + "`"));
  // Latency: grouped by source, the mix called out. lsq p50 1.30/1.40 -> 1.350 ± 0.071.
  CHECK_THAT(md, Catch::Contains("| resnet20 | lsq | academic | w4a4 | 32 | 1.350 \xc2\xb1 0.071 | 1.550 \xc2\xb1 0.071 | 2 | measured-fakequant |"));
  CHECK_THAT(md, Catch::Contains("| mlp | minmax | academic | w8a8 | 32 | 0.250 | 0.300 | 1 | modeled |"));
  CHECK_THAT(md, Catch::Contains("> This table mixes latency sources (measured-fp32, measured-fakequant, measured-int8, "
                                 "measured-int8-ort, measured-fp32-ort, modeled)"));
  // The FP32 export ONNX Runtime timed beside the ort-cpu cell (fp32_latency_ms_p50 2.00 in its
  // deploy_engines record): a row of its own source, after the int8 one and before the modeled.
  CHECK_THAT(md, Catch::Contains("| resnet20 | fp32 | ort-cpu | fp32 | 32 | 2.000 | \xe2\x80\x94 | 1 | measured-fp32-ort |"));
  CHECK(md.find("| measured-int8-ort |") < md.find("| measured-fp32-ort |"));
  CHECK(md.find("| measured-fp32-ort |") < md.find("| modeled |"));
  CHECK(md.find("| measured-fp32 |") < md.find("| measured-fakequant |"));
  // ONNX Runtime's int8 time ranks after LibTorch's and before the modeled ones, and says what it is.
  CHECK(md.find("| measured-int8 |") < md.find("| measured-int8-ort |"));
  CHECK(md.find("| measured-int8-ort |") < md.find("| modeled |"));
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | ort-cpu | w8a8 | 32 | 0.800 | 0.900 | 1 | measured-int8-ort |"));
  CHECK_THAT(md, Catch::Contains("> measured-int8-ort: the model exported as ONNX QDQ and timed in ONNX Runtime"));
  // Sim vs deploy, with the engine of each row: gaps 91.10 - 91.30, 91.18 - 91.28, 91.00 - 91.20;
  // rows of one engine together (libtorch-onednn, onnxruntime, then the row with none recorded).
  CHECK_THAT(md, Catch::Contains("| arch | algorithm | profile | bits | engine | simulated | deployed | gap |"));
  const std::string onednn_row = "| resnet20 | minmax | x86-onednn | w8a8 | libtorch-onednn | 91.30 | 91.10 | -0.20 | 99.20 | 0.9990 | 27.5 | 1 |";
  const std::string ort_row = "| resnet20 | minmax | ort-cpu | w8a8 | onnxruntime | 91.28 | 91.18 | -0.10 | 99.40 | 0.9995 | 30.2 | 1 |";
  const std::string trt_row = "| resnet20 | minmax | tensorrt | w8a8 | \xe2\x80\x94 | 91.20 | 91.00 | -0.20 | 99.10 | 0.9991 | 28.4 | 1 |";
  CHECK_THAT(md, Catch::Contains(onednn_row + "\n" + ort_row + "\n" + trt_row + "\n"));
  // Cost: lsq 120/130 s fine-tuning, 125/135 s wall; PTQ 4 resnet20 cells of 3.5 s.
  CHECK_THAT(md, Catch::Contains("| qat | resnet20 | lsq | 2 | 125.0 \xc2\xb1 7.1 | 1.0 \xc2\xb1 0.0 | 130.0 \xc2\xb1 7.1 | 260.0 |"));
  CHECK_THAT(md, Catch::Contains("| ptq | resnet20 | minmax | 4 | 2.5 \xc2\xb1 0.0 | 1.0 \xc2\xb1 0.0 | 3.5 \xc2\xb1 0.0 | 14.0 |"));
  // By kind: 10.5 + 17.5 + 260 = 288 s; QAT is 260 / 288 = 90.3 %.
  CHECK_THAT(md, Catch::Contains("| qat | 2 | 130.0 \xc2\xb1 7.1 | 260.0 | 90.3 |"));
  CHECK_THAT(md, Catch::Contains("| ptq | 5 | 3.5 \xc2\xb1 0.0 | 17.5 | 6.1 |"));
  CHECK_THAT(md, Catch::Contains("## Failed cells\n\nEvery failed cell with its error message.\n\n"));
  CHECK_THAT(md, Catch::Contains("| " + key("resnet20/minmax/w4a4/0").substr(0, 12) +
                                 " | fashion-mnist | resnet20 | minmax | academic | w4a4 | 0 | calibration diverged: scale=0, "
                                 "\"nan\" in layer1.conv hint: more calibration images |\n"));
}

TEST_CASE("report: CSV matches the golden file and quotes per RFC 4180", "[report]") {
  Fixture fx;
  auto csv = report::render_csv(fx.input());
  check_golden("academic.csv", csv);

  auto records = parse_csv(csv);
  REQUIRE(records.size() == 1 + 15);
  const auto& header = records[0];
  CHECK(join(header, ",") ==
        "run_id,cell_key,dataset,arch,algorithm,profile,w_bits,a_bits,bits,seed,kind,status,action,top1,top5,loss,"
        "fp32_top1,delta_top1,deploy_top1,deploy_agreement,logit_cosine,sqnr_db,deploy_engine,latency_ms_p50,latency_ms_p90,"
        "latency_batch,latency_source,quant_wall_s,eval_wall_s,wall_s,eval_images,threads,error,result_run_id,"
        "started_at,finished_at");
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
  CHECK(records[12][col("profile")] == "tensorrt");
  CHECK(records[12][col("deploy_top1")] == "91.0");
  CHECK(records[12][col("deploy_agreement")] == "99.1");
  CHECK(records[12][col("latency_source")] == "measured-int8");
  CHECK(records[11][col("deploy_top1")].empty());
  // The engine of the deploy_* numbers: none recorded for tensorrt (empty), then LibTorch oneDNN,
  // ONNX Runtime, and none for the cell ONNX Runtime refused.
  CHECK(records[12][col("deploy_engine")].empty());
  CHECK(records[13][col("deploy_engine")] == "libtorch-onednn");
  CHECK(records[13][col("deploy_top1")] == "91.1");
  CHECK(records[14][col("deploy_engine")] == "onnxruntime");
  CHECK(records[14][col("latency_source")] == "measured-int8-ort");
  CHECK(records[15][col("deploy_engine")].empty());
  CHECK(records[15][col("deploy_top1")].empty());
}

TEST_CASE("report: JSON matches the golden file and parses back to the inserted values", "[report]") {
  Fixture fx;
  auto text = report::render_json(fx.input());
  check_golden("academic.json", text);

  auto j = nlohmann::json::parse(text);
  CHECK(j["schema_version"] == 2);
  CHECK(j["run"]["id"] == fx.run2);
  CHECK(j["run"]["matrix_name"] == "academic");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["run"]["ended_at"] == "2026-11-23T11:00:00.000Z");
  CHECK(j["run"]["environment"]["qengine"] == "fbgemm");
  CHECK(j["filters"].empty());
  const auto& rows = j["rows"];
  REQUIRE(rows.size() == 15);
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
  CHECK(rows[11]["sqnr_db"] == 28.4);
  CHECK(rows[11]["logit_cosine"] == 0.9991);
  CHECK(rows[11]["deploy_engine"].is_null());
  CHECK(rows[12]["deploy_engine"] == "libtorch-onednn");
  CHECK(rows[13]["deploy_engine"] == "onnxruntime");

  // The aggregated tables carry the numbers behind each text cell.
  const auto& tables = j["tables"];
  std::vector<std::string> ids;
  for (const auto& t : tables) ids.push_back(t["id"]);
  CHECK(join(ids, ",") ==
        "accuracy,accuracy,accuracy,accuracy,hardware,hardware,latency,deploy,engines,cost,cost_by_kind,failures");
  const auto& acc = tables[0];
  CHECK(acc["group"]["dataset"] == "fashion-mnist");
  CHECK(acc["group"]["profile"] == "academic");
  CHECK(acc["columns"] == nlohmann::json::array({"arch", "algorithm", "FP32", "w8a8", "w4a4"}));
  const auto& lsq = acc["values"][2][4];
  CHECK(acc["rows"][2][1] == "lsq");
  CHECK(lsq["mean"].get<double>() == Approx(90.30));
  CHECK(lsq["std"].get<double>() == Approx(std::sqrt(0.08)));
  CHECK(lsq["n"] == 2);
  CHECK(lsq["delta"].get<double>() == Approx(-1.30));
  CHECK(acc["values"][0][4]["failed"] == 1);
  CHECK(tables[6]["id"] == "latency");
  CHECK(tables[6]["notes"].size() == 7);  // the mix, then one line per source
  // The engines table: the numbers behind its cells, a refusal's full reason.
  const auto& eng = tables[8];
  CHECK(eng["id"] == "engines");
  CHECK(eng["values"][1][13].get<double>() == Approx(2.00 / 0.80));
  CHECK(eng["values"][2][8]["refused"] == kOrtRefusal.substr(std::string("not deployed: ").size()));
}

TEST_CASE("report: LaTeX matches the golden file, uses booktabs and escapes text", "[report]") {
  Fixture fx;
  auto tex = report::render_latex(fx.input());
  check_golden("academic.tex", tex);

  CHECK_THAT(tex, Catch::Contains("\\documentclass"));
  CHECK_THAT(tex, Catch::Contains("\\usepackage{booktabs}"));
  CHECK_THAT(tex, Catch::EndsWith("\\end{document}\n"));
  CHECK_THAT(tex, Catch::Contains("\\begin{tabular}{llrrr}\n\\toprule\narch & algorithm & FP32 & w8a8 & w4a4 \\\\\n\\midrule\n"));
  CHECK_THAT(tex, Catch::Contains("resnet20 & minmax & 91.60 $\\pm$ 0.14 (n=2) & 91.33 $\\pm$ 0.14 ($-$0.27, n=2) & failed \\\\"));
  CHECK_THAT(tex, Catch::Contains("mlp & minmax & 88.00 & 88.10 ($+$0.10) & --- \\\\"));
  CHECK_THAT(tex, Catch::Contains("\\texttt{qbench run matrices/academic.yaml -{}-store results.db}"));
  CHECK(tex.find("\xc2") == std::string::npos);  // no raw UTF-8 left for pdflatex to trip on
  // The deploy table's engines as text; the engines table's many columns with two-line headers,
  // its percent signs escaped, and the refusal's note with its specials escaped.
  CHECK_THAT(tex, Catch::Contains("resnet20 & minmax & x86-onednn & w8a8 & libtorch-onednn & 91.30 & 91.10 & $-$0.20 &"));
  CHECK_THAT(tex, Catch::Contains("resnet20 & minmax & tensorrt & w8a8 & --- & 91.20 &"));
  CHECK_THAT(tex, Catch::Contains("\\begin{tabular}{llllrrrrrrrrrr}\n\\toprule\narch & algorithm & profile & bits & seed & "
                                  "simulated & \\begin{tabular}[b]{@{}r@{}}oneDNN\\\\top-1\\end{tabular} & "
                                  "\\begin{tabular}[b]{@{}r@{}}oneDNN\\\\agree \\%\\end{tabular} & "));
  CHECK_THAT(tex, Catch::Contains("& \\begin{tabular}[b]{@{}r@{}}ORT int8\\\\cov \\%\\end{tabular} &"));
  CHECK_THAT(tex, Catch::Contains("\\emph{(1) onnxruntime refused 1 cell: export: layer1.0.conv1 has w\\_bits=4 \\& ONNX QDQ "
                                  "needs 8 (100\\% of its convs) hint: use w8a8}"));
  int begins = 0, ends = 0;
  for (std::size_t p = 0; (p = tex.find("\\begin{table}", p)) != std::string::npos; ++p) ++begins;
  for (std::size_t p = 0; (p = tex.find("\\end{table}", p)) != std::string::npos; ++p) ++ends;
  CHECK(begins == 12);
  CHECK(begins == ends);

  // Every LaTeX special in user text comes out escaped.
  report::ReportInput in;
  in.run.id = 1;
  in.run.matrix_name = "a_b & c% $d #e {f} ~g ^h \\i <j> \xe4\xb8\xad";
  auto t = report::render_latex(in);
  CHECK_THAT(t, Catch::Contains("\\section*{qbench report: a\\_b \\& c\\% \\$d \\#e \\{f\\} \\textasciitilde{}g "
                                "\\textasciicircum{}h \\textbackslash{}i \\textless{}j\\textgreater{} ?}"));
}

TEST_CASE("report: HTML matches the golden file and carries its charts as Vega-Lite specs", "[report]") {
  Fixture fx;
  report::ReportOptions no_libs;
  no_libs.html_inline_libraries = false;
  auto html = report::render_html(fx.input(), no_libs);
  check_golden("academic.html", html);

  CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>"));
  CHECK_THAT(html, Catch::Contains("<td class=\"num\">90.30 \xc2\xb1 0.28 (-1.30, n=2)</td>"));
  CHECK_THAT(html, Catch::Contains("calibration diverged: scale=0, &quot;nan&quot; in layer1.conv"));
  // The chart specs parse back; the dominated lsq point (slower and less accurate than minmax
  // under the same source) is off the Pareto front.
  const std::string open = "<script type=\"application/json\" id=\"qbench-charts\">";
  auto b = html.find(open);
  REQUIRE(b != std::string::npos);
  b += open.size();
  auto charts = nlohmann::json::parse(html.substr(b, html.find("</script>", b) - b));
  REQUIRE(charts.size() == 8);  // accuracy x 4 profiles, latency x 3 timed profiles, sim vs deploy
  CHECK(charts[0]["spec"]["title"] == "Accuracy vs bit width: fashion-mnist / academic");
  CHECK(charts[0]["spec"]["encoding"]["x"]["sort"] == nlohmann::json::array({"fp32", "w8a8", "w4a4"}));
  const auto& lat = charts[4]["spec"];
  CHECK(lat["title"] == "Accuracy vs latency (Pareto front dashed): fashion-mnist / academic");
  std::map<std::string, bool> pareto;
  for (const auto& v : lat["data"]["values"]) pareto[v["arch"].get<std::string>() + "/" + v["algorithm"].get<std::string>() + "/" + v["bits"].get<std::string>()] = v["pareto"];
  CHECK(pareto.size() == 4);  // minmax w8a8, lsq w4a4, mlp minmax (modeled), the FP32 mlp baseline
  CHECK(pareto["resnet20/minmax/w8a8"]);
  CHECK_FALSE(pareto["resnet20/lsq/w4a4"]);  // 1.35 ms, 90.30 % vs minmax's 1.234 ms, 91.33 %
  CHECK(pareto["mlp/minmax/w8a8"]);         // the only modeled point
  CHECK(pareto["mlp/fp32/fp32"]);
  const auto& dep = charts[7]["spec"];
  CHECK(dep["title"] == "Simulated vs deployed accuracy: fashion-mnist");
  CHECK(dep["layer"][1]["mark"]["type"] == "point");
  CHECK(dep["data"]["values"][0]["deployed"] == 91.0);
  // Each deployed point names its engine.
  CHECK(dep["data"]["values"][0]["engine"] == "not recorded");
  CHECK(dep["data"]["values"][1]["engine"] == "libtorch-onednn");
  CHECK(dep["data"]["values"][2]["engine"] == "onnxruntime");
  CHECK_THAT(html, Catch::Contains("<td>refused (1)</td>") || Catch::Contains("<td class=\"num\">refused (1)</td>"));

  // With the libraries: each vendored file inlined once, nothing fetched from the network.
  auto full = report::render_html(fx.input());
  CHECK(full.size() > 800000);
  CHECK(full.find("vega-embed.min.js (vendored") != std::string::npos);
  CHECK(full.find("<script src") == std::string::npos);
  CHECK(full.find("<link") == std::string::npos);
  CHECK(full.find("vegaEmbed") != std::string::npos);
}

TEST_CASE("report: HTML keeps user text out of script and markup", "[report]") {
  report::ReportInput in;
  in.run.id = 1;
  in.run.matrix_name = "</script><script>alert(1)</script>";
  CellResult r = toy_result(1, "k");
  r.arch = "<b>net</b>";
  r.top1 = 50.0;
  add_row(in, r);
  report::ReportOptions opt;
  opt.html_inline_libraries = false;
  auto html = report::render_html(in, opt);
  CHECK(html.find("<script>alert") == std::string::npos);
  CHECK(html.find("<b>net") == std::string::npos);
  CHECK_THAT(html, Catch::Contains("&lt;b&gt;net&lt;/b&gt;"));
  CHECK_THAT(html, Catch::Contains("\\u003cb>net\\u003c/b>"));  // in the chart data
}

TEST_CASE("report: every registered format renders, by name and alias", "[report]") {
  Fixture fx;
  auto in = fx.input();
  std::vector<std::string> names;
  for (const auto& f : report::formats()) names.push_back(f.name);
  CHECK(join(names, ",") == "markdown,html,latex,csv,json");
  CHECK(report::render("md", in) == report::render_markdown(in));
  CHECK(report::render("markdown", in) == report::render_markdown(in));
  CHECK(report::render("csv", in) == report::render_csv(in));
  CHECK(report::render("JSON", in) == report::render_json(in));
  CHECK(report::render("tex", in) == report::render_latex(in));
  CHECK(report::render("html", in) == report::render_html(in));
  for (const auto& f : report::formats()) CHECK_FALSE(f.render(in, {}).empty());
}

TEST_CASE("report: an unknown format names the valid ones", "[report]") {
  try {
    report::find_format("jsn");
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("unknown report format 'jsn' (did you mean: json"));
  }
  CHECK_THROWS_WITH(report::find_format("spreadsheet"),
                    "unknown report format 'spreadsheet' (known: markdown, md, html, htm, latex, tex, csv, json)");
  CHECK_THROWS_WITH(report::find_format(""), Catch::Contains("unknown report format ''"));
}

TEST_CASE("report: filters narrow every table and keep the FP32 reference", "[report]") {
  Fixture fx;
  auto in = fx.input();
  report::ReportOptions opt;
  opt.filters = {report::parse_filter("profile=tensorrt")};
  auto md = report::render_markdown(in, opt);
  CHECK_THAT(md, !Catch::Contains("Academic track: fashion-mnist / academic"));
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / tensorrt"));
  CHECK_THAT(md, Catch::Contains("- filters: profile=tensorrt"));
  // The kept cell's baseline (resnet20 seed 0) stays; mlp's baseline and the other cells go.
  auto csv = parse_csv(report::render_csv(in, opt));
  REQUIRE(csv.size() == 1 + 2);
  CHECK(csv[1][5] == "none");
  CHECK(csv[1][3] == "resnet20");
  CHECK(csv[2][5] == "tensorrt");

  // Values of one key are alternatives; different keys must all hold.
  opt.filters = {report::parse_filter("arch=mlp"), report::parse_filter("algorithm=minmax"),
                 report::parse_filter("algorithm=lsq")};
  auto j = nlohmann::json::parse(report::render_json(in, opt));
  REQUIRE(j["rows"].size() == 3);  // mlp fp32 (reference), mlp minmax w8a8, mlp minmax w4a4 (pending)
  CHECK(j["filters"][0]["key"] == "arch");
  for (const auto& r : j["rows"]) CHECK(r["arch"] == "mlp");

  // A value no cell has is a typo, named with the closest value the run has.
  opt.filters = {report::parse_filter("arch=resnt20")};
  CHECK_THROWS_WITH(report::render_markdown(in, opt),
                    Catch::Contains("--filter arch=resnt20: no cell of this run has arch 'resnt20' (did you mean: resnet20"));
  CHECK_THROWS_WITH(report::parse_filter("archh=x"), Catch::Contains("unknown key 'archh' (did you mean: arch"));
  CHECK_THROWS_WITH(report::parse_filter("arch"), Catch::Contains("expected KEY=VALUE"));
  CHECK_THROWS_AS(report::parse_filter("=x"), ConfigError);
}

TEST_CASE("report: group-by splits tables, and by seed there is no aggregation", "[report]") {
  Fixture fx;
  auto in = fx.input();
  report::ReportOptions opt;
  opt.group_by = {"seed"};
  auto md = report::render_markdown(in, opt);
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / academic / seed=0\n"));
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / academic / seed=1\n"));
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | 91.50 | 91.23 (-0.27) | failed |"));
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | 91.70 | 91.43 (-0.27) |"));
  CHECK_THAT(md, Catch::Contains("- grouped by: seed"));
  opt.group_by = {"arch"};
  md = report::render_markdown(in, opt);
  CHECK_THAT(md, Catch::Contains("## Academic track: fashion-mnist / academic / arch=mlp\n"));
  CHECK_THAT(md, Catch::Contains("## Cost: fashion-mnist / arch=resnet20\n"));
  opt.group_by = {"colour"};
  CHECK_THROWS_WITH(report::render_markdown(in, opt), Catch::Contains("--group-by: unknown axis 'colour'"));
}

TEST_CASE("report: --table keeps the named tables, and CSV writes one table at a time", "[report]") {
  Fixture fx;
  auto in = fx.input();
  report::ReportOptions opt;
  opt.tables = {"latency", "failures"};
  auto md = report::render_markdown(in, opt);
  CHECK_THAT(md, Catch::Contains("## Latency: fashion-mnist"));
  CHECK_THAT(md, Catch::Contains("## Failed cells"));
  CHECK_THAT(md, !Catch::Contains("Academic track"));
  CHECK_THAT(md, !Catch::Contains("## Cost"));
  CHECK_THROWS_WITH(report::render_csv(in, opt), Catch::Contains("--format csv writes one table at a time"));

  // The academic track as CSV: group axes first, then the union of the groups' columns (the
  // tensorrt group has no w4a4), numbers as in the markdown, a missing value empty.
  opt.tables = {"accuracy"};
  auto csv = parse_csv(report::render_csv(in, opt));
  REQUIRE(csv.size() == 1 + 6);
  CHECK(join(csv[0], ",") == "dataset,profile,arch,algorithm,FP32,w8a8,w4a4");
  CHECK(join(csv[1], "|") == "fashion-mnist|academic|resnet20|minmax|91.60 \xc2\xb1 0.14 (n=2)|91.33 \xc2\xb1 0.14 (-0.27, n=2)|failed");
  CHECK(join(csv[2], "|") == "fashion-mnist|academic|mlp|minmax|88.00|88.10 (+0.10)|");
  CHECK(join(csv[4], "|") == "fashion-mnist|tensorrt|resnet20|minmax|91.50|91.20 (-0.30)|");
  CHECK(join(csv[6], "|") == "fashion-mnist|ort-cpu|resnet20|minmax|91.50|91.28 (-0.22)|89.00 (-2.50)");
  opt.tables = {"cost_by_kind"};
  csv = parse_csv(report::render_csv(in, opt));
  REQUIRE(csv.size() == 1 + 3);
  CHECK(join(csv[3], "|") == "fashion-mnist|qat|2|130.0 \xc2\xb1 7.1|260.0|90.3");

  opt.tables = {"latncy"};
  CHECK_THROWS_WITH(report::render_markdown(in, opt), "--table: unknown table 'latncy' (did you mean: latency?)");
}

TEST_CASE("report: the table registry is the one list of tables, their help and the README's ids", "[report]") {
  std::vector<std::string> ids;
  for (const auto& t : report::tables()) {
    ids.push_back(t.id);
    CHECK_FALSE(t.help.empty());
  }
  // Report order: the order of the qbench_registry_entry(report_tables ...) lines.
  CHECK(join(ids, ",") == "accuracy,hardware,latency,deploy,engines,deploy_layers,mixed,bit_allocation,noise,cost,cost_by_kind,failures,conflicts");
  CHECK(report::table_ids() == ids);
  // --table's help: one line per table, its id then its help.
  const std::string help = report::table_help();
  std::size_t lines = 1;
  for (char c : help) lines += c == '\n';
  CHECK(lines == ids.size());
  for (const auto& t : report::tables()) CHECK_THAT(help, Catch::Contains("  " + t.id + " ") && Catch::Contains(t.help));
  CHECK_NOTHROW(report::check_tables(ids));
  CHECK_THROWS_WITH(report::check_tables({"x"}), "--table: unknown table 'x' (known: " + join(ids, ", ") + ")");
  // The README's list of --table ids is this list, so that the two cannot drift apart.
  const auto readme = std::filesystem::path(QBENCH_TEST_SOURCE_DIR).parent_path() / "README.md";
  INFO(readme.string() << ": its --table list must read (" << join(ids, ", ") << ")");
  CHECK_THAT(read_file(readme), Catch::Contains("(" + join(ids, ", ") + ")"));
}

TEST_CASE("report: tables come in registry order, each cost by kind beside the cost table of its group", "[report]") {
  Fixture fx;
  auto in = fx.input();
  report::ReportOptions opt;
  opt.group_by = {"arch"};
  auto ids = [&] {  // "id(arch)" per table, in report order
    std::vector<std::string> seen;
    const auto j = nlohmann::json::parse(report::render_json(in, opt));
    for (const auto& t : j["tables"]) seen.push_back(t["id"].get<std::string>() + "(" + t["group"].value("arch", "") + ")");
    return join(seen, ",");
  };
  CHECK(ids() ==
        "accuracy(resnet20),accuracy(mlp),accuracy(resnet20),accuracy(resnet20),accuracy(resnet20),hardware(resnet20),"
        "hardware(resnet20),hardware(mlp),hardware(mlp),latency(resnet20),latency(mlp),deploy(resnet20),"
        "engines(resnet20),cost(resnet20),cost_by_kind(resnet20),cost(mlp),cost_by_kind(mlp),failures()");
  // Only cost by kind: its tables without their neighbours, in group order.
  opt.tables = {"cost_by_kind"};
  CHECK(ids() == "cost_by_kind(resnet20),cost_by_kind(mlp)");
}

TEST_CASE("report: run ids parse, and anything else is a usage error", "[report]") {
  CHECK_FALSE(report::parse_run_id("latest"));
  CHECK(*report::parse_run_id("12") == 12);
  CHECK_THROWS_WITH(report::parse_run_id("12x"), Catch::Contains("--run: expected a run id or 'latest', got '12x'"));
  CHECK_THROWS_AS(report::parse_run_id("0"), ConfigError);
  CHECK_THROWS_AS(report::parse_run_id(""), ConfigError);
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
    CHECK_THAT(report::render_html(in), Catch::Contains("No chart: no cell has a top-1 result yet."));
    CHECK_THAT(report::render_latex(in), Catch::EndsWith("\\end{document}\n"));
  }
  SECTION("only FP32 baselines get a section of their own; table text is escaped") {
    CellResult r = toy_result(3, "k");
    r.arch = "a|b";
    r.algorithm = "fp32";
    r.profile = "none";
    r.w_bits = r.a_bits = 32;
    r.kind = "fp32";
    r.top1 = 50.0;
    add_row(in, r);
    auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("## Academic track: toy / none\n\n"));
    CHECK_THAT(md, Catch::Contains("| arch | algorithm | FP32 |\n|---|---|---:|\n| a\\|b | fp32 | 50.00 |"));
    auto j = nlohmann::json::parse(report::render_json(in));
    CHECK(j["rows"][0]["delta_top1"] == 0.0);
    CHECK(j["run"]["ended_at"].is_null());
  }
  SECTION("a delta that rounds to zero is +0.00, and failures next to values are counted") {
    auto add = [&](uint64_t seed, std::optional<double> top1) {
      CellResult r = toy_result(3, "k" + std::to_string(seed));
      r.seed = seed;
      r.status = top1 ? "ok" : "failed";
      r.top1 = top1;
      r.fp32_top1 = 80.0;
      add_row(in, r);
    };
    add(0, 79.999);
    add(1, std::nullopt);
    auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("| net | minmax | 80.00 \xc2\xb1 0.00 (n=2) | 80.00 (+0.00, 1 failed) |"));
    // One profile: the hardware track says why it has no table.
    CHECK_THAT(md, Catch::Contains("## Hardware track\n\nThe hardware track compares profiles side by side; this run has one "
                                   "profile per dataset (p), shown in the academic track above.\n"));
  }
}

TEST_CASE("report: the deploy-layers table names the first differing layer and the lowest-SQNR one", "[report]") {
  Fixture fx;
  auto in = fx.input();
  const store::CellResult* trt = nullptr;
  for (const auto& r : in.rows)
    if (r.result && r.result->profile == "tensorrt") trt = &*r.result;
  REQUIRE(trt);
  // Without detail rows there is no such table (the golden files above have none).
  CHECK_THAT(report::render_markdown(in), !Catch::Contains("Where deployment departs"));
  in.deploy_layers[trt->id] = {
      {"deploy_layers", "conv1", {{"mismatch_pct", 0.0}, {"sqnr_db", 61.0}, {"op_max_err_steps", 0.0}}, "conv a"},
      {"deploy_layers", "layer1.0.conv1", {{"mismatch_pct", 0.25}, {"sqnr_db", 40.5}, {"op_max_err_steps", 1.0}}, "conv b"},
      {"deploy_layers", "layer1.0.add", {{"mismatch_pct", 2.5}, {"sqnr_db", 22.25}, {"op_max_err_steps", 0.0}}, "add"},
      {"deploy_layers", "fc", {{"mismatch_pct", 1.0}, {"sqnr_db", 30.0}, {"op_max_err_steps", 0.0}}, "linear"}};
  auto md = report::render_markdown(in);
  CHECK_THAT(md, Catch::Contains("## Where deployment departs from simulation"));
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | tensorrt | w8a8 | 0 | 99.10 | layer1.0.conv1 | 0.250 | 1 | conv b | "
                                 "layer1.0.add | 22.2 |"));
  report::ReportOptions only;
  only.tables = {"deploy_layers"};
  auto one = report::render_markdown(in, only);
  CHECK_THAT(one, Catch::Contains("layer1.0.conv1"));
  CHECK_THAT(one, !Catch::Contains("## Cost"));
}

TEST_CASE("report: the deploy table never averages numbers of two engines", "[report]") {
  report::ReportInput in;
  in.run.id = 5;
  in.run.matrix_name = "engines";
  // Three seeds of one cell: seeds 0 and 2 deployed on LibTorch QNNPACK, seed 1 on ONNX Runtime.
  auto add = [&](uint64_t seed, const std::string& engine, double sim, double dep) {
    CellResult r = toy_result(5, "k" + std::to_string(seed));
    r.seed = seed;
    r.top1 = sim;
    r.deploy_top1 = dep;
    r.deploy_engine = engine;
    add_row(in, r);
  };
  add(0, "onnxruntime", 80.0, 79.0);
  add(1, "libtorch-qnnpack", 81.0, 80.0);
  add(2, "onnxruntime", 82.0, 80.0);
  const auto md = report::render_markdown(in);
  // onnxruntime: simulated (80 + 82) / 2 = 81.00, deployed (79 + 80) / 2 = 79.50, gap (-1 - 2) / 2 =
  // -1.50 over n = 2; QNNPACK alone, and first (LibTorch engines before ONNX Runtime).
  const std::string dash = "\xe2\x80\x94";
  CHECK_THAT(md, Catch::Contains("| net | minmax | p | w8a8 | libtorch-qnnpack | 81.00 | 80.00 | -1.00 | " + dash + " | " +
                                 dash + " | " + dash + " | 1 |\n| net | minmax | p | w8a8 | onnxruntime | 81.00 | 79.50 | "
                                 "-1.50 | " + dash + " | " + dash + " | " + dash + " | 2 |\n"));
  // No deploy_engines rows were given: the engines table says so.
  CHECK_THAT(md, Catch::Contains("## Deployment engines\n\nNo cell of this run has per-engine deployment rows"));
}

TEST_CASE("report: the engines table shows each deployed cell on every engine it ran on", "[report]") {
  Fixture fx;
  auto in = fx.input();
  // load_input read the deploy_engines rows of the three deployment cells, the refused one included
  // (it has no deploy_* columns), and of no other cell.
  REQUIRE(in.deploy_engines.size() == 3);
  const auto md = report::render_markdown(in);
  CHECK_THAT(md, Catch::Contains("## Deployment engines: fashion-mnist\n"));
  // Engines present: LibTorch oneDNN (x86-onednn cell) and ONNX Runtime (all three), oneDNN first;
  // ONNX Runtime measured latency on one cell, so its three latency columns are there.
  CHECK_THAT(md, Catch::Contains("| arch | algorithm | profile | bits | seed | simulated | oneDNN top-1 | oneDNN agree % | "
                                 "ORT top-1 | ORT agree % | ORT int8 cov % | ORT int8 ms | ORT FP32 ms | ORT speed-up |\n"));
  const std::string dash = "\xe2\x80\x94";
  auto fmt1 = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return std::string(buf);
  };
  CHECK(fmt1(100.0 * 19 / (19 + 1)) == "95.0");
  // x86-onednn: simulated 91.30, oneDNN 91.10 / 99.20, ORT 91.25 / 99.65 with 19 of 19 + 1 convs and
  // matmuls in int8 = 95.0 %; no ORT latency on this cell.
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | x86-onednn | w8a8 | 0 | 91.30 | 91.10 | 99.20 | 91.25 | 99.65 | " +
                                 fmt1(100.0 * 19 / (19 + 1)) + " | " + dash + " | " + dash + " | " + dash + " |\n"));
  // ort-cpu w8a8: not on LibTorch; ORT 91.18 / 99.40, 20 of 20 = 100.0 %, 0.80 ms int8 vs 2.00 ms FP32
  // at batch 32 = 2.50x.
  CHECK(fmt2(2.00 / 0.80) == "2.50");
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | ort-cpu | w8a8 | 0 | 91.28 | " + dash + " | " + dash +
                                 " | 91.18 | 99.40 | 100.0 | 0.800 | 2.000 | " + fmt2(2.00 / 0.80) + "x |\n"));
  // ort-cpu w4a4: ONNX Runtime refused it; the reason (on one line) in the note under the table.
  CHECK_THAT(md, Catch::Contains("| resnet20 | minmax | ort-cpu | w4a4 | 0 | 89.00 | " + dash + " | " + dash + " | refused (1) | " +
                                 dash + " | " + dash + " | " + dash + " | " + dash + " | " + dash + " |\n"));
  CHECK_THAT(md, Catch::Contains("> (1) onnxruntime refused 1 cell: export: layer1.0.conv1 has w_bits=4 & ONNX QDQ needs 8 "
                                 "(100% of its convs) hint: use w8a8\n"));
  CHECK_THAT(md, Catch::Contains("at batch 32; speed-up = FP32 ms / int8 ms."));
  CHECK_THAT(md, Catch::Contains("oneDNN = libtorch-onednn (LibTorch's quantized operators"));
  // Report order: right after the deploy table.
  CHECK(md.find("## Simulated vs deployed") < md.find("## Deployment engines"));
  CHECK(md.find("## Deployment engines") < md.find("## Cost"));

  SECTION("--table engines keeps it alone; as CSV, its cells with the group axis first") {
    report::ReportOptions opt;
    opt.tables = {"engines"};
    const auto one = report::render_markdown(in, opt);
    CHECK_THAT(one, Catch::Contains("## Deployment engines: fashion-mnist"));
    CHECK_THAT(one, !Catch::Contains("## Simulated vs deployed"));
    CHECK_THAT(one, !Catch::Contains("## Academic track"));
    auto csv = parse_csv(report::render_csv(in, opt));
    REQUIRE(csv.size() == 1 + 3);
    CHECK(join(csv[0], ",") == "dataset,arch,algorithm,profile,bits,seed,simulated,oneDNN top-1,oneDNN agree %,ORT top-1,"
                               "ORT agree %,ORT int8 cov %,ORT int8 ms,ORT FP32 ms,ORT speed-up");
    CHECK(join(csv[2], "|") == "fashion-mnist|resnet20|minmax|ort-cpu|w8a8|0|91.28|||91.18|99.40|100.0|0.800|2.000|2.50x");
    CHECK(csv[3][9] == "refused (1)");
  }
  SECTION("only the engines of the kept cells get columns") {
    report::ReportOptions opt;
    opt.filters = {report::parse_filter("profile=ort-cpu")};
    const auto md2 = report::render_markdown(in, opt);
    CHECK_THAT(md2, Catch::Contains("| arch | algorithm | profile | bits | seed | simulated | ORT top-1 | ORT agree % | "));
    CHECK_THAT(md2, !Catch::Contains("oneDNN"));
    // Without ORT latency anywhere, no latency columns.
    opt.filters = {report::parse_filter("profile=x86-onednn")};
    const auto md3 = report::render_markdown(in, opt);
    CHECK_THAT(md3, Catch::Contains("| oneDNN top-1 | oneDNN agree % | ORT top-1 | ORT agree % | ORT int8 cov % |\n"));
    CHECK_THAT(md3, !Catch::Contains("ORT int8 ms"));
  }
  SECTION("one note per reason, counting its cells; a long reason is cut on a character boundary") {
    int64_t refused_id = 0, ort_id = 0;
    for (const auto& r : in.rows)
      if (r.result && r.result->profile == "ort-cpu") (r.result->w_bits == 4 ? refused_id : ort_id) = r.result->id;
    REQUIRE(refused_id);
    REQUIRE(ort_id);
    in.deploy_engines[ort_id] = in.deploy_engines[refused_id];  // the same refusal on a second cell
    auto md2 = report::render_markdown(in);
    CHECK_THAT(md2, Catch::Contains("> (1) onnxruntime refused 2 cells: export: layer1.0.conv1"));
    CHECK_THAT(md2, !Catch::Contains("refused (2)"));
    // 300 bytes of reason (100 three-byte characters): cut to at most 200 bytes of whole characters,
    // 66 of them = 198 bytes. The ort-cpu w8a8 cell comes first in the plan, so its reason is (1).
    std::string lng;
    for (int i = 0; i < 100; ++i) lng += "\xe2\x82\xac";
    in.deploy_engines[ort_id] = {{"deploy_engines", "onnxruntime", {}, "not deployed: " + lng}};
    md2 = report::render_markdown(in);
    CHECK_THAT(md2, Catch::Contains("| resnet20 | minmax | ort-cpu | w4a4 | 0 | 89.00 | " + dash + " | " + dash + " | refused (2) |"));
    CHECK_THAT(md2, Catch::Contains("> (2) onnxruntime refused 1 cell: export: layer1.0.conv1"));
    const std::string prefix = "> (1) onnxruntime refused 1 cell: ";
    const auto b = md2.find(prefix);
    REQUIRE(b != std::string::npos);
    const std::string note = md2.substr(b + prefix.size(), md2.find('\n', b) - b - prefix.size());
    CHECK(note == lng.substr(0, 198) + " ...");
  }
  SECTION("a run without per-engine rows says so in one line") {
    in.deploy_engines.clear();
    const auto md2 = report::render_markdown(in);
    CHECK_THAT(md2, Catch::Contains("## Deployment engines\n\nNo cell of this run has per-engine deployment rows"));
    // The deploy table still names the engines of its rows from the results.
    CHECK_THAT(md2, Catch::Contains("| ort-cpu | w8a8 | onnxruntime | 91.28 |"));
  }
}

TEST_CASE("report: a GPU run names its device and keeps GPU latency apart from CPU latency", "[report]") {
  report::ReportInput in;
  in.run.id = 4;
  in.run.matrix_name = "gpu";
  in.run.threads = 1;
  auto add = [&](const std::string& key, const std::string& source, double p50) {
    CellResult r = toy_result(4, key);
    r.top1 = 80.0;
    r.latency_ms_p50 = r.latency_ms_p90 = p50;
    r.latency_batch = 32;
    r.latency_source = source;
    r.device = source == "measured-fakequant" ? "cpu" : "cuda:0";
    add_row(in, r);
  };
  SECTION("a CPU run shows no device line (absent means the CPU)") {
    add("k1", "measured-fakequant", 2.0);
    CHECK_THAT(report::render_markdown(in), !Catch::Contains("- device:"));
    CHECK_FALSE(nlohmann::json::parse(report::render_json(in))["run"].contains("device"));
  }
  SECTION("a GPU run") {
    in.run.device = "cuda:0";
    add("k1", "measured-fakequant-cuda", 0.5);
    add("k2", "measured-fakequant", 2.0);
    const auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("- threads: 1\n- device: cuda:0\n"));
    CHECK(nlohmann::json::parse(report::render_json(in))["run"]["device"] == "cuda:0");
    // Two sources, each on its own row, the mix called out, CPU sources first.
    CHECK_THAT(md, Catch::Contains("> This table mixes latency sources (measured-fakequant, measured-fakequant-cuda)"));
    CHECK_THAT(md, Catch::Contains("measured-fakequant-cuda: the simulated (fake-quantized) model timed in float on a CUDA GPU"));
    CHECK(md.find("| measured-fakequant |") < md.find("| measured-fakequant-cuda |"));
  }
}

TEST_CASE("report: a merged run lists its conflicts, every result kept and the earliest used", "[report]") {
  report::ReportInput in;
  in.run.id = 4;
  in.run.matrix_name = "merged";
  SECTION("a run that was not merged has no such table") {
    CHECK_THAT(report::render_markdown(in), !Catch::Contains("## Merge conflicts"));
  }
  SECTION("two ok results of one cell") {
    in.run.environment_json = R"({"merge": {"conflicts": [{"cell_key": "0123456789abcdef", "label": "resnet8 minmax w8a8",
      "chosen": 17, "results": [
        {"result_id": 17, "top1": 70.25, "job": "slurm 4102_3", "host": "node1", "finished_at": "2026-12-07T05:00:00Z"},
        {"result_id": 42, "top1": 70.5, "job": "local 7", "host": "node2", "finished_at": "2026-12-07T06:00:00Z"}]}]}})";
    const auto md = report::render_markdown(in);
    CHECK_THAT(md, Catch::Contains("## Merge conflicts"));
    CHECK_THAT(md, Catch::Contains("| 0123456789ab | resnet8 minmax w8a8 | 17 | 70.25 | slurm 4102_3 | node1 | "
                                   "2026-12-07T05:00:00Z | used |"));
    CHECK_THAT(md, Catch::Contains("| 0123456789ab | resnet8 minmax w8a8 | 42 | 70.50 | local 7 | node2 | "
                                   "2026-12-07T06:00:00Z | kept |"));
    CHECK_THAT(report::render_html(in), Catch::Contains("Merge conflicts"));
    CHECK_THAT(report::render_latex(in), Catch::Contains("Merge conflicts"));
  }
}

namespace {
/// A run with mixed precision: resnet20 FP32 91.50, minmax at uniform w4a8 (90.00, 128 KiB) and
/// w3a8 (80.00, 96 KiB) and at the budget mixed:size_kb=96 for seeds 0 and 1 (88.00 and 86.00,
/// 95.5 and 95.9 KiB: mean 95.7 +- 0.28), each with its model_cost row; the mixed cells carry
/// bit_allocation rows for two layers (seed 0: conv1 w8a8 fixed, fc w2a8; seed 1: fc w3a8).
struct MixedFixture {
  Store store{":memory:"};
  int64_t run = 0;
  MixedFixture() {
    run = store.begin_run(run_info("2026-12-07T10:00:00.000Z"));
    std::vector<PlannedCell> plan;
    std::vector<CellResult> rows;
    auto cost = [](double size, double bops, double w) {
      return CellDetail{"model_cost", "", {{"size_kb", size}, {"bops_ratio", bops}, {"avg_w_bits", w}, {"avg_a_bits", 8}}, ""};
    };
    auto add = [&](CellResult r, const std::string& mixed_label) {
      nlohmann::json cfg = {{"dataset", r.dataset}, {"arch", r.arch}, {"algorithm", r.algorithm}, {"profile", r.profile},
                            {"kind", r.kind},       {"w_bits", r.w_bits}, {"a_bits", r.a_bits},     {"seed", r.seed}};
      if (!mixed_label.empty()) {
        cfg["mixed"] = {{"label", mixed_label}, {"budget", {{"size_kb", 96}}}};
        r.cell_key = key(mixed_label + std::to_string(r.seed));
      }
      r.config_json = cfg.dump();
      plan.push_back(PlannedCell{run, static_cast<int>(plan.size()), r.cell_key, "run", std::nullopt, r.config_json});
      rows.push_back(r);
    };
    add(result(run, "resnet20", "fp32", 32, 0, 91.50, std::nullopt), "");
    auto w4 = result(run, "resnet20", "minmax", 4, 0, 90.00, 91.50);
    w4.a_bits = 8;
    w4.cell_key = key("w4a8");
    w4.details = {cost(128, 0.5, 4)};
    add(w4, "");
    auto w3 = result(run, "resnet20", "minmax", 3, 0, 80.00, 91.50);
    w3.a_bits = 8;
    w3.cell_key = key("w3a8");
    w3.details = {cost(96, 0.375, 3)};
    add(w3, "");
    auto m0 = result(run, "resnet20", "minmax", 8, 0, 88.00, 91.50);
    m0.details = {cost(95.5, 0.36, 2.98),
                  {"bit_allocation", "conv1", {{"w_bits", 8}, {"a_bits", 8}, {"params", 144}, {"fixed", 1}}, ""},
                  {"bit_allocation", "fc", {{"w_bits", 2}, {"a_bits", 8}, {"params", 640}, {"fixed", 0}}, ""}};
    add(m0, "mixed:size_kb=96");
    auto m1 = result(run, "resnet20", "minmax", 8, 1, 86.00, 91.70);
    m1.details = {cost(95.9, 0.37, 2.99),
                  {"bit_allocation", "conv1", {{"w_bits", 8}, {"a_bits", 8}, {"params", 144}, {"fixed", 1}}, ""},
                  {"bit_allocation", "fc", {{"w_bits", 3}, {"a_bits", 8}, {"params", 640}, {"fixed", 0}}, ""}};
    add(m1, "mixed:size_kb=96");
    store.plan_cells(run, plan);
    for (const auto& r : rows) store.put_result(r);
    store.end_run(run, "finished");
  }
};
}  // namespace

TEST_CASE("report: mixed-precision budgets beside uniform widths, and the allocation table", "[report][mixed]") {
  MixedFixture fx;
  const auto in = report::load_input(fx.store, fx.run);
  report::ReportOptions opt;
  opt.tables = {"mixed", "bit_allocation"};
  const std::string md = report::render_markdown(in, opt);
  INFO(md);
  CHECK_THAT(md, Catch::Contains("Mixed precision: fashion-mnist / resnet20 / academic"));
  // Largest first: w4a8, then the budget's 95.7 KiB below w3a8's 96: mean of 88 and 86 = 87.00,
  // std 1.41, delta to each seed's FP32 (-3.50, -5.70) = -4.60.
  CHECK_THAT(md, Catch::Contains("| minmax | w4a8 | 90.00 (-1.50) | 128.0 | 0.500 | 4.00 | 8.00 |"));
  CHECK_THAT(md, Catch::Contains("| minmax | w3a8 | 80.00 (-11.50) | 96.0 | 0.375 | 3.00 | 8.00 |"));
  CHECK_THAT(md, Catch::Contains("| minmax | mixed:size_kb=96 | 87.00 ± 1.41 (-4.60, n=2) | 95.7 ± 0.3 | 0.365 ± 0.007 | 2.99 ± 0.01 | 8.00 ± 0.00 |"));
  CHECK(md.find("w4a8 | 90.00") < md.find("w3a8 | 80.00"));
  // The allocation of the first seed, one column per budget; * marks the profile's fixed layer.
  CHECK_THAT(md, Catch::Contains("Bit allocation: fashion-mnist / resnet20 / academic seed 0"));
  CHECK_THAT(md, Catch::Contains("| conv1 | 144 | w8a8* |"));
  CHECK_THAT(md, Catch::Contains("| fc | 640 | w2a8 |"));
  // The HTML page adds the accuracy-vs-size and accuracy-vs-BOPs charts for this arch.
  const std::string html = report::render_html(in, {});
  CHECK_THAT(html, Catch::Contains("Accuracy vs weight size (resnet20; mixed filled, its Pareto front dashed): fashion-mnist / academic"));
  CHECK_THAT(html, Catch::Contains("Accuracy vs BOPs (resnet20; mixed filled, its Pareto front dashed): fashion-mnist / academic"));
  // A run without mixed cells has neither the tables nor the charts.
  Fixture plain;
  CHECK(report::render_markdown(plain.input(), opt).find("Mixed precision") == std::string::npos);
  CHECK(report::render_html(plain.input(), {}).find("Accuracy vs weight size") == std::string::npos);
}
