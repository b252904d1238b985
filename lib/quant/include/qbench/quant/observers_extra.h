#pragma once
// The range observers beyond running min/max (reference: docs/algorithms.md,
// "Observers"). Each works per tensor or per channel along scheme.ch_axis; all but lsq-init,
// lsq+-init and pot turn a clip range into scale/zero point through qparams_from_minmax, so they
// honour scheme.symmetric, signedness and narrow_range exactly like minmax. Every update() throws
// qbench::Error on NaN/Inf input; compute() throws when nothing was observed.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "qbench/quant/observer.h"

namespace qbench::quant {

namespace detail {
/// A bounded, deterministic sample of everything observed, as rows (one per channel, or one for
/// the whole tensor). Past `cap` elements per row, the kept sample and each new batch are thinned
/// by evenly spaced picks in proportion to how many elements each stands for, so every batch keeps
/// its share.
struct ObservedSample {
  at::Tensor rows;   ///< float32 [R, K]
  int64_t seen = 0;  ///< elements per row observed so far
  void add(const at::Tensor& batch_rows, int64_t cap);
};
}  // namespace detail

/// Min/max as an exponential moving average over batches (ratio 0.9): the first batch sets them,
/// later ones move them by (1 - ratio) (MQBench EMAMinMaxObserver).
class EmaMinMaxObserver : public Observer {
 public:
  explicit EmaMinMaxObserver(QuantScheme scheme, double ratio = 0.9);
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "ema-minmax"; }
  const at::Tensor& min_val() const { return min_; }
  const at::Tensor& max_val() const { return max_; }

 private:
  double ratio_;
  at::Tensor min_, max_;
};

/// Shrinks the observed [min, max] by 1% steps (95 candidates per tensor, 80 per channel, as
/// MQBench's MSEObserver) and keeps, per tensor or channel, the range whose fake-quantized Lp error
/// mean(|fq(x) - x|^p) on the kept sample is lowest (ties: the wider range).
class MseObserver : public Observer {
 public:
  explicit MseObserver(QuantScheme scheme, double p = 2.0, int64_t max_samples = int64_t(1) << 20);
  void update(const at::Tensor& x) override;
  /// On the CPU: one fused pass per row and candidate (src/mse_search.h). It picks the same
  /// candidate as compute_composed() except where two candidates' errors agree to within the
  /// float rounding of the power (|d|^p for p other than 1 and 2) and the summation order.
  QParams compute() const override;
  /// The search as tensor ops (fake_quantize, difference, power, mean per candidate): the
  /// reference of the tests, and what compute() runs off the CPU.
  QParams compute_composed() const;
  std::string name() const override { return "mse"; }
  /// Candidates tried: range * (1 - 0.01 i), i = 0 .. candidates() - 1.
  int64_t candidates() const;
  const at::Tensor& sample() const { return sample_.rows; }

 private:
  /// Candidate i: the range [min, max] * (1 - 0.01 i) and its qparams on the sample's rows (the
  /// per-channel axis of the rows is 0).
  struct Candidate {
    at::Tensor lo, hi;
    QParams qp;
  };
  Candidate candidate(int64_t i) const;

  double p_;
  int64_t max_samples_;
  at::Tensor min_, max_;
  detail::ObservedSample sample_;
};

/// Per batch: a 2048-bin histogram of |x| over [0, max|x|], the clip value c where the cumulative
/// count reaches quantile * numel (linear inside the bin), the range [max(min, -c), min(max, c)];
/// that range is averaged across batches with an EMA of ratio 0.9 (MQBench EMAQuantileObserver).
class PercentileObserver : public Observer {
 public:
  explicit PercentileObserver(QuantScheme scheme, double quantile = 0.99999, int64_t bins = 2048,
                              double ratio = 0.9);
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "percentile"; }
  const at::Tensor& min_val() const { return min_; }
  const at::Tensor& max_val() const { return max_; }

 private:
  double quantile_;
  int64_t bins_;
  double ratio_;
  at::Tensor min_, max_;
};

