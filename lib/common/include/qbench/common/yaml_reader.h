#pragma once
// Validated reading of YAML files for every torch-free parser (hardware profiles; the matrix
// parser's helpers can move here too): typed scalars, maps checked against their allowed keys,
// and errors that name file:line:column, the key path and the closest valid name.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace qbench::yaml {

/// 1-based line/column (0 = unknown).
struct Mark {
  int line = 0;
  int column = 0;
};

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
  int64_t integer(const Item& it, int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max()) const;
  bool boolean(const Item& it) const;
  /// One of `allowed` (an enum value); anything else fails with the closest candidates.
  std::string choice(const Item& it, const std::string& kind, const std::vector<std::string>& allowed) const;
  /// A non-empty list (a single scalar is not accepted).
  std::vector<Item> list_items(const Item& it, const std::string& expect) const;
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
