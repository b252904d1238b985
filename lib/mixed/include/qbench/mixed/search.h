#pragma once
// Mixed-precision bit allocation as an exact multiple-choice knapsack (torch-free): one
// (weight, activation) width pair per layer, minimising the summed sensitivity subject to every
// budget given. Solved as a 0-1 integer linear program with GLPK's branch and bound (exact up to
// its integrality tolerance); `brute_force` enumerates every allocation for the tests.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qbench::mixed {

/// One quantized layer as the search sees it.
struct LayerChoices {
  std::string name;
  int64_t params = 0;     ///< weight elements (biases and BN excluded)
  int64_t macs = 0;       ///< multiply-accumulates per sample
  int64_t act_elems = 0;  ///< input activation elements per sample (0: its input counts elsewhere)
  std::vector<int> w_bits;       ///< allowed weight widths (one entry: fixed)
  std::vector<int> a_bits;       ///< allowed input-activation widths (one entry: fixed)
  std::vector<double> w_sens;    ///< sensitivity of each w_bits entry (same length)
  std::vector<double> a_sens;    ///< sensitivity of each a_bits entry (same length)
  /// Layers with the same non-negative group read the same activation edge: one width for all.
  int a_group = -1;
  /// Roofline latency of each (w, a) pair in ms, row-major over (w_bits, a_bits); empty when the
  /// target has no width-dependent latency model.
  std::vector<double> latency_ms;
};

/// The budgets a `mixed` bits entry may give; each present one is an upper bound.
struct Budget {
  std::optional<double> size_kb;     ///< every quantized weight at its width, KiB
  std::optional<double> bops_ratio;  ///< BOPs over the same model's BOPs at w8a8
  std::optional<double> avg_w_bits;  ///< weighted by parameters
  std::optional<double> avg_a_bits;  ///< weighted by activation elements
  std::optional<double> latency_ms;  ///< summed per-layer latency (needs LayerChoices::latency_ms)
  bool empty() const { return !size_kb && !bops_ratio && !avg_w_bits && !avg_a_bits && !latency_ms; }
};

/// The budget a `mixed` bits entry gives, from its keys (config::mixed_budget_keys); throws
/// qbench::Error on any other key.
Budget budget_from(const std::map<std::string, double>& values);

/// What an allocation costs.
struct Cost {
  double sensitivity = 0;
  double size_kb = 0;
  double bops = 0;        ///< sum macs * w * a per sample
  double bops_ratio = 0;  ///< bops / bops at w8a8
  double avg_w_bits = 0, avg_a_bits = 0;
  double latency_ms = 0;
};

struct Allocation {
  std::vector<int> w_bits, a_bits;  ///< per layer
  Cost cost;
};

/// The problem's costs of one allocation (index of the chosen option per layer).
Cost cost_of(const std::vector<LayerChoices>& layers, const std::vector<int>& w_bits, const std::vector<int>& a_bits);
/// The smallest value each budget can take (every layer at its lowest widths; for groups, the
/// group's lowest common width).
Cost lowest_cost(const std::vector<LayerChoices>& layers);
Cost highest_cost(const std::vector<LayerChoices>& layers);

/// Checks the problem's shape (option and sensitivity lengths, group consistency). Throws
/// qbench::Error.
void validate(const std::vector<LayerChoices>& layers);

/// The exact optimum. Throws qbench::Error when no allocation meets the budget (the message
/// gives the reachable range of each budget given).
Allocation solve(const std::vector<LayerChoices>& layers, const Budget& budget);
/// Every allocation enumerated (tests only: the product of the option counts must be small).
std::optional<Allocation> brute_force(const std::vector<LayerChoices>& layers, const Budget& budget);

/// One point of a Pareto front: the optimum under `budget` on one dimension.
struct FrontPoint {
  double budget = 0;
  Allocation allocation;
};
/// The optimum at `points` budgets evenly spaced from the lowest to the highest reachable value of
/// `dimension` ("size_kb" or "bops_ratio"), each alone.
std::vector<FrontPoint> pareto_front(const std::vector<LayerChoices>& layers, const std::string& dimension, int points);

}  // namespace qbench::mixed
