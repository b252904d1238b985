// What every fused QAT kernel shares: how they vectorise, and round-half-to-even without libm.
//
// Vectorisation. The kernel files (src/kernels/*.cpp) are compiled with -fno-trapping-math
// (lib/qat/CMakeLists.txt): without it GCC will not if-convert the backward's selects (it may not
// evaluate both arms of a float ?: when an arm could raise an FP exception), and the loop stays
// scalar. The flag only lets the compiler assume no FP trap is enabled, which is true in LibTorch;
// every value is the same as without it. target_clones adds AVX-512 and AVX2 copies beside the
// baseline x86-64 one, chosen at load time (glibc ifunc), so one binary runs on any x86-64 node
// and uses wide units where they exist (AVX-512's mask registers make the many selects of DSQ's
// loops cheap: they ran 2.3x faster than in the AVX2 copy). All copies do the same IEEE
// operations in the same order (no -ffast-math, and -ffp-contract=off given explicitly: GCC's C++
// default is to contract a * b + c into an FMA wherever the target has one, which AVX-512 does),
// so their results are bit-identical. Torch-free: these files skip the precompiled header.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QBENCH_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QBENCH_CLONES
#endif

namespace qbench::qat::kernels {

// Round half to even without a libm call: adding and subtracting 1.5 * 2^23 leaves the nearest
// integer under the default rounding mode (ties to even), exactly as std::nearbyint, for
// |v| < 2^22 (v is clamped to the integer range, at most 2^16, first). Valid because we never
// build with -ffast-math.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

}  // namespace qbench::qat::kernels
