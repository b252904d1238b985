#pragma once
// Timing helpers shared by the benchmarks: a monotonic clock in milliseconds, the time of one call
// and the median of a set of times. Torch-free, so any bench can include it.
#include <algorithm>
#include <chrono>
#include <vector>

namespace qbench::bench {

/// Milliseconds on the steady clock (only differences mean anything).
inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Milliseconds one call of f takes; f returns a tensor whose data is touched so the work is done.
template <typename F>
double call_ms(F&& f) {
  const double t0 = now_ms();
  auto y = f();
  (void)y.data_ptr();
  return now_ms() - t0;
}

/// The median; with an even count, the mean of the two middle values.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace qbench::bench
