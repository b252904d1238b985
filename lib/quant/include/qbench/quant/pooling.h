#pragma once
// Pooling attributes a deployment may read differently from training (issue 20, SysNoise's
// model-inference modes): ceil_mode and count_include_pad. Every pooling call of the zoo and of
// the ONNX executor asks its model's PoolingModes which value to run with, so a flip reaches any
// architecture, and each call records whether the flip changed its result: a flip that changes
// nothing for a network is refused at validation, not measured as a zero.
#include <cstdint>
#include <vector>

namespace qbench::quant {

/// One spatial dimension's output size under torch's pooling rule: floor (or ceil) of
/// (in + 2p - d(k-1) - 1) / s, plus one; in ceil mode a last window that would start in the right
/// padding is dropped.
int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode);

class PoolingModes {
 public:
  bool flip_ceil_mode = false;
  bool flip_count_include_pad = false;

  bool any() const { return flip_ceil_mode || flip_count_include_pad; }
  /// The ceil_mode a pooling layer declared as `declared` runs with, for an input whose spatial
  /// sizes are `in` (kernel, stride, symmetric padding and dilation per dimension; padding and
  /// dilation may be empty for zeros and ones). Records a change when the flip changes an output size.
  bool ceil_mode(bool declared, const std::vector<int64_t>& in, const std::vector<int64_t>& k,
                 const std::vector<int64_t>& s, const std::vector<int64_t>& p = {},
                 const std::vector<int64_t>& d = {}) const;
  /// The count_include_pad an average pool declared as `declared` runs with; `padded` says whether
  /// it pads at all (without padding the divisor cannot change). Records a change when it does.
  bool count_include_pad(bool declared, bool padded) const;
  /// Pooling calls whose result a flip changed since the last reset.
  int64_t changes() const { return changes_; }
  void reset_changes() { changes_ = 0; }

 private:
  mutable int64_t changes_ = 0;
};

}  // namespace qbench::quant
