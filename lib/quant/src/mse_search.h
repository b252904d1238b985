// The MSE observer's search (MseObserver::compute) as one pass over the data per row and
// candidate range, instead of five ATen ops per candidate, each writing a tensor of the data's size.
#pragma once

#include <cstdint>

namespace qbench::quant::detail {

/// For row r (n floats at rows + r * n) and candidate i (scale[i * nrows + r], integer zero point
/// zp[i * nrows + r], codes in [qmin, qmax]): err[i * nrows + r] = mean over the row of
/// |fq(x) - x|^p, fq as ATen's fake_quantize_per_{tensor,channel}_affine computes it on the CPU
/// ((clamp(z + nearbyint(x * (1 / s)), qmin, qmax) - z) * s). The deviation is |d|^p in float
/// (d * d for p = 2, |d| for p = 1, exp2(p log2 |d|) otherwise, float polynomials within 2e-7 of
/// std::pow), summed in double in a fixed order: the same bits for any thread count. Each
/// (row, candidate) pair is one task of at::parallel_for.
void mse_candidate_errors(const float* rows, int64_t nrows, int64_t n, const float* scale, const float* zp,
                          int64_t ncand, float qmin, float qmax, double p, double* err);

}  // namespace qbench::quant::detail
