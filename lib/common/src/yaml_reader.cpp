#include "qbench/common/yaml_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <locale>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench::yaml {

namespace {

/// The whole of `s` read by std::from_chars into `out` (`format...`: a float's chars_format), with
/// one optional leading '+' (which from_chars does not take); false, `out` untouched, otherwise.
template <typename T, typename... Format>
bool parse_whole(const std::string& s, T& out, Format... format) {
  if (s.empty()) return false;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (*first == '+') ++first;
  if (first == last || *first == '+') return false;
  auto r = std::from_chars(first, last, out, format...);
  return r.ec == std::errc() && r.ptr == last;
}

}  // namespace

bool parse_int64(const std::string& s, int64_t& out) { return parse_whole(s, out); }

bool parse_uint64(const std::string& s, uint64_t& out) {
  // No sign but '+': "-1" and "+-1" are refused here, not left to from_chars.
  if (!s.empty() && (s[0] == '-' || (s[0] == '+' && s.size() > 1 && s[1] == '-'))) return false;
  return parse_whole(s, out);
}

bool parse_double(const std::string& s, double& out) { return parse_whole(s, out, std::chars_format::general); }

Mark mark_of(const YAML::Node& n) {
  auto m = n.Mark();
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string index_path(const std::string& parent, std::size_t i) { return parent + "[" + std::to_string(i) + "]"; }

std::string found(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing (null)";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar:
      if (n.Tag() == "?") return "'" + n.Scalar() + "'";
      return "the string \"" + n.Scalar() + "\"";
    default: return "an undefined value";
  }
}

void Reader::fail(Mark at, const std::string& path, const std::string& msg) const {
  throw ConfigError(file_, at.line, at.column, path, msg);
}

Item Reader::load_document(const std::string& text, const std::string& expect) const {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    Mark mk = e.mark.is_null() ? Mark{} : Mark{e.mark.line + 1, e.mark.column + 1};
    fail(mk, "", "YAML syntax error: " + e.msg);
  }
  if (docs.empty() || docs[0].IsNull()) fail(Mark{}, "", "the file is empty (expected " + expect + ")");
  if (docs.size() > 1) fail(mark_of(docs[1]), "", "expected one YAML document, found " + std::to_string(docs.size()));
  Item root{docs[0], "", mark_of(docs[0])};
  if (root.mark.line == 0) root.mark = {1, 1};
  if (!root.node.IsMap()) fail(root, "expected " + expect + " at the top level, got " + found(root.node));
  return root;
}

std::string Reader::suggest_key(const std::string& name, const std::vector<std::string>& allowed) const {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto it = aliases_.find(lower);
  if (it != aliases_.end() && std::find(allowed.begin(), allowed.end(), it->second) != allowed.end())
    return " (did you mean: " + it->second + "?)";
  return did_you_mean(name, allowed);
}

std::string Reader::string_value(const Item& it) const {
  if (!it.node.IsScalar()) fail(it, "expected a string, got " + found(it.node));
  if (it.node.Scalar().empty()) fail(it, "expected a non-empty string");
  return it.node.Scalar();
}

int64_t Reader::integer(const Item& it, int64_t lo, int64_t hi) const {
  const bool unbounded = hi == std::numeric_limits<int64_t>::max() || hi == std::numeric_limits<int>::max();
  const std::string expect = unbounded ? "an integer >= " + std::to_string(lo)
                                       : "an integer " + std::to_string(lo) + ".." + std::to_string(hi);
  int64_t v = 0;
  if (!is_plain(it) || !parse_int64(it.node.Scalar(), v)) {
    std::string s = it.node.IsScalar() ? it.node.Scalar() : "";
    const std::size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    bool digits = is_plain(it) && s.size() > sign &&
                  std::all_of(s.begin() + sign, s.end(), [](unsigned char c) { return std::isdigit(c); });
    if (digits) fail(it, "expected " + expect + ", got " + s + " (too large)");
    fail(it, "expected " + expect + ", got " + found(it.node));
  }
  if (v < lo) fail(it, "expected " + expect + ", got " + std::to_string(v));
  if (v > hi) fail(it, "expected " + expect + ", got " + std::to_string(v) + (unbounded ? " (too large)" : ""));
  return v;
}

