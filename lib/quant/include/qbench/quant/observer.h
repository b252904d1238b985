#pragma once
// Observers estimate the range of a tensor during calibration; a registry holds them by name.
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/quant/scheme.h"

namespace qbench::quant {

class Observer {
 public:
  explicit Observer(QuantScheme scheme) : scheme_(scheme) {}
  virtual ~Observer() = default;
  /// Folds a batch into the running statistics. Throws qbench::Error on NaN/Inf input.
  virtual void update(const at::Tensor& x) = 0;
  /// Scale/zero point for what has been observed. Throws qbench::Error when nothing was observed.
  virtual QParams compute() const = 0;
  virtual std::string name() const = 0;
  const QuantScheme& scheme() const { return scheme_; }
  bool observed() const { return count_ > 0; }

 protected:
  QuantScheme scheme_;
  int64_t count_ = 0;
};

/// Running min/max (per tensor, or per channel along scheme.ch_axis).
class MinMaxObserver : public Observer {
 public:
  using Observer::Observer;
  void update(const at::Tensor& x) override;
  QParams compute() const override;
  std::string name() const override { return "minmax"; }
  const at::Tensor& min_val() const { return min_; }
  const at::Tensor& max_val() const { return max_; }

 private:
  at::Tensor min_, max_;
};

struct ObserverEntry {
  std::string description;
  std::function<std::unique_ptr<Observer>(const QuantScheme&)> make;
};
Registry<ObserverEntry>& observer_registry();

/// Throws qbench::Error when x holds a NaN or an infinity (a silent NaN scale is worse).
void check_finite(const at::Tensor& x, const char* what);

}  // namespace qbench::quant
