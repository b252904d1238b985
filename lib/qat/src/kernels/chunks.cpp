#include "chunks.h"

#include <ATen/Parallel.h>

namespace qbench::qat::fused {

void for_each_chunk(int64_t chunks, const std::function<void(int64_t)>& body) {
  if (chunks <= 0) return;
  if (chunks == 1) {
    body(0);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) body(c);
  });
}

}  // namespace qbench::qat::fused
