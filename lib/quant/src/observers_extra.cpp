// The range observers beyond running min/max; the rules are in
// docs/algorithms.md ("Observers") and the class comments in observers_extra.h.
//
// Every observer reshapes its input to rows, one per channel along scheme.ch_axis (per-channel)
// or a single row (per-tensor), and keeps its statistics per row; compute() turns the rows' clip
// ranges into QParams of the scheme's shape (0-d per tensor, 1-d per channel).
#include "qbench/quant/observers_extra.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "qbench/common/errors.h"
#include "mse_search.h"

namespace qbench::quant {
namespace {

bool per_channel(const QuantScheme& s) { return s.granularity == Granularity::PerChannel; }
int64_t out_axis(const QuantScheme& s) { return per_channel(s) ? s.ch_axis : -1; }

/// x as float32 rows [R, N]: one per channel along ch_axis, or one for the whole tensor.
at::Tensor rows_of(const at::Tensor& x, const QuantScheme& s, const std::string& who) {
  auto f = x.detach().to(at::kFloat);
  if (!per_channel(s)) return f.reshape({1, -1}).contiguous();
  if (s.ch_axis < 0 || s.ch_axis >= f.dim())
    throw Error(who + " observer: channel axis " + std::to_string(s.ch_axis) + " is outside a tensor of " +
                std::to_string(f.dim()) + " dimensions");
  return f.transpose(0, s.ch_axis).reshape({f.size(s.ch_axis), -1}).contiguous();
}

/// Per-row values [R] in the shape QParams use: 0-d per tensor, 1-d per channel.
at::Tensor shaped(const at::Tensor& per_row, const QuantScheme& s) {
  return per_channel(s) ? per_row.reshape({-1}) : per_row.reshape({});
}

/// Fails when a later batch has a different number of channels than the first.
void check_rows(const at::Tensor& state, const at::Tensor& rows, const std::string& who) {
  if (state.defined() && state.numel() != rows.size(0))
    throw Error(who + " observer: a batch with " + std::to_string(rows.size(0)) + " channels after " +
                std::to_string(state.numel()) + " channels");
}

void require_observed(int64_t count, const std::string& who) {
  if (count == 0) throw Error(who + " observer: nothing observed (calibration did not reach this layer)");
}

/// QParams for a clip range, through the same path as minmax (symmetric / signedness / narrow).
QParams from_range(const at::Tensor& lo_rows, const at::Tensor& hi_rows, const QuantScheme& s) {
  return qparams_from_minmax(shaped(lo_rows.to(at::kFloat), s), shaped(hi_rows.to(at::kFloat), s), s, out_axis(s));
}

/// QParams with a given scale per row and zero point 0 (lsq-init, lsq+-init, pot). The integer
/// range is resolved against the observed minimum, as qparams_from_minmax does.
QParams from_scale(const at::Tensor& scale_rows, const at::Tensor& min_rows, const QuantScheme& s) {
  QParams qp;
  qp.range = resolve_range(s, min_rows.min().item<double>() >= 0.0);
  qp.ch_axis = out_axis(s);
  qp.scale = shaped(at::clamp_min(scale_rows.to(at::kFloat), std::numeric_limits<float>::epsilon()), s).contiguous();
  qp.zero_point = at::zeros_like(qp.scale, at::kInt).contiguous();
  return qp;
}

/// Running (count, mean, M2) per row in float64, merged batch by batch (Chan et al.), so the
/// variance of many batches does not suffer the cancellation of sum(x^2) - n mean^2.
void merge_moments(at::Tensor& n, at::Tensor& mean, at::Tensor& m2, const at::Tensor& rows) {
  auto r = rows.to(at::kDouble);
  const double nb = static_cast<double>(r.size(1));
  auto mean_b = r.mean(1);
  auto m2_b = (r - mean_b.unsqueeze(1)).pow(2).sum(1);
  if (!n.defined()) {
    n = at::full_like(mean_b, nb);
    mean = mean_b;
    m2 = m2_b;
    return;
  }
  auto total = n + nb;
  auto delta = mean_b - mean;
  mean = mean + delta * (nb / total);
  m2 = m2 + m2_b + delta.pow(2) * (n * nb / total);
  n = total;
}

void merge_minmax(at::Tensor& mn, at::Tensor& mx, const at::Tensor& rows) {
  auto bmin = std::get<0>(rows.min(1)), bmax = std::get<0>(rows.max(1));
  if (!mn.defined()) {
    mn = bmin;
    mx = bmax;
  } else {
    mn = at::minimum(mn, bmin);
    mx = at::maximum(mx, bmax);
  }
}

/// Evenly spaced picks of k columns (all of them when k >= the width).
at::Tensor thin(const at::Tensor& rows, int64_t k) {
  const int64_t n = rows.size(1);
  if (k >= n) return rows;
  if (k <= 0) return rows.narrow(1, 0, 0);
  auto idx = at::linspace(0, static_cast<double>(n - 1), k, at::kDouble).round().to(at::kLong);
  return rows.index_select(1, idx.to(rows.device()));
}

}  // namespace

namespace detail {

void ObservedSample::add(const at::Tensor& batch_rows, int64_t cap) {
  const int64_t n = batch_rows.size(1);
  if (!rows.defined()) {
    rows = thin(batch_rows, cap).contiguous();
    seen = n;
    return;
  }
  if (rows.size(0) != batch_rows.size(0))
    throw Error("observer: a batch with " + std::to_string(batch_rows.size(0)) + " channels after " +
                std::to_string(rows.size(0)) + " channels");
  const int64_t kept = rows.size(1);
  if (kept == seen && kept + n <= cap) {
    rows = at::cat({rows, batch_rows}, 1).contiguous();
  } else {
    // Each part keeps columns in proportion to the elements it stands for.
    const double total = static_cast<double>(seen + n);
    const int64_t k_old = std::min<int64_t>(kept, std::llround(cap * (seen / total)));
    const int64_t k_new = std::min<int64_t>(n, std::llround(cap * (n / total)));
    rows = at::cat({thin(rows, k_old), thin(batch_rows, k_new)}, 1).contiguous();
  }
  seen += n;
}

}  // namespace detail

// ---------------------------------------------------------------- ema-minmax

EmaMinMaxObserver::EmaMinMaxObserver(QuantScheme scheme, double ratio) : Observer(scheme), ratio_(ratio) {
  if (!(ratio >= 0.0 && ratio < 1.0)) throw Error("ema-minmax observer: ratio must be in [0, 1)");
}

void EmaMinMaxObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "ema-minmax observer");
  auto rows = rows_of(x, scheme_, "ema-minmax");
  check_rows(min_, rows, "ema-minmax");
  auto bmin = shaped(std::get<0>(rows.min(1)), scheme_), bmax = shaped(std::get<0>(rows.max(1)), scheme_);
  if (count_ == 0) {
    min_ = bmin;
    max_ = bmax;
  } else {
    min_ = min_ * ratio_ + bmin * (1.0 - ratio_);
    max_ = max_ * ratio_ + bmax * (1.0 - ratio_);
  }
  ++count_;
}

