// CSV: the per-cell rows (the JSON row fields as header), or with one --table that table's cells,
// its group axes first. RFC 4180 quoting, "\n" line ends, empty for null.
#include <algorithm>
#include <string>

#include "model.h"
#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using namespace detail;

namespace {

/// RFC 4180: quote a field holding a comma, quote, CR or LF, and double its quotes.
std::string csv_field(const Json& v) {
  if (v.is_null()) return "";
  if (!v.is_string()) return dump(v);
  const std::string& s = v.get_ref<const std::string&>();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

/// One table kind as CSV: its group axes, then the union of its tables' columns (a pivot's bit
/// widths differ between groups), one line per table row; empty where a group lacks a column.
std::string table_csv(const Model& m, const std::string& id) {
  std::vector<std::string> group_cols, cols;
  for (const auto& t : m.tables) {
    if (t.id != id) continue;
    for (const auto& [axis, value] : t.group)
      if (std::find(group_cols.begin(), group_cols.end(), axis) == group_cols.end()) group_cols.push_back(axis);
    for (const auto& c : t.columns)
      if (std::find(cols.begin(), cols.end(), c.name) == cols.end()) cols.push_back(c.name);
  }
  std::string out;
  std::vector<std::string> header = group_cols;
  header.insert(header.end(), cols.begin(), cols.end());
  for (std::size_t i = 0; i < header.size(); ++i) out += (i ? "," : "") + csv_field(Json(header[i]));
  out += '\n';
  for (const auto& t : m.tables) {
    if (t.id != id) continue;
    for (const auto& row : t.rows) {
      std::vector<std::string> fields(header.size());
      for (const auto& [axis, value] : t.group)
        fields[std::find(group_cols.begin(), group_cols.end(), axis) - group_cols.begin()] = csv_field(Json(value));
      for (std::size_t i = 0; i < row.size(); ++i) {
        auto at = std::find(cols.begin(), cols.end(), t.columns[i].name) - cols.begin();
        // A missing value is empty, not an em dash, so that spreadsheets see no text.
        fields[group_cols.size() + at] = row[i].text == kDash ? std::string() : csv_field(Json(row[i].text));
      }
      out += join(fields, ",") + "\n";
    }
  }
  return out;
}

}  // namespace

std::string render_csv(const ReportInput& in, const ReportOptions& opt) {
  check_group_by(opt.group_by);
  if (opt.tables.size() > 1)
    throw ConfigError("--format csv writes one table at a time; got --table " + join(opt.tables, ","));
  if (opt.tables.size() == 1) return table_csv(build_model(in, opt), opt.tables[0]);
  const auto rows = apply_filters(resolve(in), opt.filters);
  std::string out;
  bool first = true;
  for (const auto& [name, value] : row_fields(Row{})) {
    if (!first) out += ',';
    out += name;
    first = false;
  }
  out += '\n';
  for (const auto& r : rows) {
    first = true;
    for (const auto& [name, value] : row_fields(r)) {
      if (!first) out += ',';
      out += csv_field(value);
      first = false;
    }
    out += '\n';
  }
  return out;
}

void register_csv(Registry<FormatInfo>& r) {
  const FormatInfo f{"csv", {}, "one line per cell, RFC 4180", &render_csv};
  r.add(f.name, f);
}

}  // namespace qbench::report
