// Each hardware profile's schemes on a small network: resnet8 is prepared under the profile,
// calibrated with minmax PTQ, and the attached quantizers are checked against ranges, scales and
// zero points computed here with plain loops over the tensors.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cmath>

#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

using namespace qbench;

namespace {
struct Calibrated {
  std::shared_ptr<quant::QuantModel> model;
  at::Tensor x;
};

Calibrated calibrate(const quant::Profile& prof, int w_bits = 8, int a_bits = 8) {
  at::manual_seed(0);
  auto m = models::make_model("resnet8", {1, 10, 28});
  m->eval();
  auto x = at::randn({16, 1, 28, 28});
  quant::AlgorithmContext ctx;
  ctx.profile = &prof;
  ctx.w_bits = w_bits;
  ctx.a_bits = a_bits;
  ctx.calib_images = x;
  ptq::MinMaxCalibration().apply(*m, ctx);
  return {m, x};
}

Calibrated calibrate(const std::string& name, int w_bits = 8, int a_bits = 8) {
  return calibrate(quant::profile_registry().get(name), w_bits, a_bits);
}

quant::QParams qparams(quant::FakeQuantizer* q) {
  REQUIRE(q != nullptr);
  auto qp = q->affine_qparams();
  REQUIRE(qp.has_value());
  return *qp;
}

/// max |w| over output channel c, by a plain loop.
double channel_absmax(const at::Tensor& w, int64_t c) {
  auto f = w.detach().to(at::kDouble).contiguous();
  const int64_t per = f.numel() / f.size(0);
  const double* p = f.data_ptr<double>() + c * per;
  double m = 0;
  for (int64_t i = 0; i < per; ++i) m = std::max(m, std::abs(p[i]));
  return m;
}

void min_max(const at::Tensor& t, double& lo, double& hi) {
  auto f = t.detach().to(at::kDouble).contiguous().reshape({-1});
  lo = hi = 0;  // the observers widen the range to include 0
  for (int64_t i = 0; i < f.numel(); ++i) {
    lo = std::min(lo, f.data_ptr<double>()[i]);
    hi = std::max(hi, f.data_ptr<double>()[i]);
  }
}

bool is_power_of_two(double s) {
  int e = 0;
  return std::frexp(s, &e) == 0.5;
}
}  // namespace

TEST_CASE("every runnable profile prepares resnet8 and w8a8 minmax tracks FP32, nnie is refused", "[profiles][quant]") {
  for (const auto& e : quant::profile_registry().entries()) {
    INFO(e.first);
    if (!e.second.spec.not_implemented.empty()) {
      CHECK_THROWS_WITH(calibrate(e.second), Catch::Contains("not implemented"));
      continue;
    }
    auto c = calibrate(e.second);
    at::manual_seed(0);
    auto ref = models::make_model("resnet8", {1, 10, 28});
    ref->eval();
    auto yf = ref->forward(c.x);
    auto yq = c.model->forward(c.x);
    CHECK(at::isfinite(yq).all().item<bool>());
    // 8-bit fake quantization of an untrained net: logits within a few percent of FP32.
    const double rel = (yq - yf).norm().item<double>() / yf.norm().item<double>();
    CHECK(rel < 0.1);
    for (auto* q : c.model->quantizers()) CHECK(q->ready());
  }
}

TEST_CASE("academic: per-tensor symmetric weights, inputs of conv/linear only, no add quantizers", "[profiles][quant]") {
  auto c = calibrate("academic", 4, 4);
  const auto layers = c.model->quant_layers();
  CHECK(c.model->quantizers().size() == 2 * layers.size());
  for (auto& a : c.model->adds()) {
    CHECK(a.add->output_quantizer() == nullptr);
    CHECK(a.add->input_quantizer(0) == nullptr);
  }
  for (auto& l : layers) {
    auto w = qparams(l.layer->weight_quantizer());
    CHECK(!w.per_channel());
    const int hi = (l.is_first || l.is_last) ? 127 : 7;
    CHECK(w.range.qmin == -hi - 1);
    CHECK(w.range.qmax == hi);
    // s = max|w| / ((qmax - qmin) / 2)
    double lo = 0, mx = 0;
    min_max(l.layer->weight_tensor(), lo, mx);
    CHECK(w.scale.item<double>() == Approx(std::max(-lo, mx) / (hi + 0.5)).epsilon(1e-6));
    CHECK(w.zero_point.item<int>() == 0);
  }
}

