// Build-time tool: writes a C++ source that holds files as string literals, so the HTML report
// can inline the vendored charting libraries without reading anything at run time.
//   qbench_embed_assets OUT.cpp NAME=PATH [NAME=PATH ...]
// A trailing `//# sourceMappingURL=` line is dropped (the .map files are not vendored). A file
// that contains "</script" or "<!--" is refused: inlined into a <script> element it would end
// the element early (or change how the HTML parser reads it).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool contains_ci(const std::string& hay, const std::string& needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != hay.end();
}

std::string literal_chunks(const std::string& data) {
  std::string out = "\"";
  std::size_t line = 0;
  for (unsigned char c : data) {
    if (line >= 200) {  // many short literals: adjacent ones concatenate
      out += "\"\n\"";
      line = 0;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      line += 2;
    } else if (c == '?') {
      out += "\\?";  // never part of a trigraph
      line += 2;
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++line;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", c);  // always 3 digits: the next char cannot join
      out += buf;
      line += 4;
    }
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: qbench_embed_assets OUT.cpp NAME=PATH [NAME=PATH ...]\n";
    return 2;
  }
  std::ostringstream src;
  src << "// Generated at build time by qbench_embed_assets; do not edit.\n"
         "#include \"assets.h\"\n\nnamespace qbench::report {\nnamespace {\n";
  std::vector<std::pair<std::string, std::size_t>> entries;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    if (eq == std::string::npos) {
      std::cerr << "qbench_embed_assets: expected NAME=PATH, got '" << arg << "'\n";
      return 2;
    }
    std::string name = arg.substr(0, eq), path = arg.substr(eq + 1);
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      std::cerr << "qbench_embed_assets: cannot read " << path << "\n";
      return 1;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    std::string data = ss.str();
    auto map = data.rfind("//# sourceMappingURL=");
    if (map != std::string::npos && data.find('\n', map) == std::string::npos) data.erase(map);
    if (contains_ci(data, "</script") || data.find("<!--") != std::string::npos) {
      std::cerr << "qbench_embed_assets: " << path << " contains \"</script\" or \"<!--\"; it cannot be inlined\n";
      return 1;
    }
    src << "const char kAsset" << entries.size() << "[] =\n" << literal_chunks(data) << ";\n";
    entries.emplace_back(name, data.size());
  }
  src << "}  // namespace\n\nconst std::vector<EmbeddedAsset>& embedded_assets() {\n"
         "  static const std::vector<EmbeddedAsset> assets = {\n";
  for (std::size_t i = 0; i < entries.size(); ++i)
    src << "      {\"" << entries[i].first << "\", std::string_view(kAsset" << i << ", " << entries[i].second
        << ")},\n";
  src << "  };\n  return assets;\n}\n\n}  // namespace qbench::report\n";
  std::ofstream out(argv[1], std::ios::binary);
  out << src.str();
  if (!out) {
    std::cerr << "qbench_embed_assets: cannot write " << argv[1] << "\n";
    return 1;
  }
  return 0;
}