QParams EmaMinMaxObserver::compute() const {
  require_observed(count_, "ema-minmax");
  return qparams_from_minmax(min_, max_, scheme_, out_axis(scheme_));
}

// ---------------------------------------------------------------- mse

MseObserver::MseObserver(QuantScheme scheme, double p, int64_t max_samples)
    : Observer(scheme), p_(p), max_samples_(max_samples) {
  if (!(p > 0.0) || !std::isfinite(p)) throw Error("mse observer: p must be a positive number");
  if (max_samples < 1) throw Error("mse observer: max_samples must be >= 1");
}

int64_t MseObserver::candidates() const { return per_channel(scheme_) ? 80 : 95; }

void MseObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "mse observer");
  auto rows = rows_of(x, scheme_, "mse");
  check_rows(min_, rows, "mse");
  merge_minmax(min_, max_, rows);
  // The whole tensor's budget, shared by its channels (but at least 4096 values per channel).
  sample_.add(rows, std::max<int64_t>(max_samples_ / rows.size(0), 4096));
  ++count_;
}

MseObserver::Candidate MseObserver::candidate(int64_t i) const {
  const double f = 1.0 - 0.01 * static_cast<double>(i);
  auto lo = min_ * f, hi = max_ * f;
  // Candidates are fake-quantized row by row, so the per-channel axis of the rows is 0.
  auto qp = qparams_from_minmax(shaped(lo, scheme_), shaped(hi, scheme_), scheme_, per_channel(scheme_) ? 0 : -1);
  return {lo, hi, qp};
}

