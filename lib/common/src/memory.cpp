#include "qbench/common/memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

extern char** environ;

namespace qbench {

namespace {
std::string& setting() {
  static std::string s;
  return s;
}

bool user_set_malloc_tunables() {
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "MALLOC_", 7) == 0 || std::strncmp(*e, "GLIBC_TUNABLES=", 15) == 0) return true;
  return false;
}
}  // namespace

std::string tune_allocator() {
  const char* choice = std::getenv("QBENCH_MALLOC");
  if (choice && std::strcmp(choice, "system") == 0) return setting() = "system (QBENCH_MALLOC=system)";
  if (user_set_malloc_tunables()) return setting() = "system (MALLOC_*/GLIBC_TUNABLES set by the user)";
#if defined(__GLIBC__)
  // Blocks up to 32 MiB (glibc's ceiling for this knob) come from the heap rather than mmap;
  // free space at the heap top is trimmed only beyond 2 GiB; each heap growth takes 64 MiB more
  // than it needs. Setting the threshold also stops glibc's dynamic adjustment of it.
  const bool ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 0x7fffffff) == 1 &&
                  mallopt(M_TOP_PAD, 64 << 20) == 1;
  return setting() = ok ? "glibc: mmap_threshold=32MiB trim_threshold=2GiB top_pad=64MiB" : "system (mallopt refused)";
#else
  return setting() = "system (not glibc)";
#endif
}

const std::string& allocator_setting() { return setting(); }

}  // namespace qbench
