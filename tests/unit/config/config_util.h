#pragma once
// What the config tests share: the small catalog they validate against (fake_catalog.cpp) and the
// message a matrix text fails with.
#include <string>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"

namespace qbench::config::test {

Catalog fake_catalog();

/// The message of the ConfigError that parsing `yaml` (as m.yaml, against fake_catalog()) throws,
/// or "<no error>".
inline std::string error_of(const std::string& yaml) {
  try {
    parse_matrix(yaml, "m.yaml", fake_catalog());
  } catch (const qbench::ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace qbench::config::test
