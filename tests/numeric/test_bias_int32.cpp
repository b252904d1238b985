// The integer bias a profile's `bias: int32` asks for: a conv/linear bias rounded to the
// accumulator's grid s_in * s_w (per output channel under per-channel weights), checked against a
// plain double-precision reference; its gradient passes straight through; off by default.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>

#include "qbench/quant/observer.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"
#include "qbench/quant/quantizer.h"
#include "scheme_util.h"

using namespace qbench;

namespace {

std::shared_ptr<quant::QuantizerImpl> fixed(const quant::QuantScheme& s, const at::Tensor& scale,
                                            const at::Tensor& zp, quant::QRange r, int64_t axis) {
  auto q = std::make_shared<quant::QuantizerImpl>(s, std::make_unique<quant::MinMaxObserver>(s));
  quant::QParams qp;
  qp.scale = scale.to(at::kFloat);
  qp.zero_point = zp.to(at::kInt);
  qp.range = r;
  qp.ch_axis = axis;
  q->set_qparams(qp);
  q->set_quantizing(true);
  return q;
}

}  // namespace

TEST_CASE("bias int32: a conv's bias on the grid s_in * s_w per output channel, straight-through gradient",
          "[bias]") {
  at::manual_seed(3);
  quant::QConv2d conv(quant::QConv2dOptions{3, 4, 3, 1, 1, 1, /*bias=*/true});
  {
    at::NoGradGuard ng;
    conv->bias.copy_(at::randn({4}) * 0.7);
  }
  const at::Tensor sw = at::tensor({0.011f, 0.023f, 0.005f, 0.04f}), zw = at::zeros({4}, at::kInt);
  const at::Tensor sx = at::scalar_tensor(0.27f), zx = at::scalar_tensor(3, at::kInt);  // a coarse 4-bit grid
  conv->attach(fixed(test::scheme(8, true, quant::Signedness::Signed, true), sw, zw, {-128, 127}, 0),
               fixed(test::scheme(4, false, quant::Signedness::Unsigned), sx, zx, {0, 15}, -1));
  const at::Tensor x = at::rand({2, 3, 6, 6}) * 3;
  const at::Tensor float_bias = conv->forward(x);  // off by default: the float bias

  conv->set_bias_int32(true);
  REQUIRE(conv->bias_int32());
  const at::Tensor y = conv->forward(x);
  // Reference: the same conv with the bias rounded in double to round(b / (s_x * s_w)) * s_x * s_w.
  at::Tensor b_ref = at::empty({4}, at::kFloat);
  for (int64_t c = 0; c < 4; ++c) {
    const double grid = double(0.27f * sw[c].item<float>());
    b_ref[c] = static_cast<float>(std::nearbyint(conv->bias[c].item<double>() / grid) * grid);
  }
  const at::Tensor xq = conv->input_quantizer()->forward(x), wq = conv->weight_quantizer()->forward(conv->weight);
  const at::Tensor ref = at::conv2d(xq, wq, b_ref, 1, 1);
  CHECK(at::allclose(y, ref, 1e-5, 1e-6));
  // The rounding is real: the outputs moved by the bias error of each channel, at most half a grid step.
  const at::Tensor moved = (y - float_bias).amax({0, 2, 3});
  CHECK(moved.abs().max().item<double>() > 0);
  for (int64_t c = 0; c < 4; ++c) CHECK(std::fabs(moved[c].item<double>()) <= 0.5 * 0.27 * sw[c].item<double>() + 1e-6);
  // Straight-through: d(sum y)/db = the number of output positions per channel.
  conv->bias.mutable_grad() = at::Tensor();
  conv->forward(x).sum().backward();
  CHECK(at::allclose(conv->bias.grad(), at::full({4}, 2.0 * 6 * 6)));
  // With the input quantizer off there is no accumulator grid: the float bias.
  conv->input_quantizer()->set_quantizing(false);
  CHECK(at::allclose(conv->forward(x), at::conv2d(x, wq, conv->bias, 1, 1), 1e-5, 1e-6));
}

TEST_CASE("bias int32: a linear layer's bias, per-tensor scales", "[bias]") {
  at::manual_seed(4);
  quant::QLinear fc(5, 3);
  const at::Tensor sw = at::scalar_tensor(0.03f), sx = at::scalar_tensor(0.4f);
  fc->attach(fixed(test::scheme(4, true, quant::Signedness::Signed), sw, at::scalar_tensor(0, at::kInt), {-8, 7}, -1),
             fixed(test::scheme(4, true, quant::Signedness::Signed), sx, at::scalar_tensor(0, at::kInt), {-8, 7}, -1));
  fc->set_bias_int32(true);
  const at::Tensor x = at::randn({7, 5});
  const double grid = double(0.4f * 0.03f);
  const at::Tensor b_ref = (at::round(fc->bias.detach().to(at::kDouble) / grid) * grid).to(at::kFloat);
  const at::Tensor ref = at::linear(fc->input_quantizer()->forward(x), fc->weight_quantizer()->forward(fc->weight), b_ref);
  CHECK(at::allclose(fc->forward(x), ref, 1e-5, 1e-6));
}

TEST_CASE("bias int32: profiles that declare it set it on every layer they quantize", "[bias]") {
  const auto& ort = quant::profile_registry().get("ort-cpu");
  CHECK(ort.spec.bias == "int32");
  CHECK(quant::profile_registry().get("x86-onednn").spec.bias == "float");
  CHECK(ort.spec.canonical().find("bias=int32") != std::string::npos);
  // The default stays out of the canonical text, so existing profiles keep their hashes and keys.
  CHECK(quant::profile_registry().get("x86-onednn").spec.canonical().find("bias=") == std::string::npos);
}

namespace {
struct OneLinear : quant::QuantModel {
  quant::QLinear fc{nullptr};
  OneLinear() { fc = register_module("fc", quant::QLinear(4, 2)); }
  at::Tensor forward(const at::Tensor& x) override { return fc->forward(x); }
};
}  // namespace

TEST_CASE("bias int32: attach_quantizers sets it from the profile", "[bias]") {
  for (const auto* name : {"ort-cpu", "x86-onednn"}) {
    OneLinear m;
    quant::PrepareOptions o;
    quant::prepare_model(m, quant::profile_registry().get(name), o);
    CHECK(m.fc->bias_int32() == (std::string(name) == "ort-cpu"));
  }
}
