// JSON: the run, the per-cell rows and the tables with the numbers behind each cell
// (schema_version 2), one row and one table per line.
#include <string>

#include "model.h"

namespace qbench::report {

using namespace detail;

namespace {

constexpr int kJsonSchemaVersion = 2;

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

std::string render_json(const ReportInput& in, const ReportOptions& opt) {
  const Model m = build_model(in, opt);
  // Written by hand around nlohmann's dumps: the header indented, then one row and one table per
  // line (a 100,000-row report stays a few seconds and greppable by line).
  auto indented = [](const std::string& text) {
    std::string out;
    for (char c : text) {
      out += c;
      if (c == '\n') out += "  ";
    }
    return out;
  };
  std::string out = "{\n  \"schema_version\": " + std::to_string(kJsonSchemaVersion) + ",\n";
  out += "  \"run\": " + indented(dump(run_json(in.run), 2)) + ",\n";
  Json filters = Json::array();
  for (const auto& f : opt.filters) filters.push_back(Json{{"key", f.key}, {"value", f.value}});
  out += "  \"filters\": " + dump(filters) + ",\n";
  out += "  \"group_by\": " + dump(Json(opt.group_by)) + ",\n";
  out += "  \"rows\": [";
  for (std::size_t i = 0; i < m.rows.size(); ++i) {
    out += i ? ",\n    {" : "\n    {";
    bool first = true;
    for (const auto& [name, value] : row_fields(m.rows[i])) {
      if (!first) out += ',';
      ((out += '"') += name) += "\":";
      out += dump(value);
      first = false;
    }
    out += '}';
  }
  out += m.rows.empty() ? "],\n" : "\n  ],\n";
  out += "  \"tables\": [";
  for (std::size_t i = 0; i < m.tables.size(); ++i) out += (i ? ",\n    " : "\n    ") + dump(table_json(m.tables[i]));
  out += m.tables.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

void register_json(Registry<FormatInfo>& r) {
  const FormatInfo f{"json", {}, "the rows and the aggregated tables", &render_json};
  r.add(f.name, f);
}

}  // namespace qbench::report
