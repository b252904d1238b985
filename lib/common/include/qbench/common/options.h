#pragma once
// Settings declared once, where they are used. A component (an algorithm, a pipeline stage)
// declares its settings as an OptionTable<T> bound to the struct T it receives: each option's
// name, type, default, bounds, help line and the papers' value. The one table drives
//   - validation of the matrix file (lib/config: types, bounds, "did you mean", file:line:col),
//   - the canonical resolved configuration and so the cell key (options with in_key = false, such
//     as cache sizes, cannot change a result and stay out),
//   - `qbench list algorithms --verbose`,
//   - the value the component receives (OptionTable<T>::read fills T from the resolved JSON).
// Torch-free, like everything the config parser uses.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"

namespace qbench {

/// One setting: what the validator checks and what `qbench list --verbose` prints.
struct OptionSpec {
  enum class Type { Int, Number, Bool, Choice };
  std::string name;
  Type type = Type::Number;
  nlohmann::json def;  ///< typed default: integer, float, bool or string
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;  ///< strict bounds (lo < v rather than lo <= v)
  std::vector<std::string> choices;       ///< Type::Choice
  std::string help;                       ///< one line: what it does
  std::string paper;                      ///< the papers' value and whose it is
  bool in_key = true;                     ///< false: cannot change a result; left out of the cell key

  const char* type_name() const;
  /// "integer 1..inf", "number in (0, 1]", "true|false", "data|zeroq|dsg".
  std::string range_text() const;
  /// Whether `v` (of this option's type) is inside the bounds or choices.
  bool accepts(double v) const;
};

/// The settings of one section of the matrix file (YAML `pipeline.<stage>.<section>`), type-erased
/// for the parser: a component can declare one; several components may share one (adaround,
/// brecq and qdrop all read `pipeline.ptq.reconstruction`).
struct SettingsSection {
  std::string stage;    ///< "ptq" or "qat": the pipeline map the section lives in
  std::string section;  ///< "reconstruction", "bias_correction", ...
  std::vector<OptionSpec> options;
  bool empty() const { return section.empty(); }
  /// "ptq.reconstruction": the key of Matrix::settings and the YAML path below `pipeline`.
  std::string id() const { return stage + "." + section; }
  const OptionSpec* find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Every option at its default (a JSON object).
  nlohmann::json defaults() const;
  /// The options that join the cell key, from a resolved object.
  nlohmann::json key_json(const nlohmann::json& resolved) const;
};

/// Binds a SettingsSection to the struct T its component receives. Declared with chained calls:
///   static const OptionTable<ReconParams> t = OptionTable<ReconParams>("ptq", "reconstruction")
///       .integer("iters", &ReconParams::iters, 20000, 1, kInf, "optimisation steps per unit", "20000 (BRECQ)")
///       .number("lr", &ReconParams::lr, 1e-3, 0, kInf, "Adam lr of the rounding variables", "1e-3", true)
template <typename T>
class OptionTable {
  template <typename X>
  struct Same {  // keeps `def` out of template deduction: integer(..., &T::iters, 20000, ...) with int64_t iters
    using type = X;
  };

 public:
  static constexpr double kInf = std::numeric_limits<double>::infinity();

  OptionTable(std::string stage, std::string section) {
    sec_.stage = std::move(stage);
    sec_.section = std::move(section);
  }

