#pragma once
// Reduced-precision storage on plain float arrays, for emulating FP16 / BF16 inference at layer
// boundaries (float32 arithmetic in between). Both round to nearest, ties to even, as IEEE 754's
// default mode and every hardware conversion instruction do.
#include <cstddef>
#include <cstdint>

namespace qbench::sysnoise {

/// IEEE 754 binary16 bits of `value`, rounded to nearest even: subnormal halves (below 2^-14) are
/// kept (down to 2^-24; half of that rounds to zero), magnitudes from 65520 up become infinity,
/// NaN stays a (quiet) NaN with its sign, signed zeros keep their sign.
uint16_t float_to_half_bits(float value);
/// The float a binary16 bit pattern stands for (exact).
float half_bits_to_float(uint16_t bits);
/// `value` rounded to the nearest binary16, as a float.
float round_to_half(float value);
/// Every element of data[0..n) rounded to binary16, in place.
void round_to_half(float* data, std::size_t n);

/// bfloat16 (the top 16 bits of a float) of `value`, rounded to nearest even; overflow rounds to
/// infinity, NaN stays a quiet NaN. Float subnormals round like any other value (no flush).
uint16_t float_to_bf16_bits(float value);
float bf16_bits_to_float(uint16_t bits);
float round_to_bf16(float value);
void round_to_bf16(float* data, std::size_t n);

}  // namespace qbench::sysnoise
