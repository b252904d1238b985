#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "qbench/common/memory.h"

TEST_CASE("tune_allocator: glibc heap settings by default, the system allocator on request", "[common][unit]") {
  ::unsetenv("QBENCH_MALLOC");
  const std::string tuned = qbench::tune_allocator();
  CHECK(qbench::allocator_setting() == tuned);
#if defined(__GLIBC__)
  // Unless the environment already carries malloc tunables, which then win.
  bool user_tunables = std::getenv("GLIBC_TUNABLES") != nullptr;
  for (const char* v : {"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"})
    user_tunables = user_tunables || std::getenv(v) != nullptr;
  if (!user_tunables) CHECK(tuned.rfind("glibc: ", 0) == 0);
#endif
  // Large blocks still allocate, fill and free normally under the settings.
  std::vector<std::vector<float>> blocks;
  for (int i = 0; i < 4; ++i) blocks.emplace_back(size_t(4) << 20, static_cast<float>(i));
  CHECK(blocks[3][(size_t(4) << 20) - 1] == 3.0f);
  blocks.clear();

  ::setenv("QBENCH_MALLOC", "system", 1);
  CHECK(qbench::tune_allocator() == "system (QBENCH_MALLOC=system)");
  CHECK(qbench::allocator_setting() == "system (QBENCH_MALLOC=system)");
  ::unsetenv("QBENCH_MALLOC");
}