QParams MseObserver::compute() const {
  require_observed(count_, "mse");
  const at::Tensor& data = sample_.rows;
  if (!data.device().is_cpu() || data.scalar_type() != at::kFloat) return compute_composed();
  // Every candidate's range and qparams as the composed search makes them, then one pass per row
  // and candidate (detail::mse_candidate_errors) instead of five tensor ops per candidate.
  const int64_t R = data.size(0), N = data.size(1), K = candidates();
  std::vector<at::Tensor> los, his;
  std::vector<float> scales(static_cast<size_t>(K * R)), zps(static_cast<size_t>(K * R));
  QRange range{};
  for (int64_t i = 0; i < K; ++i) {
    auto [lo, hi, qp] = candidate(i);
    if (i == 0) range = qp.range;
    if (qp.range.qmin != range.qmin || qp.range.qmax != range.qmax)
      throw Error("mse observer: candidate ranges resolve to different integer ranges");
    auto sc = qp.scale.reshape({-1}).to(at::kFloat).contiguous();
    auto zp = qp.zero_point.reshape({-1}).to(at::kFloat).contiguous();
    std::copy(sc.data_ptr<float>(), sc.data_ptr<float>() + R, scales.begin() + i * R);
    std::copy(zp.data_ptr<float>(), zp.data_ptr<float>() + R, zps.begin() + i * R);
    los.push_back(lo.reshape({-1}));
    his.push_back(hi.reshape({-1}));
  }
  std::vector<double> err(static_cast<size_t>(K * R));
  const auto rows = data.contiguous();
  detail::mse_candidate_errors(rows.data_ptr<float>(), R, N, scales.data(), zps.data(), K,
                               static_cast<float>(range.qmin), static_cast<float>(range.qmax), p_, err.data());
  // Per row the first candidate with the strictly smallest error (ties keep the wider range).
  auto best = at::zeros({R}, at::kLong);
  auto* b = best.data_ptr<int64_t>();
  for (int64_t r = 0; r < R; ++r) {
    double e = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < K; ++i)
      if (err[static_cast<size_t>(i * R + r)] < e) {
        e = err[static_cast<size_t>(i * R + r)];
        b[r] = i;
      }
  }
  auto pick = [&](const std::vector<at::Tensor>& v) { return at::stack(v).gather(0, best.unsqueeze(0)).squeeze(0); };
  return from_range(pick(los), pick(his), scheme_);
}

QParams MseObserver::compute_composed() const {
  require_observed(count_, "mse");
  const at::Tensor& data = sample_.rows;
  auto best_err = at::full({data.size(0)}, std::numeric_limits<double>::infinity(), data.options().dtype(at::kDouble));
  at::Tensor best_lo = min_.clone(), best_hi = max_.clone();
  for (int64_t i = 0; i < candidates(); ++i) {
    auto [lo, hi, qp] = candidate(i);
    auto xq = fake_quantize(data, qp);
    auto diff = xq - data;
    auto dev = p_ == 2.0 ? diff * diff : p_ == 1.0 ? diff.abs() : diff.abs().pow(p_);
    auto err = at::mean(dev, {1}, /*keepdim=*/false, at::kDouble);
    auto better = err < best_err;  // strict: ties keep the wider range
    best_err = at::where(better, err, best_err);
    best_lo = at::where(better, lo, best_lo);
    best_hi = at::where(better, hi, best_hi);
  }
  return from_range(best_lo, best_hi, scheme_);
}

// ---------------------------------------------------------------- percentile

PercentileObserver::PercentileObserver(QuantScheme scheme, double quantile, int64_t bins, double ratio)
    : Observer(scheme), quantile_(quantile), bins_(bins), ratio_(ratio) {
  if (!(quantile > 0.0 && quantile <= 1.0)) throw Error("percentile observer: quantile must be in (0, 1]");
  if (bins < 1) throw Error("percentile observer: bins must be >= 1");
  if (!(ratio >= 0.0 && ratio < 1.0)) throw Error("percentile observer: ratio must be in [0, 1)");
}

void PercentileObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "percentile observer");
  auto rows = rows_of(x, scheme_, "percentile");
  check_rows(min_, rows, "percentile");
  const int64_t r_count = rows.size(0), n = rows.size(1);
  auto lo = at::empty({r_count}, at::kFloat), hi = at::empty({r_count}, at::kFloat);
  auto lo_a = lo.accessor<float, 1>();
  auto hi_a = hi.accessor<float, 1>();
  const double target = quantile_ * static_cast<double>(n);
  for (int64_t r = 0; r < r_count; ++r) {
    auto row = rows[r];
    const double mn = row.min().item<double>(), mx = row.max().item<double>();
    const double amax = std::max(-mn, mx);
    double clip = amax;
    if (amax > 0.0) {
      auto hist = at::histc(row.abs(), bins_, 0.0, amax).to(at::kCPU, at::kDouble).contiguous();
      const double* h = hist.data_ptr<double>();
      double cum = 0.0;
      for (int64_t b = 0; b < bins_; ++b) {
        if (h[b] > 0.0 && cum + h[b] >= target) {
          clip = (static_cast<double>(b) + (target - cum) / h[b]) * (amax / static_cast<double>(bins_));
          break;
        }
        cum += h[b];
      }
    }
    lo_a[r] = static_cast<float>(std::max(mn, -clip));
    hi_a[r] = static_cast<float>(std::min(mx, clip));
  }
  auto blo = shaped(lo.to(rows.device()), scheme_), bhi = shaped(hi.to(rows.device()), scheme_);
  if (count_ == 0) {
    min_ = blo;
    max_ = bhi;
  } else {
    min_ = min_ * ratio_ + blo * (1.0 - ratio_);
    max_ = max_ * ratio_ + bhi * (1.0 - ratio_);
  }
  ++count_;
}

QParams PercentileObserver::compute() const {
  require_observed(count_, "percentile");
  return qparams_from_minmax(min_, max_, scheme_, out_axis(scheme_));
}

// ---------------------------------------------------------------- clip-std

ClipStdObserver::ClipStdObserver(QuantScheme scheme, double k) : Observer(scheme), k_(k) {
  if (!(k > 0.0) || !std::isfinite(k)) throw Error("clip-std observer: k must be a positive number");
}

void ClipStdObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "clip-std observer");
  auto rows = rows_of(x, scheme_, "clip-std");
  check_rows(min_, rows, "clip-std");
  merge_moments(n_, mean_, m2_, rows);
  merge_minmax(min_, max_, rows);
  ++count_;
}

QParams ClipStdObserver::compute() const {
  require_observed(count_, "clip-std");
  auto sigma = (m2_ / n_).sqrt();
  auto lo = at::maximum(min_.to(at::kDouble), mean_ - k_ * sigma);
  auto hi = at::minimum(max_.to(at::kDouble), mean_ + k_ * sigma);
  return from_range(lo, hi, scheme_);
}

// ---------------------------------------------------------------- kl

namespace {

/// The divergence for every threshold i from prefix sums, O(levels) per i instead of O(i): within
/// a group Q is constant, so sum p ln(p/q) = sum p ln p - sum_g (mass of P in g) ln q_g, and
/// sum_{j<k} p ln p comes from a prefix of h ln h (P's normaliser is the total count for every i).
/// Equal to the bin-by-bin formula up to rounding (tests/numeric/test_observers.cpp checks it
/// against a direct loop).
class KlSearch {
 public:
  explicit KlSearch(const std::vector<double>& hist) : h_(hist), n_(static_cast<int64_t>(hist.size())) {
    sum_.assign(static_cast<std::size_t>(n_ + 1), 0.0);
    hlogh_.assign(static_cast<std::size_t>(n_ + 1), 0.0);
    nonzero_.assign(static_cast<std::size_t>(n_ + 1), 0);
    for (int64_t j = 0; j < n_; ++j) {
      const double v = h_[static_cast<std::size_t>(j)];
      if (!(v >= 0.0) || !std::isfinite(v)) throw Error("kl: histogram counts must be finite and >= 0");
      sum_[j + 1] = sum_[j] + v;
      hlogh_[j + 1] = hlogh_[j] + (v > 0.0 ? v * std::log(v) : 0.0);
      nonzero_[j + 1] = nonzero_[j] + (v != 0.0 ? 1 : 0);
    }
  }
  int64_t size() const { return n_; }
  double total() const { return sum_[n_]; }