uint64_t Reader::unsigned_integer(const Item& it) const {
  uint64_t v = 0;
  if (!is_plain(it) || !parse_uint64(it.node.Scalar(), v)) {
    int64_t neg = 0;
    if (is_plain(it) && parse_int64(it.node.Scalar(), neg) && neg < 0)
      fail(it, "expected an integer >= 0, got " + std::to_string(neg));
    fail(it, "expected an integer >= 0, got " + found(it.node));
  }
  return v;
}

double Reader::number(const Item& it, double lo, bool lo_incl, double hi, bool hi_incl) const {
  auto fmt = [](double x) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    os << x;
    return os.str();
  };
  std::string expect;
  if (std::isinf(hi))
    expect = std::string("a number ") + (lo_incl ? ">= " : "> ") + fmt(lo);
  else
    expect = std::string("a number in ") + (lo_incl ? "[" : "(") + fmt(lo) + ", " + fmt(hi) + (hi_incl ? "]" : ")");
  double v = 0;
  if (!is_plain(it) || !parse_double(it.node.Scalar(), v) || !std::isfinite(v))
    fail(it, "expected " + expect + ", got " + found(it.node));
  bool ok = (lo_incl ? v >= lo : v > lo) && (hi_incl ? v <= hi : v < hi);
  if (!ok) fail(it, "expected " + expect + ", got " + it.node.Scalar());
  return v;
}

bool Reader::boolean(const Item& it) const {
  if (is_plain(it)) {
    const std::string& s = it.node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  fail(it, "expected true or false, got " + found(it.node));
}

std::string Reader::choice(const Item& it, const std::string& kind, const std::vector<std::string>& allowed) const {
  if (!it.node.IsScalar())
    fail(it, "expected " + kind + " (one of " + join(allowed, ", ") + "), got " + found(it.node));
  const std::string s = it.node.Scalar();
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    std::string hint = did_you_mean(s, allowed);
    if (hint.empty()) hint = " (expected one of " + join(allowed, ", ") + ")";
    fail(it, "unknown " + kind + " '" + s + "'" + hint);
  }
  return s;
}

std::vector<Item> Reader::list_items(const Item& it, const std::string& expect) const {
  if (!it.node.IsSequence()) fail(it, "expected " + expect + ", got " + found(it.node));
  if (it.node.size() == 0) fail(it, "expected " + expect + ", got an empty list");
  return elements(it);
}

std::vector<Item> Reader::elements(const Item& seq) {
  std::vector<Item> out;
  for (std::size_t i = 0; i < seq.node.size(); ++i) {
    YAML::Node e = seq.node[i];
    Mark mk = mark_of(e);
    if (mk.line == 0 || e.IsNull()) mk = seq.mark;
    out.push_back({e, index_path(seq.path, i), mk});
  }
  return out;
}

MapView::MapView(const Reader& r, const Item& item, std::vector<std::string> allowed, const std::string& what)
    : r_(r), self_(item) {
  if (item.node.IsNull()) return;  // an optional section left empty: all defaults
  if (!item.node.IsMap())
    r.fail(item, "expected " + (what.empty() ? std::string("a map") : what) + ", got " + found(item.node));
  for (const auto& kv : item.node) {
    // Copies: yaml-cpp's iterator yields a temporary pair, so a reference would dangle.
    const YAML::Node k = kv.first;
    const YAML::Node v = kv.second;
    Mark km = mark_of(k);
    if (!k.IsScalar()) r.fail(km, item.path, "expected a plain key, got " + found(k));
    const std::string& key = k.Scalar();
    const std::string path = child_path(item.path, key);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      r.fail(km, path, "unknown key" + r.suggest_key(key, allowed));
    if (values_.count(key)) {
      Mark first = mark_of(values_[key].first);
      r.fail(km, path, "duplicate key (first given on line " + std::to_string(first.line) + ")");
    }
    values_[key] = {k, v};
  }
}

Item MapView::get(const std::string& key) const {
  const auto& kv = values_.at(key);
  // A null value has no position of its own (yaml-cpp points at the next token): use the key's.
  Mark mk = kv.second.IsNull() ? mark_of(kv.first) : mark_of(kv.second);
  if (mk.line == 0) mk = mark_of(kv.first);
  return {kv.second, child_path(self_.path, key), mk};
}

Item MapView::require(const std::string& key, const std::string& why) const {
  if (!has(key)) r_.fail(self_, "missing required key '" + key + "'" + why);
  return get(key);
}

}  // namespace qbench::yaml
