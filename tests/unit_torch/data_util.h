#pragma once
// What the dataset tests share: the check that a corrupt or malformed input fails with a
// DataError naming the file and saying what is wrong with it.
#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "qbench/common/errors.h"

namespace qbench::test {

/// `f()` throws a qbench::DataError whose message names `file` and contains `needle`.
inline void expect_data_error(const std::function<void()>& f, const std::string& file, const std::string& needle) {
  try {
    f();
    FAIL("no error (expected '" << needle << "' naming " << file << ")");
  } catch (const qbench::DataError& e) {
    CHECK_THAT(e.what(), Catch::Contains(file) && Catch::Contains(needle));
  }
}

}  // namespace qbench::test
