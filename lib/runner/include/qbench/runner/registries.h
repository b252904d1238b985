#pragma once
// The single place where every registry is filled and summarised for the config validator and
// `qbench list`.
#include <string>
#include <vector>

#include "qbench/config/matrix.h"

namespace qbench::runner {

/// Registers the built-in algorithms (idempotent).
void ensure_registered();

/// Names and kinds from the real registries, for config validation.
config::Catalog build_catalog();

struct ListEntry {
  std::string name;
  std::string kind;  ///< algorithm kind ("-" for a refused name), or "" for others
  std::string description;
  /// Lines shown by `qbench list --verbose`: an algorithm's settings table (name, range, default,
  /// the papers' value, what it does).
  std::vector<std::string> details;
};
/// `what`: algorithms | archs | datasets | profiles | observers. Throws ConfigError otherwise.
/// Algorithms end with the names the matrix refuses (planned methods, calibration sources).
std::vector<ListEntry> list_registry(const std::string& what);
std::vector<std::string> list_kinds();

}  // namespace qbench::runner
