// Markdown and LaTeX: the model's tables as text people paste into notes and papers.
#include <string>

#include "model.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using namespace detail;

namespace {

bool is_code_label(const std::string& label) {
  return label == "git revision" || label == "matrix file" || label == "matrix sha256" || label == "command line";
}

// ---------------------------------------------------------------------------------------------
// Markdown

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

// ---------------------------------------------------------------------------------------------
// LaTeX

/// Text for LaTeX: specials escaped, ± and — spelled as LaTeX, other non-ASCII as '?', so that
/// any error message compiles with plain pdflatex.
std::string tex(const std::string& s, bool math_signs = false) {
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (s.compare(i, 2, kPlusMinus) == 0) {
      out += "$\\pm$";
      i += 1;
      continue;
    }
    if (s.compare(i, 3, kDash) == 0) {
      out += "---";
      i += 2;
      continue;
    }
    if (c >= 0x80) {  // skip the continuation bytes of one UTF-8 sequence
      out += '?';
      while (i + 1 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) ++i;
      continue;
    }
    switch (c) {
      case '\\': out += "\\textbackslash{}"; break;
      case '&': case '%': case '$': case '#': case '_': case '{': case '}':
        out += '\\';
        out += static_cast<char>(c);
        break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      case '<': out += "\\textless{}"; break;
      case '>': out += "\\textgreater{}"; break;
      case '|': out += "\\textbar{}"; break;
      case '\n': case '\r': out += ' '; break;
      case '-':
        // A sign in a number is a minus; elsewhere "--" must not become an en dash.
        if (math_signs) out += "$-$";
        else out += (i + 1 < s.size() && s[i + 1] == '-') ? "-{}" : "-";
        break;
      case '+': out += math_signs ? "$+$" : "+"; break;
      default:
        if (c < 0x20) out += ' ';
        else out += static_cast<char>(c);
    }
  }
  return out;
}

void tex_table(std::string& out, const Table& t, int index) {
  out += "\\begin{table}[htbp]\n\\centering\n\\footnotesize\n";
  out += "\\caption{" + tex(t.title) + (t.caption.empty() || t.rows.empty() ? "" : ". " + tex(t.caption)) + "}\n";
  out += "\\label{tab:" + t.id + "-" + std::to_string(index) + "}\n";
  if (t.rows.empty()) {
    out += tex(t.empty_text.empty() ? std::string("No rows.") : t.empty_text) + "\n\\end{table}\n\n";
    return;
  }
  std::string spec;
  for (const auto& c : t.columns) spec += c.wide ? "p{9cm}" : c.numeric ? "r" : "l";
  out += "\\begin{tabular}{" + spec + "}\n\\toprule\n";
  for (std::size_t i = 0; i < t.columns.size(); ++i) out += (i ? " & " : "") + tex(t.columns[i].name);
  out += " \\\\\n\\midrule\n";
  for (const auto& row : t.rows) {
    for (std::size_t i = 0; i < row.size(); ++i) out += (i ? " & " : "") + tex(row[i].text, t.columns[i].numeric);
    out += " \\\\\n";
  }
  out += "\\bottomrule\n\\end{tabular}\n";
  for (const auto& n : t.notes) out += "\n\\smallskip\\parbox{\\linewidth}{\\emph{" + tex(n) + "}}\n";
  out += "\\end{table}\n\n";
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

std::string render_latex(const ReportInput& in, const ReportOptions& opt) {
  const Model m = build_model(in, opt);
  std::string out =
      "% Generated by qbench report --format latex. Standalone: pdflatex compiles it as it is; to paste a\n"
      "% table into a paper, copy its table environment (needs \\usepackage{booktabs}).\n"
      "\\documentclass[10pt]{article}\n"
      "\\usepackage[T1]{fontenc}\n"
      "\\usepackage[utf8]{inputenc}\n"
      "\\usepackage[a4paper,landscape,margin=1.5cm]{geometry}\n"
      "\\usepackage{booktabs}\n"
      "\\begin{document}\n"
      "\\section*{" +
      tex(m.title) + "}\n\n";
  out += "\\begin{tabular}{@{}lp{20cm}@{}}\n\\toprule\n";
  for (const auto& [label, value] : m.provenance) {
    std::string v = value.empty() ? std::string("---") : tex(value);
    out += tex(label) + " & " + (is_code_label(label) && !value.empty() ? "\\texttt{" + v + "}" : v) + " \\\\\n";
  }
  out += "\\bottomrule\n\\end{tabular}\n\n";
  int index = 0;
  for (const auto& t : m.tables) tex_table(out, t, ++index);
  out += "\\end{document}\n";
  return out;
}

}  // namespace qbench::report
