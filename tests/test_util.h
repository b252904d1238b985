#pragma once
// Small helpers shared by tests: a fresh scratch directory per test, whole files in and out.
#include <filesystem>
#include <fstream>
#include <iterator>
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

/// The file's bytes ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Replaces the file's bytes with `b`.
inline void spit(const std::filesystem::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}
}  // namespace qbench::test
