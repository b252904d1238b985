// SysNoise's model-inference modes (issue 20) on the zoo: quant::pooled_size against LibTorch's own
// pooling output sizes, and the ceil-mode flip on ResNet-18's imagenet-stem max-pool, which changes
// its output size at 56x56 but has nothing to change in the CIFAR-style networks.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/utils.h>

#include "qbench/models/models.h"
#include "qbench/quant/pooling.h"

namespace qm = qbench::models;
using qbench::quant::pooled_size;

TEST_CASE("pooled_size equals LibTorch's max_pool2d output size", "[models][sysnoise]") {
  int checked = 0;
  for (int64_t in = 3; in <= 17; ++in)
    for (int64_t k = 1; k <= 4; ++k)
      for (int64_t s = 1; s <= 3; ++s)
        for (int64_t p = 0; p <= k / 2; ++p)
          for (int64_t d = 1; d <= 2; ++d)
            for (bool ceil : {false, true}) {
              if (in + 2 * p < d * (k - 1) + 1) continue;
              const auto y = at::max_pool2d(at::zeros({1, 1, in, 1}), {k, 1}, {s, 1}, {p, 0}, {d, 1}, ceil);
              INFO("in " << in << " k " << k << " s " << s << " p " << p << " d " << d << " ceil " << ceil);
              CHECK(pooled_size(in, k, s, p, d, ceil) == y.size(2));
              ++checked;
            }
  CHECK(checked > 500);
}

TEST_CASE("ceil-mode flips ResNet-18's stem max-pool where its output size changes, and nothing else", "[models][sysnoise]") {
  torch::NoGradGuard ng;
  at::manual_seed(0);
  qm::ModelSpec spec{3, 10, 56};
  spec.width = 0.25;
  spec.stem = qm::Stem::ImageNet;
  auto model = qm::make_model("resnet18", spec);
  model->eval();
  const auto x = at::randn({4, 3, 56, 56});
  const auto plain = model->forward(x);
  auto& modes = model->pooling_modes();
  modes.flip_ceil_mode = true;
  const auto flipped = model->forward(x);
  // conv1 (stride 2) gives 28x28; the 3x3/2 pool with padding 1 gives 14 (floor) or 15 (ceil).
  CHECK(pooled_size(28, 3, 2, 1, 1, false) == 14);
  CHECK(pooled_size(28, 3, 2, 1, 1, true) == 15);
  CHECK(modes.changes() == 1);
  CHECK((flipped - plain).abs().max().item<float>() > 1e-4f);
  modes = qbench::quant::PoolingModes{};
  CHECK(at::equal(model->forward(x), plain));  // flipped back: the declared mode again

  // 64x64: conv1 gives 32, and the pool's ceil window would start in the padding only at 31 -> 16 vs 17.
  CHECK(pooled_size(32, 3, 2, 1, 1, true) == 17);

  // The CIFAR-style networks pool adaptively: no call to flip.
  auto small = qm::make_model("resnet20", qm::ModelSpec{1, 10, 28});
  small->eval();
  small->pooling_modes().flip_ceil_mode = true;
  small->pooling_modes().flip_count_include_pad = true;
  (void)small->forward(at::randn({2, 1, 28, 28}));
  CHECK(small->pooling_modes().changes() == 0);
}