  double divergence(int64_t levels, int64_t i) const {
    const double total = sum_[n_], kept = sum_[i], outliers = total - kept;
    const double last = h_[static_cast<std::size_t>(i - 1)];
    if (!(kept > 0.0)) return std::numeric_limits<double>::infinity();
    if (outliers > 0.0 && last == 0.0) return std::numeric_limits<double>::infinity();  // q = 0 < p
    // sum p ln p, with p_j = h_j / T and p_{i-1} = (h_{i-1} + outliers) / T.
    double plogp = (hlogh_[i - 1] - std::log(total) * sum_[i - 1]) / total;
    const double p_last = (last + outliers) / total;
    if (p_last > 0.0) plogp += p_last * std::log(p_last);
    // sum p ln q over the groups [ceil(g i / L), ceil((g + 1) i / L)) = {j : floor(j L / i) = g}.
    double plogq = 0.0;
    for (int64_t g = 0; g < levels; ++g) {
      const int64_t a = (g * i + levels - 1) / levels, b = ((g + 1) * i + levels - 1) / levels;
      if (a >= b) continue;
      const int64_t nz = nonzero_[b] - nonzero_[a];
      if (nz == 0) continue;
      const double mass = sum_[b] - sum_[a];
      const double q = mass / (static_cast<double>(nz) * kept);
      plogq += ((b == i ? mass + outliers : mass) / total) * std::log(q);
    }
    return std::max(0.0, plogp - plogq);  // >= 0 in exact arithmetic; no rounding below it
  }

 private:
  const std::vector<double>& h_;
  int64_t n_;
  std::vector<double> sum_, hlogh_;
  std::vector<int64_t> nonzero_;
};

}  // namespace

double kl_divergence_at(const std::vector<double>& hist, int64_t levels, int64_t i) {
  const int64_t n = static_cast<int64_t>(hist.size());
  if (i < 1 || i > n) throw Error("kl: threshold bin " + std::to_string(i) + " outside 1.." + std::to_string(n));
  if (levels < 1) throw Error("kl: levels must be >= 1");
  return KlSearch(hist).divergence(levels, i);
}

int64_t kl_threshold_bin(const std::vector<double>& hist, int64_t levels, int64_t start_bin) {
  if (hist.empty()) throw Error("kl: empty histogram");
  if (levels < 1) throw Error("kl: levels must be >= 1");
  KlSearch search(hist);
  const int64_t n = search.size();
  if (!(search.total() > 0.0)) throw Error("kl: histogram holds no counts");
  const int64_t start = std::clamp<int64_t>(start_bin, 1, n);
  int64_t best_i = n;
  double best = std::numeric_limits<double>::infinity();
  for (int64_t i = start; i <= n; ++i) {
    const double d = search.divergence(levels, i);
    if (d <= best) {  // <=: the largest threshold among equal divergences
      best = d;
      best_i = i;
    }
  }
  return best_i;
}

KlObserver::KlObserver(QuantScheme scheme, int64_t bins, int64_t start_bin)
    : Observer(scheme), bins_(bins), start_bin_(start_bin) {
  if (bins < 2 || bins % 2 != 0) throw Error("kl observer: bins must be an even number >= 2");
  if (start_bin < 1) throw Error("kl observer: start_bin must be >= 1");
}

void KlObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "kl observer");
  auto rows = rows_of(x, scheme_, "kl");
  check_rows(min_, rows, "kl");
  merge_minmax(min_, max_, rows);
  const int64_t r_count = rows.size(0), n = rows.size(1);
  if (hist_.empty()) {
    hist_.assign(static_cast<std::size_t>(r_count), std::vector<double>(static_cast<std::size_t>(bins_), 0.0));
    range_.assign(static_cast<std::size_t>(r_count), 0.0);
  }
  for (int64_t r = 0; r < r_count; ++r) {
    auto a = rows[r].abs();
    const double amax = a.max().item<double>();
    auto& h = hist_[static_cast<std::size_t>(r)];
    double& range = range_[static_cast<std::size_t>(r)];
    if (amax > range) {
      if (range == 0.0) {
        range = amax;  // zeros seen so far are already counted in bin 0
      } else {
        // Double the range by merging bin pairs (exact: old edges are new edges) until it covers.
        while (range < amax) {
          for (int64_t j = 0; j < bins_ / 2; ++j) h[j] = h[2 * j] + h[2 * j + 1];
          std::fill(h.begin() + bins_ / 2, h.end(), 0.0);
          range *= 2.0;
        }
      }
    }
    if (range == 0.0) {  // all zeros so far
      h[0] += static_cast<double>(n);
      continue;
    }
    auto counts = at::histc(a, bins_, 0.0, range).to(at::kCPU, at::kDouble).contiguous();
    const double* c = counts.data_ptr<double>();
    for (int64_t j = 0; j < bins_; ++j) h[j] += c[j];
  }
  ++count_;
}

