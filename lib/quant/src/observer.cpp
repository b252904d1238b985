#include "qbench/quant/observer.h"

#include <ATen/ATen.h>

#include "qbench/common/errors.h"

namespace qbench::quant {

void check_finite(const at::Tensor& x, const char* what) {
  if (!at::isfinite(x).all().item<bool>())
    throw Error(std::string(what) + ": tensor contains NaN or infinite values");
}

void MinMaxObserver::update(const at::Tensor& x_in) {
  auto x = x_in.detach();
  if (x.numel() == 0) return;
  check_finite(x, "minmax observer");
  at::Tensor mn, mx;
  if (scheme_.granularity == Granularity::PerChannel) {
    auto flat = x.transpose(0, scheme_.ch_axis).reshape({x.size(scheme_.ch_axis), -1});
    mn = std::get<0>(flat.min(1));
    mx = std::get<0>(flat.max(1));
  } else {
    mn = x.min();
    mx = x.max();
  }
  if (count_ == 0) {
    min_ = mn.clone();
    max_ = mx.clone();
  } else {
    min_ = at::minimum(min_, mn);
    max_ = at::maximum(max_, mx);
  }
  ++count_;
}

QParams MinMaxObserver::compute() const {
  if (count_ == 0) throw Error("minmax observer: nothing observed (calibration did not reach this layer)");
  return qparams_from_minmax(min_, max_, scheme_,
                             scheme_.granularity == Granularity::PerChannel ? scheme_.ch_axis : -1);
}

void register_observer(Registry<ObserverEntry>& r) {
  r.add("minmax", {"running minimum and maximum (per tensor or per channel)",
                   [](const QuantScheme& s) { return std::make_unique<MinMaxObserver>(s); }});
}

// Generated from the qbench_registry_entry(observers ...) lines of lib/quant/CMakeLists.txt.
void fill_observers(Registry<ObserverEntry>& r);

Registry<ObserverEntry>& observer_registry() {
  static Registry<ObserverEntry> reg("observer", fill_observers);
  return reg;
}

}  // namespace qbench::quant
