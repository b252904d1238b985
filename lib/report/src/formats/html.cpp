// HTML: one self-contained page (tables and Vega-Lite charts, the charting libraries inlined) that
// works offline. The charts are declarative Vega-Lite specs built here from the model's points;
// vega-embed draws them in the browser.
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "assets.h"
#include "model.h"
#include "qbench/common/strings.h"

namespace qbench::report {

using namespace detail;

namespace {

const char* const kSchema = "https://vega.github.io/schema/vega-lite/v6.json";

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

/// JSON text that is safe inside a <script> element: '<' only occurs inside JSON strings, where
/// \u003c means the same character, so "</script>" and "<!--" cannot appear.
std::string script_json(const Json& j) {
  std::string text = dump(j);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

struct Chart {
  std::string id, title;
  Json spec;
};

Json tooltip(std::initializer_list<std::pair<const char*, const char*>> fields) {
  Json t = Json::array();
  for (const auto& [field, type] : fields) t.push_back(Json{{"field", field}, {"type", type}});
  return t;
}

/// A 420x260 chart of `layers` over `values`, sharing `encoding` (x, y and what else the layers share).
Chart layered_chart(std::string title, Json values, Json encoding, Json layers) {
  Chart c;
  c.title = std::move(title);
  c.spec = {{"$schema", kSchema},   {"title", c.title},
            {"width", 420},         {"height", 260},
            {"data", {{"values", std::move(values)}}},
            {"encoding", std::move(encoding)},
            {"layer", std::move(layers)}};
  return c;
}

std::string chart_title(const Point& p, const std::string& what, bool with_profile) {
  std::string t = what + ": " + p.dataset;
  if (with_profile) t += " / " + p.profile;
  if (!p.group_label.empty()) t += " / " + p.group_label;
  return t;
}

/// Accuracy against bit width, one line per arch x algorithm starting at its FP32 reference; one
/// chart per dataset, profile and --group-by value.
void accuracy_vs_bits(const Model& m, std::vector<Chart>& charts) {
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<const Point*>> groups;
  std::vector<std::tuple<std::string, std::string, std::string>> order;
  for (const auto& p : m.points) {
    if (p.algorithm == "fp32" || p.top1.empty()) continue;
    auto k = std::make_tuple(p.dataset, p.profile, p.group_label);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&p);
  }
  for (const auto& k : order) {
    const auto& pts = groups[k];
    Json values = Json::array();
    std::vector<std::pair<std::pair<int, int>, std::string>> bits;
    std::map<std::string, Stat> fp32;  // series -> FP32 references
    bool any_std = false;
    std::set<std::string> archs;
    for (const Point* p : pts) {
      const std::string series = p->arch + " / " + p->algorithm;
      archs.insert(p->arch);
      const double sd = p->top1.std();
      any_std = any_std || p->top1.n() >= 2;
      values.push_back(Json{{"arch", p->arch}, {"algorithm", p->algorithm}, {"series", series}, {"bits", p->bits},
                            {"top1", p->top1.mean()}, {"std", sd}, {"n", p->top1.n()},
                            {"lo", p->top1.mean() - sd}, {"hi", p->top1.mean() + sd}});
      bits.push_back({{-p->w_bits, -p->a_bits}, p->bits});
      auto& f = fp32[series];
      f.values.insert(f.values.end(), p->fp32_top1.values.begin(), p->fp32_top1.values.end());
    }
    for (const auto& [series, f] : fp32) {
      if (f.empty()) continue;
      const Point* any = nullptr;
      for (const Point* p : pts)
        if (p->arch + " / " + p->algorithm == series) any = p;
      values.push_back(Json{{"arch", any->arch}, {"algorithm", any->algorithm}, {"series", series}, {"bits", "fp32"},
                            {"top1", f.mean()}, {"std", 0.0}, {"n", f.n()}, {"lo", f.mean()}, {"hi", f.mean()}});
      bits.push_back({{-32, -32}, "fp32"});
    }
    std::sort(bits.begin(), bits.end());
    Json sort = Json::array();
    for (const auto& b : bits)
      if (std::find(sort.begin(), sort.end(), b.second) == sort.end()) sort.push_back(b.second);

    Json x = {{"field", "bits"}, {"type", "ordinal"}, {"sort", sort}, {"title", "bit width (weights/activations)"}};
    Json y = {{"field", "top1"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "top-1 (%)"}};
    Json color = {{"field", "algorithm"}, {"type", "nominal"}};
    Json line = {{"mark", {{"type", "line"}, {"point", true}}},
                 {"encoding",
                  {{"detail", {{"field", "series"}, {"type", "nominal"}}},
                   {"tooltip", tooltip({{"arch", "nominal"}, {"algorithm", "nominal"}, {"bits", "ordinal"},
                                        {"top1", "quantitative"}, {"std", "quantitative"}, {"n", "quantitative"}})}}}};
    if (archs.size() > 1) line["encoding"]["strokeDash"] = {{"field", "arch"}, {"type", "nominal"}};
    Json layers = Json::array({line});
    if (any_std)
      layers.push_back({{"mark", "errorbar"},
                        {"encoding", {{"y", {{"field", "lo"}, {"type", "quantitative"}, {"title", "top-1 (%)"}}},
                                      {"y2", {{"field", "hi"}}}}}});
    charts.push_back(layered_chart(chart_title(*pts.front(), "Accuracy vs bit width", true), values,
                                   {{"x", x}, {"y", y}, {"color", color}}, layers));
  }
}

/// Marks the Pareto front of `v` by `cost` (lower is better) against top-1: sorted by cost (ties:
/// more accurate first), a point is on the front when it is more accurate than every cheaper one.
template <class Cost>
void mark_front(std::vector<const Point*> v, Cost cost, std::map<const Point*, bool>& front) {
  std::sort(v.begin(), v.end(), [&](const Point* a, const Point* b) {
    return cost(a) != cost(b) ? cost(a) < cost(b) : a->top1.mean() > b->top1.mean();
  });
  double best = -1e300;
  for (const Point* p : v) {
    front[p] = p->top1.mean() > best;
    best = std::max(best, p->top1.mean());
  }
}

/// Accuracy against latency per profile, FP32 baselines included; the Pareto front (no other
/// point of the same latency source is both faster and more accurate) is drawn as a dashed line.
void accuracy_vs_latency(const Model& m, std::vector<Chart>& charts) {
  std::vector<std::tuple<std::string, std::string, std::string>> order;
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<const Point*>> groups;
  std::map<std::pair<std::string, std::string>, std::vector<const Point*>> baselines;  // (dataset, group)
  for (const auto& p : m.points) {
    if (p.top1.empty() || p.latency_p50.empty()) continue;
    if (p.algorithm == "fp32") {
      baselines[{p.dataset, p.group_label}].push_back(&p);
      continue;
    }
    auto k = std::make_tuple(p.dataset, p.profile, p.group_label);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&p);
  }
  for (const auto& k : order) {
    std::vector<const Point*> pts = groups[k];
    for (const Point* b : baselines[{std::get<0>(k), std::get<2>(k)}]) pts.push_back(b);
    // Pareto front per latency source: sort by latency, keep each point more accurate than every
    // faster one.
    std::map<const Point*, bool> front;
    std::map<std::string, std::vector<const Point*>> by_source;
    for (const Point* p : pts) by_source[p->latency_source].push_back(p);
    for (auto& [source, v] : by_source) mark_front(v, [](const Point* p) { return p->latency_p50.mean(); }, front);
    Json values = Json::array();
    for (const Point* p : pts)
      values.push_back(Json{{"arch", p->arch}, {"algorithm", p->algorithm}, {"bits", p->bits},
                            {"profile", p->profile}, {"latency_ms", p->latency_p50.mean()}, {"top1", p->top1.mean()},
                            {"source", p->latency_source.empty() ? "?" : p->latency_source}, {"pareto", front[p]}});
    Json x = {{"field", "latency_ms"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "latency p50 (ms)"}};
    Json y = {{"field", "top1"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "top-1 (%)"}};
    Json points = {{"mark", {{"type", "point"}, {"filled", true}, {"size", 70}}},
                   {"encoding",
                    {{"color", {{"field", "algorithm"}, {"type", "nominal"}}},
                     {"shape", {{"field", "source"}, {"type", "nominal"}, {"title", "latency source"}}},
                     {"tooltip", tooltip({{"arch", "nominal"}, {"algorithm", "nominal"}, {"bits", "ordinal"},
                                          {"latency_ms", "quantitative"}, {"top1", "quantitative"}, {"source", "nominal"},
                                          {"pareto", "nominal"}})}}}};
    Json front_line = {{"transform", Json::array({{{"filter", "datum.pareto"}}})},
                       {"mark", {{"type", "line"}, {"color", "#444"}, {"strokeDash", {4, 3}}}},
                       {"encoding",
                        {{"detail", {{"field", "source"}, {"type", "nominal"}}},
                         {"order", {{"field", "latency_ms"}, {"type", "quantitative"}}}}}};
    charts.push_back(layered_chart(chart_title(*groups[k].front(), "Accuracy vs latency (Pareto front dashed)", true),
                                   values, {{"x", x}, {"y", y}}, Json::array({front_line, points})));
  }
}

/// Mixed precision: accuracy against weight size and against BOPs per dataset, profile and arch,
/// mixed budgets (filled) beside uniform widths (hollow), the mixed cells' Pareto front (no other
/// mixed cell is both smaller and more accurate) dashed. Only where a group has a mixed cell.
void accuracy_vs_cost(const Model& m, std::vector<Chart>& charts, const std::string& field) {
  std::vector<std::tuple<std::string, std::string, std::string, std::string>> order;
  std::map<std::tuple<std::string, std::string, std::string, std::string>, std::vector<const Point*>> groups;
  for (const auto& p : m.points) {
    const Stat& x = field == "size_kb" ? p.size_kb : p.bops_ratio;
    if (p.top1.empty() || x.empty()) continue;
    auto k = std::make_tuple(p.dataset, p.profile, p.arch, p.group_label);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&p);
  }
  for (const auto& k : order) {
    const auto& pts = groups[k];
    if (std::none_of(pts.begin(), pts.end(), [](const Point* p) { return p->mixed; })) continue;
    auto xv = [&](const Point* p) { return (field == "size_kb" ? p->size_kb : p->bops_ratio).mean(); };
    std::map<std::string, std::vector<const Point*>> mixed_by_alg;
    for (const Point* p : pts)
      if (p->mixed) mixed_by_alg[p->algorithm].push_back(p);
    std::map<const Point*, bool> front;
    for (auto& [alg, v] : mixed_by_alg) mark_front(v, xv, front);
    Json values = Json::array();
    for (const Point* p : pts)
      values.push_back(Json{{"algorithm", p->algorithm}, {"bits", p->bits}, {"x", xv(p)}, {"top1", p->top1.mean()},
                            {"kind", p->mixed ? "mixed" : "uniform"}, {"pareto", front[p]}});
    const std::string title = field == "size_kb" ? "weight size (KiB)" : "BOPs / w8a8";
    Json x = {{"field", "x"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", title}};
    Json y = {{"field", "top1"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "top-1 (%)"}};
    Json points = {{"mark", {{"type", "point"}, {"size", 70}}},
                   {"encoding",
                    {{"color", {{"field", "algorithm"}, {"type", "nominal"}}},
                     {"shape", {{"field", "kind"}, {"type", "nominal"}, {"title", "widths"}}},
                     {"fill", {{"field", "algorithm"}, {"type", "nominal"}, {"legend", nullptr}}},
                     {"fillOpacity", {{"condition", {{"test", "datum.kind == 'mixed'"}, {"value", 1}}}, {"value", 0}}},
                     {"tooltip", tooltip({{"algorithm", "nominal"}, {"bits", "ordinal"}, {"x", "quantitative"},
                                          {"top1", "quantitative"}, {"pareto", "nominal"}})}}}};
    Json front_line = {{"transform", Json::array({{{"filter", "datum.pareto"}}})},
                       {"mark", {{"type", "line"}, {"strokeDash", {4, 3}}}},
                       {"encoding",
                        {{"color", {{"field", "algorithm"}, {"type", "nominal"}}},
                         {"order", {{"field", "x"}, {"type", "quantitative"}}}}}};
    const std::string what = std::string(field == "size_kb" ? "Accuracy vs weight size" : "Accuracy vs BOPs") + " (" +
                             std::get<2>(k) + "; mixed filled, its Pareto front dashed)";
    charts.push_back(layered_chart(chart_title(*pts.front(), what, true), values, {{"x", x}, {"y", y}},
                                   Json::array({front_line, points})));
  }
}

/// Simulated against deployed top-1 with the y = x line (points below it lost accuracy on the
/// integer backend).
void sim_vs_deploy(const Model& m, std::vector<Chart>& charts) {
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<const Point*>> groups;
  for (const auto& p : m.points) {
    if (p.top1.empty() || p.deploy_top1.empty()) continue;
    std::pair<std::string, std::string> k{p.dataset, p.group_label};
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&p);
  }
  for (const auto& k : order) {
    Json values = Json::array();
    double lo = 1e300, hi = -1e300;
    for (const Point* p : groups[k]) {
      values.push_back(Json{{"arch", p->arch}, {"algorithm", p->algorithm}, {"bits", p->bits}, {"profile", p->profile},
                            {"engine", p->deploy_engine.empty() ? std::string("not recorded") : p->deploy_engine},
                            {"simulated", p->top1.mean()}, {"deployed", p->deploy_top1.mean()}});
      lo = std::min({lo, p->top1.mean(), p->deploy_top1.mean()});
      hi = std::max({hi, p->top1.mean(), p->deploy_top1.mean()});
    }
    Json diagonal = {{"data", {{"values", Json::array({{{"v", lo}}, {{"v", hi}}})}}},
                     {"mark", {{"type", "line"}, {"color", "#999"}, {"strokeDash", {2, 2}}}},
                     {"encoding",
                      {{"x", {{"field", "v"}, {"type", "quantitative"}}}, {"y", {{"field", "v"}, {"type", "quantitative"}}}}}};
    Json points = {{"mark", {{"type", "point"}, {"filled", true}, {"size", 70}}},
                   {"encoding",
                    {{"x", {{"field", "simulated"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "simulated top-1 (%)"}}},
                     {"y", {{"field", "deployed"}, {"type", "quantitative"}, {"scale", {{"zero", false}}}, {"title", "deployed top-1 (%)"}}},
                     {"color", {{"field", "algorithm"}, {"type", "nominal"}}},
                     {"shape", {{"field", "profile"}, {"type", "nominal"}}},
                     {"tooltip", tooltip({{"arch", "nominal"}, {"algorithm", "nominal"}, {"profile", "nominal"},
                                          {"engine", "nominal"}, {"bits", "ordinal"}, {"simulated", "quantitative"},
                                          {"deployed", "quantitative"}})}}}};
    Chart c;
    c.title = "Simulated vs deployed accuracy: " + k.first + (k.second.empty() ? "" : " / " + k.second);
    c.spec = {{"$schema", kSchema}, {"title", c.title}, {"width", 320}, {"height", 320},
              {"data", {{"values", values}}}, {"layer", Json::array({diagonal, points})}};
    charts.push_back(std::move(c));
  }
}

/// Per noise table (issue 20): the test images whose prediction each noise flips, one bar per cell
/// side by side for each noise, the top-1 delta in the tooltip. Built from the table's own values,
/// so the chart and the table cannot disagree.
void noise_flips(const Model& m, std::vector<Chart>& charts) {
  for (const auto& t : m.tables) {
    if (t.id != "noise") continue;
    Json values = Json::array();
    for (const auto& row : t.rows)
      for (std::size_t c = 2; c < row.size() && c < t.columns.size(); ++c) {
        const Json& v = row[c].value;
        if (!v.is_object() || !v.contains("flips") || v["flips"].is_null()) continue;
        values.push_back(Json{{"cell", row[0].text}, {"noise", t.columns[c].name}, {"flips", v["flips"]},
                              {"delta", v.value("delta", 0.0)}});
      }
    if (values.empty()) continue;
    Json bars = {{"mark", {{"type", "bar"}}},
                 {"encoding",
                  {{"x", {{"field", "noise"}, {"type", "nominal"}, {"sort", nullptr}, {"title", "noise"}}},
                   {"xOffset", {{"field", "cell"}, {"type", "nominal"}, {"sort", nullptr}}},
                   {"y", {{"field", "flips"}, {"type", "quantitative"}, {"title", "predictions flipped"}}},
                   {"color", {{"field", "cell"}, {"type", "nominal"}, {"sort", nullptr}}},
                   {"tooltip", tooltip({{"cell", "nominal"}, {"noise", "nominal"}, {"flips", "quantitative"},
                                        {"delta", "quantitative"}})}}}};
    std::string title = t.title;
    const std::string prefix = "Deployment noise (SysNoise): ";
    if (title.rfind(prefix, 0) == 0) title = title.substr(prefix.size());
    charts.push_back(layered_chart("Predictions flipped per noise: " + title, values, Json::object(), Json::array({bars})));
  }
}

void html_table(std::string& out, const Table& t) {
  out += "<section class=\"table\" data-table=\"" + html_escape(t.id) + "\">\n<h2>" + html_escape(t.title) + "</h2>\n";
  if (t.rows.empty()) {
    out += "<p class=\"empty\">" + html_escape(t.empty_text.empty() ? std::string("No rows.") : t.empty_text) + "</p>\n</section>\n";
    return;
  }
  if (!t.caption.empty()) out += "<p class=\"caption\">" + html_escape(t.caption) + "</p>\n";
  out += "<table>\n<thead><tr>";
  for (const auto& c : t.columns) out += std::string(c.numeric ? "<th class=\"num\">" : "<th>") + html_escape(c.name) + "</th>";
  out += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (std::size_t i = 0; i < row.size(); ++i) {
      const auto& c = t.columns[i];
      out += std::string(c.numeric ? "<td class=\"num\">" : c.wide ? "<td class=\"wide\">" : "<td>") +
             html_escape(row[i].text) + "</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody>\n</table>\n";
  if (!t.notes.empty()) {
    out += "<ul class=\"notes\">\n";
    for (const auto& n : t.notes) out += "<li>" + html_escape(n) + "</li>\n";
    out += "</ul>\n";
  }
  out += "</section>\n";
}

const char* const kStyle = R"css(
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #444; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wide { max-width: 40em; }
.caption, .empty { color: #555; } .notes { color: #8a4b00; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dl.provenance dt { font-weight: 600; } dl.provenance dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } .chart-error { color: #b00; }
)css";

const char* const kEmbedScript = R"js(
(function () {
  var charts = JSON.parse(document.getElementById('qbench-charts').textContent);
  var status = document.getElementById('chart-status');
  if (typeof vegaEmbed !== 'function') {
    if (status) status.textContent = 'Charts unavailable: this file was written without the charting libraries.';
    document.body.setAttribute('data-charts', 'unavailable');
    return;
  }
  var ok = 0, failed = 0;
  Promise.all(charts.map(function (c) {
    return vegaEmbed('#' + c.id, c.spec, {renderer: 'svg', actions: {export: true, source: false, compiled: false, editor: false}})
      .then(function () { ok++; })
      .catch(function (e) {
        failed++;
        var el = document.getElementById(c.id);
        el.textContent = 'Chart failed: ' + e;
        el.className += ' chart-error';
        console.error(e);
      });
  })).then(function () {
    document.body.setAttribute('data-charts', failed ? 'failed' : 'rendered');
    document.body.setAttribute('data-charts-rendered', String(ok));
    document.body.setAttribute('data-charts-failed', String(failed));
  });
})();
)js";

}  // namespace