std::vector<double> KlObserver::thresholds() const {
  require_observed(count_, "kl");
  const bool is_signed = resolve_range(scheme_, min_.min().item<double>() >= 0.0).qmin < 0;
  const int64_t levels = int64_t(1) << (is_signed ? scheme_.bits - 1 : scheme_.bits);
  std::vector<double> out;
  for (std::size_t r = 0; r < hist_.size(); ++r) {
    if (range_[r] == 0.0) {
      out.push_back(0.0);
      continue;
    }
    std::vector<double> h = hist_[r];
    h[0] = h[1];  // as pytorch-quantization: the spike of exact zeros (ReLU) would dominate P
    double total = 0.0;
    for (double v : h) total += v;
    if (!(total > 0.0)) {
      out.push_back(range_[r]);
      continue;
    }
    const int64_t i = kl_threshold_bin(h, levels, start_bin_);
    out.push_back(static_cast<double>(i) * range_[r] / static_cast<double>(bins_));
  }
  return out;
}

QParams KlObserver::compute() const {
  auto t_vec = thresholds();
  auto t = at::tensor(t_vec, at::kDouble).to(min_.device());
  auto lo = at::maximum(min_.to(at::kDouble), -t);
  auto hi = at::minimum(max_.to(at::kDouble), t);
  return from_range(lo, hi, scheme_);
}

// ---------------------------------------------------------------- lsq-init, lsq+-init

void LsqInitObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "lsq-init observer");
  auto rows = rows_of(x, scheme_, "lsq-init");
  check_rows(min_, rows, "lsq-init");
  auto s = rows.to(at::kDouble).abs().sum({1});
  auto nb = at::full_like(s, static_cast<double>(rows.size(1)));
  auto bmin = std::get<0>(rows.min(1));
  if (count_ == 0) {
    abs_sum_ = s;
    n_ = nb;
    min_ = bmin;
  } else {
    abs_sum_ = abs_sum_ + s;
    n_ = n_ + nb;
    min_ = at::minimum(min_, bmin);
  }
  ++count_;
}

QParams LsqInitObserver::compute() const {
  require_observed(count_, "lsq-init");
  const double qp = static_cast<double>(resolve_range(scheme_, min_.min().item<double>() >= 0.0).qmax);
  return from_scale(2.0 * (abs_sum_ / n_) / std::sqrt(qp), min_, scheme_);
}

void LsqPlusInitObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "lsq+-init observer");
  auto rows = rows_of(x, scheme_, "lsq+-init");
  check_rows(min_, rows, "lsq+-init");
  merge_moments(n_, mean_, m2_, rows);
  auto bmin = std::get<0>(rows.min(1));
  min_ = count_ == 0 ? bmin : at::minimum(min_, bmin);
  ++count_;
}

QParams LsqPlusInitObserver::compute() const {
  require_observed(count_, "lsq+-init");
  auto sigma = (m2_ / n_).sqrt();
  auto s = at::maximum((mean_ - 3.0 * sigma).abs(), (mean_ + 3.0 * sigma).abs()) /
           static_cast<double>(int64_t(1) << (scheme_.bits - 1));
  return from_scale(s, min_, scheme_);
}

// ---------------------------------------------------------------- pot

PotObserver::PotObserver(QuantScheme scheme, int max_frac_bits, int64_t max_samples)
    : Observer(scheme), max_frac_bits_(max_frac_bits), max_samples_(max_samples) {
  if (max_frac_bits < 0 || max_frac_bits > 126) throw Error("pot observer: max_frac_bits must be 0..126");
  if (max_samples < 1) throw Error("pot observer: max_samples must be >= 1");
}

void PotObserver::update(const at::Tensor& x) {
  if (x.numel() == 0) return;
  check_finite(x, "pot observer");
  auto rows = rows_of(x, scheme_, "pot");
  check_rows(min_, rows, "pot");
  merge_minmax(min_, max_, rows);
  sample_.add(rows, std::max<int64_t>(max_samples_ / rows.size(0), 4096));
  ++count_;
}

