// Writes the report tests' fixture store rendered in every format into a folder, for the checks
// that need an outside program (pdflatex, headless Chromium):
//   qbench_write_report_fixture OUT_DIR   ->  OUT_DIR/report.{md,html,tex,csv,json}
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "unit/report/fixture.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: qbench_write_report_fixture OUT_DIR\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  qbench::report_test::Fixture fx;
  const auto in = fx.input();
  const std::pair<const char*, const char*> outputs[] = {
      {"markdown", "report.md"}, {"html", "report.html"}, {"latex", "report.tex"}, {"csv", "report.csv"}, {"json", "report.json"}};
  for (const auto& [format, name] : outputs) {
    std::ofstream f(dir / name, std::ios::binary);
    f << qbench::report::render(format, in);
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
      return 1;
    }
  }
  return 0;
}
