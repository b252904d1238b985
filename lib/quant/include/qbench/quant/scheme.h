#pragma once
// Quantization schemes and the integer ranges they imply. Torch-free.
#include <cstdint>
#include <string>

namespace qbench::quant {

enum class Granularity { PerTensor, PerChannel };
enum class Signedness { Signed, Unsigned, Auto };  ///< Auto: unsigned iff the observed min >= 0

/// How one tensor (a weight or an activation) is quantized.
struct QuantScheme {
  int bits = 8;
  Granularity granularity = Granularity::PerTensor;
  int64_t ch_axis = 0;  ///< channel axis for PerChannel (0 = output channels of a conv weight)
  bool symmetric = true;
  Signedness signedness = Signedness::Signed;
  bool narrow_range = false;  ///< signed range [-(2^(b-1)-1), 2^(b-1)-1], e.g. [-127, 127]
  /// Scales restricted to powers of two (symmetric schemes only): a fixed quantizer rounds its
  /// observer's scale up to 2^ceil(log2 s), so nothing that was in range clips, and never below
  /// 2^-pot_max_frac_bits (Vitis caps the fractional bits at 12).
  bool pot_scale = false;
  int pot_max_frac_bits = 12;
  std::string describe() const;
};

struct QRange {
  int64_t qmin = 0, qmax = 0;
};

/// The integer range for `bits` (2..8, or 1 for binary signed {-1, 0}... not used yet).
/// Signed: [-2^(b-1), 2^(b-1)-1] (narrow: lower bound +1); unsigned: [0, 2^b-1].
QRange integer_range(int bits, bool is_signed, bool narrow_range);

}  // namespace qbench::quant