QParams PotObserver::compute() const {
  require_observed(count_, "pot");
  const QRange range = resolve_range(scheme_, min_.min().item<double>() >= 0.0);
  const double qpos = static_cast<double>(range.qmax), qneg = static_cast<double>(-range.qmin);
  const int64_t r_count = min_.numel();
  const int e_lo = -max_frac_bits_;
  // Per row, the smallest exponent whose integer range covers the observed values: beyond it
  // nothing clips and a coarser grid only rounds worse (the finer grid contains the coarser one).
  auto mn = min_.to(at::kCPU, at::kDouble).contiguous(), mx = max_.to(at::kCPU, at::kDouble).contiguous();
  std::vector<int> e_max(static_cast<std::size_t>(r_count));
  for (int64_t r = 0; r < r_count; ++r) {
    double need = std::max(mx.data_ptr<double>()[r], 0.0) / qpos;
    if (qneg > 0) need = std::max(need, std::max(-mn.data_ptr<double>()[r], 0.0) / qneg);
    int e = e_lo;
    if (need > std::ldexp(1.0, e_lo)) {
      e = static_cast<int>(std::ceil(std::log2(need)));
      while (std::ldexp(1.0, e) < need) ++e;
      while (e > e_lo && std::ldexp(1.0, e - 1) >= need) --e;
    }
    e_max[static_cast<std::size_t>(r)] = std::clamp(e, e_lo, 126);
  }
  const int e_top = *std::max_element(e_max.begin(), e_max.end());
  auto e_max_t = at::tensor(std::vector<int64_t>(e_max.begin(), e_max.end()), at::kLong).to(min_.device());
  const at::Tensor& data = sample_.rows;
  auto best_err = at::full({r_count}, std::numeric_limits<double>::infinity(), min_.options().dtype(at::kDouble));
  auto best_e = at::full({r_count}, e_lo, min_.options().dtype(at::kLong));
  for (int e = e_top; e >= e_lo; --e) {  // large to small, strict <: ties keep the larger scale
    auto xq = at::fake_quantize_per_tensor_affine(data, std::ldexp(1.0, e), 0, range.qmin, range.qmax);
    auto diff = xq - data;
    auto err = at::mean(diff * diff, {1}, /*keepdim=*/false, at::kDouble);
    auto better = (err < best_err).logical_and(e_max_t >= e);
    best_err = at::where(better, err, best_err);
    best_e = at::where(better, at::full_like(best_e, e), best_e);
  }
  auto scale = at::pow(2.0, best_e.to(at::kDouble));
  return from_scale(scale, min_, scheme_);
}

// ---------------------------------------------------------------- registry

void register_observers_extra(Registry<ObserverEntry>& r) {
  r.add("ema-minmax", {"exponential moving average of batch min / max (ratio 0.9)",
                       [](const QuantScheme& s) { return std::make_unique<EmaMinMaxObserver>(s); }});
  r.add("mse", {"range shrunk in 1% steps to the lowest L2 fake-quantization error (p = 2)",
                [](const QuantScheme& s) { return std::make_unique<MseObserver>(s); }});
  r.add("percentile", {"|x| histogram (2048 bins) clipped at quantile 0.99999, EMA 0.9",
                       [](const QuantScheme& s) { return std::make_unique<PercentileObserver>(s); }});
  r.add("clip-std", {"mean +- 2.6 standard deviations, within the observed min / max",
                     [](const QuantScheme& s) { return std::make_unique<ClipStdObserver>(s); }});
  r.add("kl", {"TensorRT entropy calibration: clip threshold minimising KL(P||Q) on a 2048-bin |x| histogram",
               [](const QuantScheme& s) { return std::make_unique<KlObserver>(s); }});
  r.add("lsq-init", {"LSQ initial step: s = 2 mean|x| / sqrt(Qp), zero point 0",
                     [](const QuantScheme& s) { return std::make_unique<LsqInitObserver>(s); }});
  r.add("lsq+-init", {"LSQ+ initial step: s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1), zero point 0",
                      [](const QuantScheme& s) { return std::make_unique<LsqPlusInitObserver>(s); }});
  r.add("pot", {"power-of-two scale with the lowest L2 error, at most 12 fractional bits (Vitis)",
                [](const QuantScheme& s) { return std::make_unique<PotObserver>(s); }});
}

}  // namespace qbench::quant
