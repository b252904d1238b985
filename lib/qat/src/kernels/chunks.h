// The one parallel driver of the fused QAT kernels (fused.h): runs a body per chunk on LibTorch's
// intra-op threads. It lives in its own translation unit because at::parallel_for is inline in
// ATen's headers and runs in parallel only where _OPENMP is defined: this file is compiled with
// OpenMP (lib/qat/CMakeLists.txt), the methods that call it are not (they share the torch PCH).
#pragma once

#include <cstdint>
#include <functional>

namespace qbench::qat::fused {

/// body(c) for every chunk c in [0, chunks), in parallel (inline when there is one chunk).
void for_each_chunk(int64_t chunks, const std::function<void(int64_t)>& body);

}  // namespace qbench::qat::fused
