// Chunked drivers for the fused elementwise quantizer kernels (src/kernels/*.h): they run a raw
// kernel over a contiguous float tensor in parallel chunks of kFusedGrain elements, so every
// fused autograd function (LSQ, LSQ+, PACT, DoReFa, APoT) shares one way of splitting work and
// one order of summing. Per-chunk sums are combined in chunk order, whatever the thread count.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <utility>

namespace qbench::qat::fused {

/// Elements per parallel chunk.
constexpr int64_t kFusedGrain = 32768;

/// out = kernel(x) chunk by chunk: kernel(const float* in, float* out, int64_t n).
template <typename Kernel>
at::Tensor map(const at::Tensor& xc, Kernel&& kernel) {
  auto out = at::empty_like(xc);
  const float* px = xc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  at::parallel_for(0, xc.numel(), kFusedGrain, [&](int64_t b, int64_t e) { kernel(px + b, po + b, e - b); });
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
  Sum total = at::parallel_reduce(
      0, xc.numel(), kFusedGrain, Sum{},
      [&](int64_t b, int64_t e, Sum acc) {
        acc += kernel(px + b, pg + b, pgx + b, e - b);
        return acc;
      },
      [](Sum a, const Sum& b) {
        a += b;
        return a;
      });
  return {gx, total};
}

}  // namespace qbench::qat::fused
