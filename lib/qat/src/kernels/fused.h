// Chunked drivers for the fused elementwise quantizer kernels (src/kernels/*.h): they run a raw
// kernel over a contiguous float tensor in chunks of kFusedGrain elements, in parallel on
// LibTorch's threads (chunks.cpp), so every fused autograd function (LSQ, LSQ+, PACT, DoReFa,
// APoT, QIL, DSQ) shares one way of splitting work and one order of summing: a chunk is always
// kFusedGrain elements (never "one per thread"), and per-chunk sums are added in chunk order, so
// results are the same at any thread count.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "chunks.h"

namespace qbench::qat::fused {

/// Elements per parallel chunk.
constexpr int64_t kFusedGrain = 32768;

inline int64_t n_chunks(int64_t n) { return (n + kFusedGrain - 1) / kFusedGrain; }

/// out = kernel(x) chunk by chunk: kernel(const float* in, float* out, int64_t n).
template <typename Kernel>
at::Tensor map(const at::Tensor& xc, Kernel&& kernel) {
  auto out = at::empty_like(xc);
  const float* px = xc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int64_t n = xc.numel();
  for_each_chunk(n_chunks(n), [&](int64_t c) {
    const int64_t b = c * kFusedGrain;
    kernel(px + b, po + b, std::min(n, b + kFusedGrain) - b);
  });
  return out;
}

/// The input gradient and a reduced quantity (Sum: double or a struct with operator+=) of a
/// backward kernel: Sum kernel(const float* x, const float* dy, float* dx, int64_t n).
template <typename Sum, typename Kernel>
std::pair<at::Tensor, Sum> grad(const at::Tensor& xc, const at::Tensor& dy, Kernel&& kernel) {
  auto gy = dy.contiguous();
  auto gx = at::empty_like(xc);
  const float* px = xc.data_ptr<float>();
  const float* pg = gy.data_ptr<float>();
  float* pgx = gx.data_ptr<float>();
  const int64_t n = xc.numel();
  std::vector<Sum> part(static_cast<size_t>(n_chunks(n)), Sum{});
  for_each_chunk(n_chunks(n), [&](int64_t c) {
    const int64_t b = c * kFusedGrain;
    part[static_cast<size_t>(c)] = kernel(px + b, pg + b, pgx + b, std::min(n, b + kFusedGrain) - b);
  });
  Sum total{};
  for (const Sum& p : part) total += p;
  return {gx, total};
}

}  // namespace qbench::qat::fused
