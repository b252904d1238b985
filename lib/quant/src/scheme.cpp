#include "qbench/quant/scheme.h"

#include <sstream>

#include "qbench/common/errors.h"

namespace qbench::quant {

QRange integer_range(int bits, bool is_signed, bool narrow_range) {
  if (bits < 2 || bits > 16) throw Error("integer_range: bits must be 2..16, got " + std::to_string(bits));
  if (is_signed) {
    int64_t hi = (int64_t(1) << (bits - 1)) - 1;
    return {narrow_range ? -hi : -hi - 1, hi};
  }
  return {0, (int64_t(1) << bits) - 1};
}

std::string QuantScheme::describe() const {
  std::ostringstream os;
  os << bits << "-bit " << (granularity == Granularity::PerChannel ? "per-channel" : "per-tensor") << " "
     << (symmetric ? "sym" : "asym") << " "
     << (signedness == Signedness::Signed ? "signed" : signedness == Signedness::Unsigned ? "unsigned" : "auto-sign")
     << (narrow_range ? " narrow" : "") << (pot_scale ? " pot" : "");
  return os.str();
}

}  // namespace qbench::quant
