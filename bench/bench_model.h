#pragma once
// The benchmarks' networks: random weights from a fixed seed and BN statistics randomised, so two
// benches (or two calls in one) time and compare the same network.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "qbench/models/models.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

namespace qbench::bench {

/// `arch` at `spec` with the same random weights on every call (seeded), BN statistics
/// randomised, in eval mode.
inline std::shared_ptr<quant::QuantModel> random_model(const std::string& arch, const models::ModelSpec& spec) {
  return models::random_model(arch, spec, 11);
}

/// `m` with BN folded as `prof` says and min/max quantizers calibrated at the profile's default
/// bits on `calib` (one batch), in eval mode.
inline std::shared_ptr<quant::QuantModel> calibrated(std::shared_ptr<quant::QuantModel> m, const quant::Profile& prof,
                                                     const at::Tensor& calib) {
  if (prof.bn_fold >= 0) quant::apply_bn_fold(*m, prof.bn_fold);
  quant::prepare_model(*m, prof, {});
  quant::calibrate(*m, calib, calib.size(0));
  m->eval();
  return m;
}

/// The mean over rows of the cosine between two [N, classes] logit tensors.
inline double logit_cosine(const at::Tensor& a, const at::Tensor& b) {
  return ((a * b).sum(1) / (a.norm(2, {1}) * b.norm(2, {1}))).mean().item<double>();
}

}  // namespace qbench::bench
