#pragma once
// Small helpers shared by tests: a fresh scratch directory per test.
#include <filesystem>
#include <string>

#ifndef QBENCH_TEST_TMP
#define QBENCH_TEST_TMP "/tmp/qbench_tests"
#endif

namespace qbench::test {
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(QBENCH_TEST_TMP) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}
}  // namespace qbench::test