  template <typename I>
  OptionTable&& integer(const char* name, I T::*field, typename Same<I>::type def, double lo, double hi,
                        const char* help, const char* paper = "", bool in_key = true) && {
    OptionSpec s = spec(name, OptionSpec::Type::Int, nlohmann::json(static_cast<int64_t>(def)), help, paper, in_key);
    s.lo = lo;
    s.hi = hi;
    add(
        std::move(s), [field](T& t, const nlohmann::json& v) { t.*field = static_cast<I>(v.get<int64_t>()); },
        [field](const T& t) { return nlohmann::json(static_cast<int64_t>(t.*field)); });
    return std::move(*this);
  }
  /// A real number in [lo, hi], or with open ends where lo_open / hi_open.
  OptionTable&& number(const char* name, double T::*field, double def, double lo, bool lo_open, double hi, bool hi_open,
                       const char* help, const char* paper = "", bool in_key = true) && {
    OptionSpec s = spec(name, OptionSpec::Type::Number, nlohmann::json(def), help, paper, in_key);
    s.lo = lo;
    s.hi = hi;
    s.lo_open = lo_open;
    s.hi_open = hi_open;
    add(
        std::move(s), [field](T& t, const nlohmann::json& v) { t.*field = v.get<double>(); },
        [field](const T& t) { return nlohmann::json(t.*field); });
    return std::move(*this);
  }
  OptionTable&& boolean(const char* name, bool T::*field, bool def, const char* help, const char* paper = "",
                        bool in_key = true) && {
    add(
        spec(name, OptionSpec::Type::Bool, nlohmann::json(def), help, paper, in_key),
        [field](T& t, const nlohmann::json& v) { t.*field = v.get<bool>(); },
        [field](const T& t) { return nlohmann::json(t.*field); });
    return std::move(*this);
  }
  OptionTable&& choice(const char* name, std::string T::*field, std::string def, std::vector<std::string> choices,
                       const char* help, const char* paper = "", bool in_key = true) && {
    OptionSpec s = spec(name, OptionSpec::Type::Choice, nlohmann::json(def), help, paper, in_key);
    s.choices = std::move(choices);
    add(
        std::move(s), [field](T& t, const nlohmann::json& v) { t.*field = v.get<std::string>(); },
        [field](const T& t) { return nlohmann::json(t.*field); });
    return std::move(*this);
  }

  const SettingsSection& section() const { return sec_; }

  /// T from a resolved section (what the parser wrote: every option present, typed). A missing
  /// option takes its default, so a context built in code may pass only what it changes.
  T read(const nlohmann::json& resolved) const {
    T t{};
    for (std::size_t i = 0; i < sec_.options.size(); ++i) {
      const OptionSpec& s = sec_.options[i];
      auto it = resolved.is_object() ? resolved.find(s.name) : resolved.end();
      const nlohmann::json& v = it != resolved.end() ? *it : s.def;
      try {
        set_[i](t, v);
      } catch (const nlohmann::json::exception&) {
        throw Error("setting " + sec_.stage + "." + sec_.section + "." + s.name + ": expected " + s.type_name() +
                    ", got " + v.dump());
      }
    }
    return t;
  }
  /// Every option at its default, as T.
  T defaults() const { return read(nlohmann::json::object()); }
  /// The resolved JSON of `t` (every option), e.g. for a context built in code or a test.
  nlohmann::json to_json(const T& t) const {
    nlohmann::json j = nlohmann::json::object();
    for (std::size_t i = 0; i < sec_.options.size(); ++i) j[sec_.options[i].name] = get_[i](t);
    return j;
  }

 private:
  static OptionSpec spec(const char* name, OptionSpec::Type type, nlohmann::json def, const char* help,
                         const char* paper, bool in_key) {
    OptionSpec s;
    s.name = name;
    s.type = type;
    s.def = std::move(def);
    s.help = help;
    s.paper = paper;
    s.in_key = in_key;
    return s;
  }
  void add(OptionSpec s, std::function<void(T&, const nlohmann::json&)> set,
           std::function<nlohmann::json(const T&)> get) {
    if (sec_.find(s.name)) throw Error("setting " + sec_.section + "." + s.name + " declared twice");
    sec_.options.push_back(std::move(s));
    set_.push_back(std::move(set));
    get_.push_back(std::move(get));
  }

  SettingsSection sec_;
  std::vector<std::function<void(T&, const nlohmann::json&)>> set_;
  std::vector<std::function<nlohmann::json(const T&)>> get_;
};

}  // namespace qbench