std::string render_html(const ReportInput& in, const ReportOptions& opt) {
  const Model m = build_model(in, opt);
  std::vector<Chart> charts;
  accuracy_vs_bits(m, charts);
  accuracy_vs_latency(m, charts);
  accuracy_vs_cost(m, charts, "size_kb");
  accuracy_vs_cost(m, charts, "bops_ratio");
  sim_vs_deploy(m, charts);
  noise_flips(m, charts);
  for (std::size_t i = 0; i < charts.size(); ++i) charts[i].id = "chart-" + std::to_string(i + 1);

  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                    html_escape(m.title) + "</title>\n<meta name=\"generator\" content=\"qbench report\">\n<style>" + kStyle +
                    "</style>\n";
  for (const auto& a : embedded_assets()) {
    if (opt.html_inline_libraries)
      out += "<script>/* " + std::string(a.name) + " (vendored, see lib/report/assets/vendor) */\n" + std::string(a.data) +
             "\n</script>\n";
    else
      out += "<script>/* " + std::string(a.name) + " left out (html_inline_libraries = false) */</script>\n";
  }
  out += "</head>\n<body>\n<h1>" + html_escape(m.title) + "</h1>\n<section id=\"provenance\">\n<h2>Provenance</h2>\n<dl class=\"provenance\">\n";
  for (const auto& [label, value] : m.provenance)
    out += "<dt>" + html_escape(label) + "</dt><dd>" + html_escape(value.empty() ? std::string(kDash) : value) + "</dd>\n";
  out += "</dl>\n</section>\n<section id=\"charts\">\n<h2>Charts</h2>\n<p id=\"chart-status\" class=\"caption\">";
  out += charts.empty() ? "No chart: no cell has a top-1 result yet." : "Hover a point for its values.";
  out += "</p>\n<div class=\"charts\">\n";
  for (const auto& c : charts)
    out += "<figure><div class=\"chart\" id=\"" + c.id + "\" title=\"" + html_escape(c.title) + "\"></div></figure>\n";
  out += "</div>\n</section>\n";
  for (const auto& t : m.tables) html_table(out, t);
  Json specs = Json::array();
  for (const auto& c : charts) specs.push_back(Json{{"id", c.id}, {"spec", c.spec}});
  out += "<script type=\"application/json\" id=\"qbench-charts\">" + script_json(specs) + "</script>\n";
  out += std::string("<script>") + kEmbedScript + "</script>\n</body>\n</html>\n";
  return out;
}

void register_html(Registry<FormatInfo>& r) {
  const FormatInfo f{"html", {"htm"}, "one self-contained page with tables and interactive charts (works offline)",
                    &render_html};
  r.add(f.name, f);
}

}  // namespace qbench::report
