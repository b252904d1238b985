#pragma once
// The quantizer tests' one way to spell a scheme: bits, signedness, optional per-channel.
#include "qbench/quant/scheme.h"

namespace qbench::test {
inline quant::QuantScheme test_scheme(int bits, quant::Signedness sg = quant::Signedness::Signed,
                                      bool per_channel = false) {
  quant::QuantScheme s;
  s.bits = bits;
  s.signedness = sg;
  s.granularity = per_channel ? quant::Granularity::PerChannel : quant::Granularity::PerTensor;
  return s;
}
}  // namespace qbench::test
