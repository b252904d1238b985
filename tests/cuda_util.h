#pragma once
// The skip rule of every CUDA-only Catch2 check.
#include <catch2/catch.hpp>
#include <torch/cuda.h>

#include <cstdlib>

namespace qbench::test {
// Skips without a GPU, except where QBENCH_EXPECT_CUDA is set (the GPU machine's runs), so a
// build that cannot see CUDA there fails instead of passing by skipping.
inline bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  if (std::getenv("QBENCH_EXPECT_CUDA")) FAIL("QBENCH_EXPECT_CUDA is set but LibTorch sees no CUDA device");
  WARN("no CUDA device visible to LibTorch: CUDA check skipped");
  return false;
}
}  // namespace qbench::test