TEST_CASE("tensorrt: weights per-channel symmetric narrow, activations per-tensor symmetric narrow, add inputs", "[profiles][quant]") {
  auto c = calibrate("tensorrt");
  for (auto& l : c.model->quant_layers()) {
    INFO(l.name);
    const auto& w = l.layer->weight_tensor();
    auto qp = qparams(l.layer->weight_quantizer());
    REQUIRE(qp.per_channel());
    CHECK(qp.ch_axis == 0);
    REQUIRE(qp.scale.numel() == w.size(0));  // one scale per output channel
    CHECK(qp.range.qmin == -127);
    CHECK(qp.range.qmax == 127);
    CHECK(qp.zero_point.abs().sum().item<int64_t>() == 0);
    // Narrow symmetric: s_c = max|w_c| / 127 (the denominator is (127 - (-127)) / 2).
    for (int64_t ch = 0; ch < w.size(0); ++ch)
      CHECK(qp.scale[ch].item<double>() == Approx(channel_absmax(w, ch) / 127.0).epsilon(1e-6));
    // Fake-quantized weights are integers in [-127, 127] times their channel's scale.
    auto wq = l.layer->weight_quantizer()->forward(w).detach().to(at::kDouble);
    auto s = qp.scale.to(at::kDouble).reshape({-1, 1}).expand({w.size(0), w.numel() / w.size(0)});
    auto q = wq.reshape({w.size(0), -1}) / s;
    CHECK((q - q.round()).abs().max().item<double>() < 1e-3);
    CHECK(q.abs().max().item<double>() <= 127.0 + 1e-3);
    CHECK(q.abs().max().item<double>() >= 127.0 - 1e-3);  // the channel maximum maps to +-127

    auto a = qparams(l.layer->input_quantizer());
    CHECK(!a.per_channel());
    CHECK(a.range.qmin == -127);  // signed even after ReLU: TensorRT is symmetric int8
    CHECK(a.range.qmax == 127);
    CHECK(a.zero_point.item<int>() == 0);
  }
  const auto adds = c.model->adds();
  REQUIRE(!adds.empty());
  for (auto& a : adds) {
    CHECK(a.add->input_quantizer(0) != nullptr);
    CHECK(a.add->input_quantizer(1) != nullptr);
    CHECK(a.add->output_quantizer() == nullptr);  // the add output feeding a conv is that conv's input
    CHECK(qparams(a.add->input_quantizer(0)).range.qmin == -127);
  }
}

TEST_CASE("vitis: every scale is a power of two that covers the observed range", "[profiles][quant]") {
  auto c = calibrate("vitis");
  for (auto* q : c.model->quantizers()) {
    auto qp = qparams(q);
    CHECK(!qp.per_channel());
    const double s = qp.scale.item<double>();
    CHECK(is_power_of_two(s));
    CHECK(s >= std::ldexp(1.0, -12));
    CHECK(qp.zero_point.item<int>() == 0);
  }
  // Weights by hand: the smallest power of two >= max|w| / 127.5 (signed, not narrow).
  for (auto& l : c.model->quant_layers()) {
    double lo = 0, hi = 0;
    min_max(l.layer->weight_tensor(), lo, hi);
    const double base = std::max(-lo, hi) / 127.5;
    const double expect = std::max(std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(base)))), std::ldexp(1.0, -12));
    CHECK(qparams(l.layer->weight_quantizer()).scale.item<double>() == expect);
  }
  // The graph input: its quantizer scale covers the calibration images' range.
  auto first = c.model->quant_layers().front();
  double lo = 0, hi = 0;
  min_max(c.x, lo, hi);
  const double s = qparams(first.layer->input_quantizer()).scale.item<double>();
  CHECK(s * 127.5 >= std::max(-lo, hi));  // minmax's symmetric signed scale is max|x| / 127.5
  CHECK(s / 2 * 127.5 < std::max(-lo, hi));  // the next smaller power of two would clip
  for (auto& a : c.model->adds()) CHECK(a.add->output_quantizer() != nullptr);
  // QAT quantizers learn free scales: refused under a power-of-two profile.
  auto m = models::make_model("resnet8", {1, 10, 28});
  CHECK_THROWS_WITH(qat::attach_qat_quantizers(*m, qat::qat_method_registry().get("lsq"),
                                               quant::profile_registry().get("vitis"), 4, 4),
                    Catch::Contains("power-of-two"));
}

