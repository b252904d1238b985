// Markdown: the model's tables as GitHub-flavoured markdown, for notes and pull requests.
#include <algorithm>
#include <string>

#include "model.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using namespace detail;

namespace {

/// One line of text inside a markdown table cell.
std::string md_cell(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out.empty() ? kDash : out;
}

/// `text` as an inline code span, fenced with more backticks than it contains in a row.
std::string code(const std::string& text) {
  if (text.empty()) return kDash;
  std::size_t run = 0, longest = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  std::string fence(longest + 1, '`');
  std::string body = one_line(text);
  if (body.front() == '`' || body.back() == '`') body = " " + body + " ";
  return fence + body + fence;
}

void md_table(std::string& out, const Table& t) {
  out += "## " + md_cell(t.title) + "\n\n";
  if (t.rows.empty()) {
    out += (t.empty_text.empty() ? std::string("No rows.") : t.empty_text) + "\n\n";
    return;
  }
  if (!t.caption.empty()) out += t.caption + "\n\n";
  out += "|";
  for (const auto& c : t.columns) out += " " + md_cell(c.name) + " |";
  out += "\n|";
  for (const auto& c : t.columns) out += c.numeric ? "---:|" : "---|";
  out += "\n";
  for (const auto& row : t.rows) {
    out += "|";
    for (const auto& cell : row) out += " " + md_cell(cell.text) + " |";
    out += "\n";
  }
  out += "\n";
  for (const auto& n : t.notes) out += "> " + one_line(n) + "\n";
  if (!t.notes.empty()) out += "\n";
}

}  // namespace

std::string render_markdown(const ReportInput& in, const ReportOptions& opt) {
  const Model m = build_model(in, opt);
  std::string out = "# " + one_line(m.title) + "\n\n";
  for (const auto& [label, value] : m.provenance)
    out += "- " + label + ": " + (is_code_label(label) ? code(value) : value.empty() ? kDash : one_line(value)) + "\n";
  out += "\n";
  for (const auto& t : m.tables) md_table(out, t);
  while (out.size() >= 2 && out[out.size() - 1] == '\n' && out[out.size() - 2] == '\n') out.pop_back();
  return out;
}

void register_markdown(Registry<FormatInfo>& r) {
  const FormatInfo f{"markdown", {"md"}, "tables in GitHub-flavoured markdown", &render_markdown};
  r.add(f.name, f);
}

}  // namespace qbench::report
