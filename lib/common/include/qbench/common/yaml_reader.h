#pragma once
// Validated reading of YAML files for the torch-free parsers (the matrix file, hardware
// profiles): typed scalars, maps checked against their allowed keys, and errors that name
// file:line:column, the key path and the closest valid name.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "qbench/common/source_mark.h"

namespace qbench::yaml {

using Mark = SourceMark;

/// Plain decimal integer with an optional sign; false on anything else (2.5, 0x10, 1e3, "").
bool parse_int64(const std::string& s, int64_t& out);
bool parse_uint64(const std::string& s, uint64_t& out);
/// Locale-independent (std::from_chars), so a German locale cannot turn 0.1 into 0.
bool parse_double(const std::string& s, double& out);

Mark mark_of(const YAML::Node& n);
std::string child_path(const std::string& parent, const std::string& key);
std::string index_path(const std::string& parent, std::size_t i);
/// What the user wrote, for "expected X, got Y" messages.
std::string found(const YAML::Node& n);

/// A node with the key path that leads to it and the position to report.
struct Item {
  YAML::Node node;
  std::string path;
  Mark mark;
};

/// Typed access to one file's nodes; every failure throws qbench::ConfigError.
class Reader {
 public:
  /// `key_aliases`: common misnamings that edit distance cannot catch (e.g. per_channel -> granularity).
  explicit Reader(std::string file, std::map<std::string, std::string> key_aliases = {})
      : file_(std::move(file)), aliases_(std::move(key_aliases)) {}

  [[noreturn]] void fail(Mark at, const std::string& path, const std::string& msg) const;
  [[noreturn]] void fail(const Item& it, const std::string& msg) const { fail(it.mark, it.path, msg); }

  /// The single document of `text` (syntax errors with their position; empty or multi-document
  /// files fail). `expect` describes the top level for the error messages.
  Item load_document(const std::string& text, const std::string& expect) const;

  std::string suggest_key(const std::string& name, const std::vector<std::string>& allowed) const;
  /// Quoted scalars are strings, even "3": the type the user wrote is the type we check.
  static bool is_plain(const Item& it) { return it.node.IsScalar() && it.node.Tag() == "?"; }
  std::string string_value(const Item& it) const;
  /// `hi` at a type's maximum is "no bound": the message says ">= lo" and an overflow says so.
  int64_t integer(const Item& it, int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max()) const;
  int int32(const Item& it, int lo, int hi = std::numeric_limits<int>::max()) const {
    return static_cast<int>(integer(it, lo, hi));
  }
  uint64_t unsigned_integer(const Item& it) const;
  /// A finite number in the interval described by `lo`/`hi` and their inclusiveness.
  double number(const Item& it, double lo, bool lo_incl, double hi = HUGE_VAL, bool hi_incl = false) const;
  bool boolean(const Item& it) const;
  /// One of `allowed` (an enum value); anything else fails with the closest candidates.
  std::string choice(const Item& it, const std::string& kind, const std::vector<std::string>& allowed) const;
  /// A non-empty list (a single scalar is not accepted).
  std::vector<Item> list_items(const Item& it, const std::string& expect) const;
  /// The elements of a sequence with their paths and positions (a null element: the list's).
  static std::vector<Item> elements(const Item& seq);
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::map<std::string, std::string> aliases_;
};

/// A YAML map checked against its allowed keys (unknown or duplicate keys fail at once).
class MapView {
 public:
  MapView(const Reader& r, const Item& item, std::vector<std::string> allowed, const std::string& what);
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  Item get(const std::string& key) const;
  /// Fails with "missing required key" at the map's position when `key` is absent.
  Item require(const std::string& key, const std::string& why = "") const;
  bool empty() const { return values_.empty(); }
  const Item& self() const { return self_; }

 private:
  const Reader& r_;
  Item self_;
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> values_;  // key -> (key node, value)
};

}  // namespace qbench::yaml
