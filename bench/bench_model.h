#pragma once
// The benchmarks' networks: random weights from a fixed seed and BN statistics randomised, so two
// benches (or two calls in one) time and compare the same network.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "qbench/models/models.h"

namespace qbench::bench {

/// `arch` at `spec` with the same random weights on every call (seeded), BN statistics
/// randomised, in eval mode.
inline std::shared_ptr<quant::QuantModel> random_model(const std::string& arch, const models::ModelSpec& spec) {
  return models::random_model(arch, spec, 11);
}

/// The mean over rows of the cosine between two [N, classes] logit tensors.
inline double logit_cosine(const at::Tensor& a, const at::Tensor& b) {
  return ((a * b).sum(1) / (a.norm(2, {1}) * b.norm(2, {1}))).mean().item<double>();
}

}  // namespace qbench::bench
