#include "qbench/common/options.h"

#include <cmath>
#include <locale>
#include <sstream>

namespace qbench {

namespace {

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  os.precision(15);
  os.imbue(std::locale::classic());
  os << v;
  return os.str();
}

}  // namespace

const char* OptionSpec::type_name() const {
  switch (type) {
    case Type::Int:
      return "an integer";
    case Type::Number:
      return "a number";
    case Type::Bool:
      return "true or false";
    case Type::Choice:
      return "one of the choices";
  }
  return "?";
}

std::string OptionSpec::range_text() const {
  switch (type) {
    case Type::Int:
      // An upper bound at int's maximum is "no bound" (it only keeps the value in the field's type).
      if (hi >= 2147483647.0) return "integer >= " + num(lo);
      return "integer " + num(lo) + ".." + num(hi);
    case Type::Number:
      if (std::isinf(hi)) return std::string("number ") + (lo_open ? "> " : ">= ") + num(lo);
      return std::string("number in ") + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
    case Type::Bool:
      return "true|false";
    case Type::Choice: {
      std::string s;
      for (const auto& c : choices) s += (s.empty() ? "" : "|") + c;
      return s;
    }
  }
  return "";
}

bool OptionSpec::accepts(double v) const {
  if (std::isnan(v)) return false;
  if (lo_open ? !(v > lo) : !(v >= lo)) return false;
  if (hi_open ? !(v < hi) : !(v <= hi)) return false;
  return true;
}

const OptionSpec* SettingsSection::find(const std::string& name) const {
  for (const auto& o : options)
    if (o.name == name) return &o;
  return nullptr;
}

std::vector<std::string> SettingsSection::names() const {
  std::vector<std::string> out;
  for (const auto& o : options) out.push_back(o.name);
  return out;
}

nlohmann::json SettingsSection::defaults() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& o : options) j[o.name] = o.def;
  return j;
}

nlohmann::json SettingsSection::key_json(const nlohmann::json& resolved) const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& o : options) {
    if (!o.in_key) continue;
    auto it = resolved.find(o.name);
    j[o.name] = it != resolved.end() ? *it : o.def;
  }
  return j;
}

}  // namespace qbench