TEST_CASE("x86-onednn: int8 per-channel symmetric weights, uint8 per-tensor affine activations", "[profiles][quant]") {
  auto c = calibrate("x86-onednn");
  for (auto& l : c.model->quant_layers()) {
    auto w = qparams(l.layer->weight_quantizer());
    CHECK(w.per_channel());
    CHECK(w.range.qmin == -128);
    CHECK(w.range.qmax == 127);
    CHECK(w.zero_point.abs().sum().item<int64_t>() == 0);
    auto a = qparams(l.layer->input_quantizer());
    CHECK(a.range.qmin == 0);
    CHECK(a.range.qmax == 255);
  }
  // The first layer sees signed images: an affine uint8 scale and a zero point inside (0, 255).
  auto first = c.model->quant_layers().front();
  double lo = 0, hi = 0;
  min_max(c.x, lo, hi);
  auto a = qparams(first.layer->input_quantizer());
  const double s = (hi - lo) / 255.0;
  CHECK(a.scale.item<double>() == Approx(s).epsilon(1e-5));
  CHECK(a.zero_point.item<int>() == static_cast<int>(std::nearbyint(-lo / s)));
  CHECK(a.zero_point.item<int>() > 0);
  CHECK(a.zero_point.item<int>() < 255);
  for (auto& ad : c.model->adds()) {
    CHECK(qparams(ad.add->output_quantizer()).range.qmin == 0);
    CHECK(ad.add->input_quantizer(1) != nullptr);
  }
}

TEST_CASE("qnnpack: int8 weights in -127..127, uint8 affine activations", "[profiles][quant]") {
  auto c = calibrate("qnnpack");
  for (auto& l : c.model->quant_layers()) {
    auto w = qparams(l.layer->weight_quantizer());
    CHECK(!w.per_channel());
    CHECK(w.range.qmin == -127);
    CHECK(w.range.qmax == 127);
    double lo = 0, hi = 0;
    min_max(l.layer->weight_tensor(), lo, hi);
    CHECK(w.scale.item<double>() == Approx(std::max(-lo, hi) / 127.0).epsilon(1e-6));
    auto a = qparams(l.layer->input_quantizer());
    CHECK(a.range.qmin == 0);
    CHECK(a.range.qmax == 255);
  }
}

TEST_CASE("openvino: 7-bit per-channel weights in -64..63 at w8, the cell width below", "[profiles][quant]") {
  auto c = calibrate("openvino");
  for (auto& l : c.model->quant_layers()) {
    INFO(l.name);
    const auto& w = l.layer->weight_tensor();
    auto qp = qparams(l.layer->weight_quantizer());
    CHECK(qp.per_channel());
    CHECK(qp.range.qmin == -64);  // first and last layer too: 8 bits capped at 7
    CHECK(qp.range.qmax == 63);
    for (int64_t ch = 0; ch < w.size(0); ++ch)
      CHECK(qp.scale[ch].item<double>() == Approx(channel_absmax(w, ch) / 63.5).epsilon(1e-6));
    // Activations: symmetric, unsigned after ReLU, signed on the (signed) images.
    auto a = qparams(l.layer->input_quantizer());
    CHECK(a.zero_point.item<int>() == 0);
    if (l.is_first) {
      CHECK(a.range.qmin == -128);
    } else {
      CHECK(a.range.qmin == 0);
      CHECK(a.range.qmax == 255);
    }
  }
  auto c4 = calibrate("openvino", 4, 8);
  for (auto& l : c4.model->quant_layers()) {
    auto qp = qparams(l.layer->weight_quantizer());
    CHECK(qp.range.qmin == ((l.is_first || l.is_last) ? -64 : -8));
  }
}

TEST_CASE("snpe: per-tensor affine uint8 weights and activations, add operands and outputs quantized", "[profiles][quant]") {
  auto c = calibrate("snpe");
  for (auto& l : c.model->quant_layers()) {
    auto w = qparams(l.layer->weight_quantizer());
    CHECK(!w.per_channel());
    CHECK(w.range.qmin == 0);
    CHECK(w.range.qmax == 255);
    double lo = 0, hi = 0;
    min_max(l.layer->weight_tensor(), lo, hi);
    const double s = (hi - lo) / 255.0;
    CHECK(w.scale.item<double>() == Approx(s).epsilon(1e-5));
    CHECK(w.zero_point.item<int>() == static_cast<int>(std::nearbyint(-lo / s)));
  }
  for (auto& a : c.model->adds()) {
    CHECK(a.add->input_quantizer(0) != nullptr);
    CHECK(qparams(a.add->output_quantizer()).range.qmax == 255);
  }
}

