// CSV and JSON: the per-cell rows (and, in JSON, the aggregated tables) for programs.
#include <string>

#include "model.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using namespace detail;

namespace {

constexpr int kJsonSchemaVersion = 2;

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

Json table_json(const Table& t) {
  Json j;
  j["id"] = t.id;
  j["title"] = t.title;
  Json g = Json::object();
  for (const auto& [k, v] : t.group) g[k] = v;
  j["group"] = g;
  j["caption"] = json_string(t.caption);
  j["columns"] = Json::array();
  for (const auto& c : t.columns) j["columns"].push_back(c.name);
  j["rows"] = Json::array();
  j["values"] = Json::array();
  for (const auto& row : t.rows) {
    Json texts = Json::array(), values = Json::array();
    for (const auto& cell : row) {
      texts.push_back(cell.text);
      values.push_back(cell.value);
    }
    j["rows"].push_back(std::move(texts));
    j["values"].push_back(std::move(values));
  }
  j["notes"] = t.notes;
  j["empty_text"] = json_string(t.empty_text);
  return j;
}

}  // namespace

std::string render_csv(const ReportInput& in, const ReportOptions& opt) {
  check_group_by(opt.group_by);
  const auto rows = apply_filters(resolve(in), opt.filters);
  std::string out;
  // The header comes from the same object as each line, so CSV and JSON never disagree.
  std::vector<std::string> names;
  const Json header_source = row_json(Row{});  // a named object: items() does not own it
  for (const auto& item : header_source.items()) names.push_back(item.key());
  out += join(names, ",") + "\n";
  std::vector<std::string> fields;
  for (const auto& r : rows) {
    fields.clear();
    const Json j = row_json(r);
    for (const auto& item : j.items()) fields.push_back(csv_field(item.value()));
    out += join(fields, ",") + "\n";
  }
  return out;
}

std::string render_json(const ReportInput& in, const ReportOptions& opt) {
  const Model m = build_model(in, opt);
  Json j;
  j["schema_version"] = kJsonSchemaVersion;
  j["run"] = run_json(in.run);
  Json filters = Json::array();
  for (const auto& f : opt.filters) filters.push_back(Json{{"key", f.key}, {"value", f.value}});
  j["filters"] = filters;
  j["group_by"] = opt.group_by;
  j["rows"] = Json::array();
  for (const auto& r : m.rows) j["rows"].push_back(row_json(r));
  j["tables"] = Json::array();
  for (const auto& t : m.tables) j["tables"].push_back(table_json(t));
  return dump(j, 2) + "\n";
}

}  // namespace qbench::report