/// [mu - k sigma, mu + k sigma] (k = 2.6, population sigma over everything observed), clipped to
/// the observed [min, max].
class ClipStdObserver : public Observer {
 public:
  explicit ClipStdObserver(QuantScheme scheme, double k = 2.6);
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "clip-std"; }

 private:
  double k_;
  at::Tensor n_, mean_, m2_;  ///< float64 per row (Chan et al. parallel mean / variance)
  at::Tensor min_, max_;
};

/// Entropy (KL) calibration as TensorRT / NVIDIA pytorch-quantization: a 2048-bin histogram of |x|
/// over [0, R], where R is the first batch's max|x| and doubles (merging bin pairs, which is exact)
/// whenever a later batch exceeds it; compute() picks the threshold with kl_threshold_bin on that
/// histogram (its zero bin replaced by bin 1's count first, so a ReLU spike at 0 does not steer
/// the choice) with 2^(b-1) levels for a signed range, 2^b unsigned, and clips the observed
/// [min, max] to [-t, t].
class KlObserver : public Observer {
 public:
  explicit KlObserver(QuantScheme scheme, int64_t bins = 2048, int64_t start_bin = 128);
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "kl"; }
  /// Threshold per row (what compute() clips to).
  std::vector<double> thresholds() const;
  const std::vector<std::vector<double>>& histograms() const { return hist_; }
  const std::vector<double>& hist_ranges() const { return range_; }

 private:
  int64_t bins_, start_bin_;
  std::vector<std::vector<double>> hist_;  ///< per row
  std::vector<double> range_;              ///< per row: the histogram covers [0, range]
  at::Tensor min_, max_;
};

/// The entropy-calibration search on a histogram `hist` (bin j counts |x| in [j w, (j+1) w)).
/// For each i = start_bin .. hist.size() (start clamped to the size): P = hist[0..i) with the
/// outliers sum(hist[i..)) added to bin i-1; Q = hist[0..i) merged into `levels` groups (bin j
/// joins group floor(j * levels / i)), each group's total spread evenly over its non-empty bins
/// (empty bins stay 0); both normalised; KL(P||Q) = sum_{p>0} p ln(p / q) (infinite where q = 0
/// < p). Returns the i with the lowest divergence (the largest such i on ties): the threshold is
/// i * w. Throws qbench::Error when hist is empty or all zero, or levels < 1.
int64_t kl_threshold_bin(const std::vector<double>& hist, int64_t levels, int64_t start_bin);
/// The divergence kl_threshold_bin minimises, for one i (exposed for tests and diagnostics).
double kl_divergence_at(const std::vector<double>& hist, int64_t levels, int64_t i);

/// LSQ initialisation (Esser et al. 2019): s = 2 mean|x| / sqrt(Qp) over everything observed,
/// Qp = the range's qmax; zero point 0.
class LsqInitObserver : public Observer {
 public:
  using Observer::Observer;
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "lsq-init"; }

 private:
  at::Tensor n_, abs_sum_;  ///< float64 per row
  at::Tensor min_;
};

/// LSQ+ initialisation (Bhalgat et al. 2020): s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1),
/// zero point 0.
class LsqPlusInitObserver : public Observer {
 public:
  using Observer::Observer;
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "lsq+-init"; }

 private:
  at::Tensor n_, mean_, m2_;
  at::Tensor min_;
};

/// Power-of-two scale (Vitis): tries s = 2^e for e = -max_frac_bits .. e_max, where e_max is the
/// smallest exponent whose range covers max|x| (larger ones only add rounding error), and keeps the
/// lowest L2 error on the kept sample (ties: the larger scale); zero point 0. 12 fractional bits
/// (hardware-profiles.md) floor the scale at 2^-12.
class PotObserver : public Observer {
 public:
  explicit PotObserver(QuantScheme scheme, int max_frac_bits = 12, int64_t max_samples = int64_t(1) << 20);
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "pot"; }
  int max_frac_bits() const { return max_frac_bits_; }

 private:
  int max_frac_bits_;
  int64_t max_samples_;
  at::Tensor min_, max_;
  detail::ObservedSample sample_;
};

}  // namespace qbench::quant
