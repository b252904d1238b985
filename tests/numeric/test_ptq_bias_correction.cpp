// Empirical bias correction (lib/ptq/src/bias_correction.cpp; Nagel et al. 2019, Sec. 4.2)
// against its definition: after correction the quantized model's expected pre-activation output
// equals the float model's, layer by layer, on the calibration images; on a linear chain the
// correction equals (W~ - W) E[x] and the shift of the quantized input, computed here with plain
// tensor algebra; the correction lands in the BN's beta or the layer's bias as the folding
// strategy requires; `images` does what its table says.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

using namespace qbench;

namespace {

std::unique_ptr<quant::Algorithm> bias_correction() {
  static Registry<quant::AlgorithmEntry> reg = [] {
    Registry<quant::AlgorithmEntry> r("algorithm");
    ptq::register_algorithms(r);
    return r;
  }();
  return reg.get("bias-correction").make();
}

/// fc1 -> relu -> fc2 -> relu -> fc3: a chain whose middle layer runs at the cell's width.
struct Mlp : quant::QuantModel {
  Mlp() {
    fc1 = register_module("fc1", quant::QLinear(12, 16));
    fc2 = register_module("fc2", quant::QLinear(16, 16));
    fc3 = register_module("fc3", quant::QLinear(16, 5));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return fc3->forward(at::relu(fc2->forward(at::relu(fc1->forward(x)))));
  }
  quant::QLinear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

quant::AlgorithmContext ctx_for(const at::Tensor& images, int w_bits, int a_bits, int64_t n_images = 0) {
  quant::AlgorithmContext ctx;
  ctx.profile = &quant::profile_registry().get("academic");
  ctx.w_bits = w_bits;
  ctx.a_bits = a_bits;
  ctx.calib_images = images;
  ctx.calib_batch_size = 64;
  ctx.settings = {{"images", n_images}};
  return ctx;
}

/// Per-channel mean over `x` of each layer's pre-activation output, quantizers on or off.
std::map<std::string, at::Tensor> layer_means(quant::QuantModel& m, const at::Tensor& x, bool quantizing) {
  std::map<std::string, at::Tensor> out;
  auto layers = m.quant_layers();
  for (auto& l : layers)
    l.layer->set_output_tap([&out, name = l.name](const at::Tensor& y) {
      std::vector<int64_t> dims{0};
      for (int64_t d = 2; d < y.dim(); ++d) dims.push_back(d);
      out[name] = y.to(at::kDouble).mean(dims);
    });
  torch::NoGradGuard ng;
  quant::set_quantizing(m, quantizing);
  m.forward(x);
  quant::set_quantizing(m, true);
  for (auto& l : layers) l.layer->set_output_tap(nullptr);
  return out;
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

std::shared_ptr<quant::QuantModel> resnet(uint64_t seed, int bn_fold) {
  at::manual_seed(static_cast<int64_t>(seed));
  auto m = models::make_model("resnet8-w0.5", {1, 10, 28});
  {
    torch::NoGradGuard ng;
    m->train();
    for (int i = 0; i < 4; ++i) m->forward(at::randn({32, 1, 28, 28}));  // BN statistics that are not the identity
  }
  m->eval();
  quant::apply_bn_fold(*m, bn_fold);
  return m;
}

}  // namespace

TEST_CASE("bias correction: on a linear chain the correction is the expected output shift, computed by hand",
          "[ptq][bias_correction]") {
  at::manual_seed(3);
  Mlp m;
  m.eval();
  const at::Tensor x = at::randn({256, 12}) + 0.5;  // a non-zero mean input: (W~ - W) E[x] != 0
  torch::NoGradGuard ng;
  const at::Tensor w1 = m.fc1->weight.clone(), b1 = m.fc1->bias.clone(), w2 = m.fc2->weight.clone(),
                   b2 = m.fc2->bias.clone(), w3 = m.fc3->weight.clone(), b3 = m.fc3->bias.clone();
  // The float model's expected outputs, before the correction moves the biases it shares.
  auto fp = layer_means(m, x, false);
  auto ctx = ctx_for(x, /*w_bits=*/3, /*a_bits=*/32);  // activations stay float: only weight error
  bias_correction()->apply(m, ctx);

  // The quantized weights the model now uses (fixed quantizers: the same values on every call).
  const at::Tensor q1 = m.fc1->weight_quantizer()->forward(m.fc1->weight);
  const at::Tensor q2 = m.fc2->weight_quantizer()->forward(m.fc2->weight);
  const at::Tensor q3 = m.fc3->weight_quantizer()->forward(m.fc3->weight);
  REQUIRE_FALSE(at::equal(q2, w2));  // 3-bit weights differ from the float ones

  // Layer 1 sees the float input: its shift is exactly (W1~ - W1) E[x].
  const at::Tensor ex = x.to(at::kDouble).mean(0);
  const at::Tensor want_b1 = b1.to(at::kDouble) - at::mv((q1 - w1).to(at::kDouble), ex);
  CHECK(max_abs(m.fc1->bias.to(at::kDouble) - want_b1) < 1e-5);
  // Layer 2, corrected after layer 1: the shift of its output over the images, both inputs
  // computed here from the weights alone.
  const at::Tensor h1_fp = at::relu(at::linear(x, w1, b1)), h1_q = at::relu(at::linear(x, q1, m.fc1->bias));
  const at::Tensor shift2 = (at::linear(h1_q, q2, b2) - at::linear(h1_fp, w2, b2)).to(at::kDouble).mean(0);
  CHECK(max_abs(m.fc2->bias.to(at::kDouble) - (b2.to(at::kDouble) - shift2)) < 1e-5);
  const at::Tensor h2_fp = at::relu(at::linear(h1_fp, w2, b2)), h2_q = at::relu(at::linear(h1_q, q2, m.fc2->bias));
  const at::Tensor shift3 = (at::linear(h2_q, q3, b3) - at::linear(h2_fp, w3, b3)).to(at::kDouble).mean(0);
  CHECK(max_abs(m.fc3->bias.to(at::kDouble) - (b3.to(at::kDouble) - shift3)) < 1e-5);
  // And the defining property: every layer's expected output is the float one.
  auto q = layer_means(m, x, true);
  for (const auto& [name, mean] : fp) CHECK(max_abs(q.at(name) - mean) < 1e-5);
  // The details name every layer with the shift removed.
  int rows = 0;
  for (const auto& d : ctx.details) rows += d.section == "bias_correction";
  CHECK(rows == 3);
}

TEST_CASE(
    "bias correction: every layer's expected pre-activation output matches the float model, for each "
    "BN folding strategy, with the correction in beta or in the bias",
    "[ptq][bias_correction]") {
  at::set_num_threads(1);
  at::manual_seed(11);
  const at::Tensor x = at::randn({96, 1, 28, 28});
  for (int fold : {-1, 0, 1}) {
    DYNAMIC_SECTION("bn_fold " << fold) {
      auto m = resnet(5, fold);
      auto ref = resnet(5, fold);
      auto fp = layer_means(*m, x, false);  // before the correction moves the shared bias terms
      auto ctx = ctx_for(x, 4, 4);
      bias_correction()->apply(*m, ctx);
      auto q = layer_means(*m, x, true);
      for (const auto& l : m->quant_layers()) {
        INFO(l.name);
        const double scale = std::max(1.0, max_abs(fp.at(l.name)));
        CHECK(max_abs(q.at(l.name) - fp.at(l.name)) < 1e-4 * scale);
      }
      // Where the correction went: beta for BNs that are not merged, the conv's bias otherwise.
      auto layers = m->quant_layers(), ref_layers = ref->quant_layers();
      for (std::size_t i = 0; i < layers.size(); ++i) {
        auto* conv = dynamic_cast<quant::QConv2dImpl*>(layers[i].layer);
        auto* rconv = dynamic_cast<quant::QConv2dImpl*>(ref_layers[i].layer);
        if (!conv || !conv->bn()) continue;
        INFO(layers[i].name);
        torch::NoGradGuard ng;
        if (fold == 0) {
          CHECK_FALSE(at::equal(conv->bias, rconv->bias));  // merged: the bias moved
        } else {
          CHECK_FALSE(at::equal(conv->bn()->bias, rconv->bn()->bias));  // beta moved
          CHECK(conv->bias.defined() == rconv->bias.defined());         // no bias was added
        }
      }
    }
  }
}

TEST_CASE("bias correction: `images` limits the estimate to the first N calibration images", "[ptq][bias_correction]") {
  at::set_num_threads(1);
  at::manual_seed(12);
  const at::Tensor x = at::randn({96, 1, 28, 28});

  // images: 32 -> the means match on those 32 images, not on all 96.
  auto sub = resnet(6, 0);
  const at::Tensor first = x.narrow(0, 0, 32);
  auto fps = layer_means(*sub, first, false), fpa = layer_means(*sub, x, false);
  auto c3 = ctx_for(x, 4, 4, 32);
  bias_correction()->apply(*sub, c3);
  auto qs = layer_means(*sub, first, true), qa = layer_means(*sub, x, true);
  double on_subset = 0, on_all = 0;
  for (const auto& l : sub->quant_layers()) {
    on_subset = std::max(on_subset, max_abs(qs.at(l.name) - fps.at(l.name)));
    on_all = std::max(on_all, max_abs(qa.at(l.name) - fpa.at(l.name)));
  }
  CHECK(on_subset < 1e-4);
  CHECK(on_all > 10 * on_subset);
  for (const auto& d : c3.details) CHECK(d.values.at("images") == 32.0);
}

TEST_CASE("bias correction: the same inputs give the same model", "[ptq][bias_correction]") {
  at::set_num_threads(1);
  at::manual_seed(13);
  const at::Tensor x = at::randn({64, 1, 28, 28});
  auto a = resnet(7, 0), b = resnet(7, 0);
  auto ca = ctx_for(x, 3, 8), cb = ctx_for(x, 3, 8);
  bias_correction()->apply(*a, ca);
  bias_correction()->apply(*b, cb);
  torch::NoGradGuard ng;
  auto pa = a->named_parameters(), pb = b->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& p : pa) CHECK(at::equal(p.value(), pb[p.key()]));
}
