#pragma once
// What the config tests share: the small catalog they validate against (fake_catalog.cpp) and the
// message a matrix text (or any other configuration step) fails with.
#include <string>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"

namespace qbench::config::test {

Catalog fake_catalog();

/// The message of the ConfigError that `f()` throws, or "<no error>".
template <typename F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const qbench::ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

/// The message of the ConfigError that parsing `yaml` (as m.yaml, against fake_catalog()) throws,
/// or "<no error>".
inline std::string error_of(const std::string& yaml) {
  return config_error([&] { parse_matrix(yaml, "m.yaml", fake_catalog()); });
}

}  // namespace qbench::config::test
