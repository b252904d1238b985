#pragma once
// What the checkpoint and cache integrity tests share: a small seeded model, its optimizer, one
// training step that moves every tensor, and an exact comparison of two models' state.
#include <ATen/ATen.h>
#include <torch/optim/sgd.h>

#include <cstdint>
#include <memory>

#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "qbench/train/train.h"

namespace qbench::test {

inline std::shared_ptr<quant::QuantModel> small_model(uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  return models::make_model("resnet8-w0.5", {1, 4, 28});
}

inline torch::optim::SGD sgd(quant::QuantModel& m) {
  return torch::optim::SGD(m.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
}

inline void one_step(quant::QuantModel& m, torch::optim::SGD& opt) {
  at::manual_seed(11);
  m.train();
  opt.zero_grad();
  train::smoothed_cross_entropy(m.forward(at::randn({8, 1, 28, 28})), at::randint(0, 4, {8}, at::kLong), 0.1)
      .backward();
  opt.step();
  m.eval();
}

inline bool same_state(quant::QuantModel& a, quant::QuantModel& b) {
  auto sa = models::model_state(a), sb = models::model_state(b);
  if (sa.size() != sb.size()) return false;
  for (std::size_t i = 0; i < sa.size(); ++i)
    if (sa[i].first != sb[i].first || !at::equal(sa[i].second, sb[i].second)) return false;
  return true;
}

}  // namespace qbench::test