TEST_CASE("a profile's allowed bit widths are enforced with a message naming it", "[profiles][quant]") {
  auto spec = profiles::parse_profile(R"(name: only8
description: eight bits only
source: test
weight: {granularity: per-tensor, symmetric: true, signedness: signed, bits: [8]}
activation: {granularity: per-tensor, symmetric: true, signedness: auto, bits: [4, 8]}
placement: [conv_linear_inputs]
bn_fold: -1
first_last: cell
engine: none
)",
                                      "only8.yaml");
  const auto prof = quant::profile_from_spec(spec);
  auto m = models::make_model("resnet8", {1, 10, 28});
  quant::PrepareOptions opt;
  opt.w_bits = 4;
  opt.a_bits = 4;
  CHECK_THROWS_WITH(quant::prepare_model(*m, prof, opt),
                    Catch::Contains("profile only8 does not quantize weights at 4 bits (allowed: 8"));
  opt.w_bits = 8;
  CHECK(quant::prepare_model(*m, prof, opt) == 2 * static_cast<int>(m->quant_layers().size()));
  for (auto& l : m->quant_layers()) CHECK(l.layer->input_quantizer()->scheme().bits == 4);  // first_last: cell
}

TEST_CASE("uint8 affine profiles under QAT: a signed edge keeps its negatives, a ReLU output stays unsigned",
          "[profiles][qat]") {
  // x86-onednn's activations are uint8 with a zero point, so minmax PTQ represents negative
  // values. A QAT method without a learned offset must not turn such an edge into a ReLU: the
  // first layer's input (signed images here) has to come back negative where the input is.
  const auto& prof = quant::profile_registry().get("x86-onednn");
  const auto probe = at::linspace(-1.0, 1.0, 41).reshape({1, 1, 1, 41});
  for (const char* name : {"lsq", "lsq+", "pact", "dorefa", "dsq", "qil", "apot"}) {
    INFO(name);
    at::manual_seed(0);
    auto m = models::make_model("resnet8", {1, 10, 28});
    m->eval();
    qat::attach_qat_quantizers(*m, qat::qat_method_registry().get(name), prof, 4, 4);
    qat::init_quantizers(*m, at::randn({16, 1, 28, 28}), 16);
    torch::NoGradGuard ng;
    auto* first = m->quant_layers().front().layer->input_quantizer();
    REQUIRE(first != nullptr);
    const auto y = first->forward(probe).reshape({-1}).to(at::kDouble);
    const auto p = probe.reshape({-1}).to(at::kDouble);
    // The negative probe values come back within a step of themselves (8 bits over the images'
    // range: steps of 0.02 to 0.15 by method), so those below -0.2 stay negative; clipped at 0
    // they would all be 0.
    for (int64_t i = 0; i < 20; ++i) {
      INFO("x = " << p[i].item<double>() << ", q(x) = " << y[i].item<double>());
      if (p[i].item<double>() <= -0.2) CHECK(y[i].item<double>() < 0.0);
      CHECK(std::abs(y[i].item<double>() - p[i].item<double>()) < 0.1);
    }
  }
  // LSQ's grids: signed where the observed input was negative, unsigned after a ReLU; the signed
  // one is the uint8 grid with its zero point in the middle, which the integer lowering takes.
  at::manual_seed(0);
  auto m = models::make_model("resnet8", {1, 10, 28});
  m->eval();
  qat::attach_qat_quantizers(*m, qat::qat_method_registry().get("lsq"), prof, 4, 4);
  qat::init_quantizers(*m, at::randn({16, 1, 28, 28}), 16);
  int signed_edges = 0, unsigned_edges = 0;
  for (auto& l : m->quant_layers()) {
    auto a = qparams(l.layer->input_quantizer());
    CHECK(a.zero_point.item<int>() == 0);
    if (a.range.qmin < 0) {
      ++signed_edges;
      CHECK(a.range.qmax - a.range.qmin == (l.is_first || l.is_last ? 255 : 15));
    } else {
      ++unsigned_edges;
    }
  }
  CHECK(signed_edges >= 1);    // the graph input
  CHECK(unsigned_edges >= 1);  // every conv after a ReLU
  for (auto& ad : m->adds()) {  // the residual branch's operand (BN output, before the ReLU) is signed
    auto b = qparams(ad.add->input_quantizer(0));
    CHECK(b.range.qmin < 0);
  }
}
