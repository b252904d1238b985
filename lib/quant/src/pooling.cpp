#include "qbench/quant/pooling.h"

#include "qbench/common/errors.h"

namespace qbench::quant {

int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  if (s <= 0 || k <= 0 || d <= 0) throw Error("pooled_size: kernel, stride and dilation must be positive");
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

bool PoolingModes::ceil_mode(bool declared, const std::vector<int64_t>& in, const std::vector<int64_t>& k,
                             const std::vector<int64_t>& s, const std::vector<int64_t>& p,
                             const std::vector<int64_t>& d) const {
  if (!flip_ceil_mode) return declared;
  bool changed = false;
  for (std::size_t i = 0; i < in.size() && i < k.size(); ++i) {
    const int64_t si = i < s.size() ? s[i] : k[i], pi = i < p.size() ? p[i] : 0, di = i < d.size() ? d[i] : 1;
    changed = changed || pooled_size(in[i], k[i], si, pi, di, true) != pooled_size(in[i], k[i], si, pi, di, false);
  }
  if (changed) ++changes_;
  return !declared;
}

bool PoolingModes::count_include_pad(bool declared, bool padded) const {
  if (!flip_count_include_pad) return declared;
  if (padded) ++changes_;
  return !declared;
}

}  // namespace qbench::quant
