// The SysNoise precision noises (issue 20) on a small model: the rounding against lib/sysnoise's
// and LibTorch's own conversions, the emulated fp16 layer against a hand computation, bf16, and
// the model restored afterwards.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/utils.h>

#include "qbench/models/models.h"
#include "qbench/runner/precision_noise.h"
#include "qbench/sysnoise/precision.h"

using namespace qbench;
using runner::ReducedPrecision;

namespace {
double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }
}  // namespace

TEST_CASE("precision noise: rounding matches lib/sysnoise and LibTorch's casts", "[sysnoise][precision]") {
  at::manual_seed(3);
  // Normal values, large and tiny ones (half subnormals), exact ties are covered by sysnoise's tests.
  const at::Tensor x = at::cat({at::randn({4096}) * 3, at::randn({256}) * 1e-6, at::randn({256}) * 3e4});
  const at::Tensor h = runner::round_to(x, ReducedPrecision::kFp16Emulated);
  const at::Tensor b = runner::round_to(x, ReducedPrecision::kBf16);
  CHECK(at::equal(h, x.to(at::kHalf).to(at::kFloat)));
  CHECK(at::equal(b, x.to(at::kBFloat16).to(at::kFloat)));
  CHECK_FALSE(at::equal(h, x));
  const float* xp = x.data_ptr<float>();
  const float* hp = h.data_ptr<float>();
  for (int64_t i = 0; i < x.numel(); i += 97) CHECK(hp[i] == sysnoise::round_to_half(xp[i]));
}

TEST_CASE("precision noise: fp16 emulation rounds each layer's boundary, bf16 runs in bfloat16", "[sysnoise][precision]") {
  auto model = models::random_model("resnet8-w0.5", {1, 10, 28}, 7);
  torch::NoGradGuard no_grad;
  model->eval();
  at::manual_seed(11);
  const at::Tensor x = at::randn({8, 1, 28, 28});
  const at::Tensor fp32 = model->forward(x);

  // The first conv by hand: input, weight and output rounded to half, BN (unfolded) and ReLU in float.
  auto layers = model->quant_layers();
  auto* conv = dynamic_cast<quant::QConv2dImpl*>(layers.front().layer);
  REQUIRE(conv);
  REQUIRE(conv->bn());
  auto half = [](const at::Tensor& t) { return runner::round_to(t, ReducedPrecision::kFp16Emulated); };
  const auto& o = conv->options();
  at::Tensor expect = half(at::conv2d(half(x), half(conv->weight), conv->bias.defined() ? half(conv->bias) : at::Tensor(),
                                      {o.stride, o.stride}, {o.padding, o.padding}, {1, 1}, o.groups));
  expect = half(quant::apply_act(conv->bn()->forward(expect), conv->act()));
  const at::Tensor plain_first = conv->forward_fused(x);

  runner::set_reduced_precision(*model, ReducedPrecision::kFp16Emulated);
  CHECK(at::equal(conv->forward_fused(x), expect));
  CHECK_FALSE(at::equal(expect, plain_first));
  const at::Tensor fp16 = model->forward(x);
  CHECK(at::equal(fp16, half(fp16)));  // the logits leave the last layer as halves
  CHECK_FALSE(at::equal(fp16, fp32));
  CHECK(max_abs(fp16 - fp32) < 1e-2 * max_abs(fp32));  // half keeps about 3 decimal digits

  runner::set_reduced_precision(*model, ReducedPrecision::kBf16);
  const at::Tensor bf16 = model->forward(x);
  CHECK(at::equal(bf16, runner::round_to(bf16, ReducedPrecision::kBf16)));
  CHECK_FALSE(at::equal(bf16, fp32));
  CHECK_FALSE(at::equal(bf16, fp16));
  CHECK(max_abs(bf16 - fp32) < 5e-2 * max_abs(fp32));  // bfloat16 keeps about 2 to 3 decimal digits
  // Deterministic: the same input gives the same bfloat16 logits.
  CHECK(at::equal(model->forward(x), bf16));

  runner::clear_reduced_precision(*model);
  CHECK(at::equal(model->forward(x), fp32));
}
