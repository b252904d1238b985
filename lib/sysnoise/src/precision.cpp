#include "qbench/sysnoise/precision.h"

#include <cstring>

namespace qbench::sysnoise {

namespace {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

uint16_t float_to_half_bits(float value) {
  const uint32_t u = bits_of(value);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t mag = u & 0x7fffffffu;
  if (mag >= 0x7f800000u) return sign | (mag > 0x7f800000u ? 0x7e00u | ((mag >> 13) & 0x3ffu) : 0x7c00u);
  // 65520 = 65504 (the largest half) plus half an ulp: from there up, round to nearest even
  // gives 2^16, which is beyond binary16's range.
  if (mag >= 0x477ff000u) return sign | 0x7c00u;
  if (mag < 0x38800000u) {  // below 2^-14: the result is a subnormal half (or zero)
    // The half's unit in the last place is 2^-24: scale to units and round to nearest even, with
    // the integer significand shifted by the exponent (the shift is at least 14 here).
    const int exponent = static_cast<int>(mag >> 23);  // biased; 0 for float subnormals
    if (exponent < 102) return sign;                    // below 2^-25: rounds to zero
    const uint32_t significand = (mag & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exponent;  // value = significand * 2^(exponent - 150) = units * 2^-24
    const uint32_t units = significand >> shift;
    const uint32_t rest = significand & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    const uint32_t rounded = units + ((rest > halfway || (rest == halfway && (units & 1u))) ? 1u : 0u);
    return sign | static_cast<uint16_t>(rounded);  // 0x400 (the smallest normal) when it carries
  }
  // Normal: rebias the exponent (127 -> 15) and round the 23-bit significand to 10 bits; a carry
  // out of the significand correctly bumps the exponent.
  const uint32_t rebased = mag - (112u << 23);
  const uint32_t lsb = (rebased >> 13) & 1u;
  return sign | static_cast<uint16_t>((rebased + 0xfffu + lsb) >> 13);
}

float half_bits_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return float_of(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
    return float_of(sign | bits_of(magnitude));
  }
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float round_to_half(float value) { return half_bits_to_float(float_to_half_bits(value)); }

void round_to_half(float* data, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) data[i] = round_to_half(data[i]);
}

uint16_t float_to_bf16_bits(float value) {
  const uint32_t u = bits_of(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

float bf16_bits_to_float(uint16_t bits) { return float_of(static_cast<uint32_t>(bits) << 16); }

float round_to_bf16(float value) { return bf16_bits_to_float(float_to_bf16_bits(value)); }

void round_to_bf16(float* data, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) data[i] = round_to_bf16(data[i]);
}

}  // namespace qbench::sysnoise
