#pragma once
// Fixture access and pixel comparisons for the SysNoise tests (fixtures: scripts/make_sysnoise_fixtures.py).
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "qbench/sysnoise/image.h"

namespace sysnoise_test {

inline std::string fixture(const std::string& name) {
  return std::string(QBENCH_TEST_SOURCE_DIR) + "/fixtures/sysnoise/" + name;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Diff {
  std::size_t count = 0;  ///< values (pixel x channel) that differ
  int max = 0;            ///< largest absolute difference
};

/// Differences between two images of the same shape (count = SIZE_MAX when the shapes differ).
inline Diff diff(const qbench::sysnoise::Image& a, const qbench::sysnoise::Image& b) {
  Diff d;
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) {
    d.count = static_cast<std::size_t>(-1);
    return d;
  }
  for (std::size_t i = 0; i < a.pixels.size(); ++i) {
    const int delta = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    if (delta) ++d.count;
    if (delta > d.max) d.max = delta;
  }
  return d;
}

}  // namespace sysnoise_test
