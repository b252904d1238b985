// Architectures, quantizer placement, the training schedule and loss, checkpoints.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>

#include "qbench/models/models.h"
#include "qbench/ptq/ptq.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/train/train.h"
#include "test_util.h"

using namespace qbench;

TEST_CASE("CIFAR-style ResNets build, run at 28x28 and have the published size", "[models]") {
  at::manual_seed(0);
  auto m = models::make_model("resnet20", {1, 10, 28});
  auto y = m->forward(at::randn({2, 1, 28, 28}));
  CHECK(y.sizes() == at::IntArrayRef({2, 10}));
  // He et al. report 0.27M parameters for ResNet-20 with option-A shortcuts; our 1x1-conv
  // (option B) shortcuts add 16*32 + 32*64 weights and 2 BNs (96 + 192 params).
  const int64_t n = models::parameter_count(*m);
  CHECK(n > 265000);
  CHECK(n < 280000);
  auto layers = m->quant_layers();
  // 19 3x3 convs + 2 shortcut convs + fc
  CHECK(layers.size() == 22);
  CHECK(layers.front().name == "conv1");
  CHECK(layers.front().is_first);
  CHECK(layers.back().name == "fc");
  CHECK(layers.back().is_last);
  CHECK_THROWS_AS(models::make_model("resnet21", {1, 10, 28}), UnknownNameError);
}

TEST_CASE("prepare_model follows the academic profile: first/last layer 8-bit, 32 stays float", "[quant][models]") {
  at::manual_seed(0);
  auto m = models::make_model("resnet8", {1, 10, 28});
  const auto& prof = quant::profile_registry().get("academic");
  quant::PrepareOptions opt;
  opt.w_bits = 4;
  opt.a_bits = 4;
  int n = quant::prepare_model(*m, prof, opt);
  auto layers = m->quant_layers();
  CHECK(n == 2 * static_cast<int>(layers.size()));
  for (auto& l : layers) {
    const int expect = (l.is_first || l.is_last) ? 8 : 4;
    CHECK(l.layer->weight_quantizer()->scheme().bits == expect);
    CHECK(l.layer->input_quantizer()->scheme().bits == expect);
    CHECK(l.layer->weight_quantizer()->scheme().granularity == quant::Granularity::PerTensor);
    CHECK(l.layer->weight_quantizer()->scheme().symmetric);
  }
  auto m2 = models::make_model("resnet8", {1, 10, 28});
  opt.a_bits = 32;
  CHECK(quant::prepare_model(*m2, prof, opt) == static_cast<int>(m2->quant_layers().size()));
  for (auto& l : m2->quant_layers()) CHECK(l.layer->input_quantizer() == nullptr);
}

TEST_CASE("minmax PTQ: after calibration activations after ReLU are unsigned and w8a8 tracks FP32", "[ptq]") {
  at::manual_seed(0);
  auto m = models::make_model("resnet8", {1, 10, 28});
  m->eval();
  auto x = at::randn({64, 1, 28, 28});
  auto ref = m->forward(x).detach();
  quant::AlgorithmContext ctx;
  ctx.profile = &quant::profile_registry().get("academic");
  ctx.w_bits = ctx.a_bits = 8;
  ctx.calib_images = x;
  ptq::MinMaxCalibration().apply(*m, ctx);
  int unsigned_inputs = 0;
  for (auto& l : m->quant_layers()) {
    auto qp = l.layer->input_quantizer()->affine_qparams();
    REQUIRE(qp.has_value());
    if (l.is_first) CHECK(qp->range.qmin < 0);  // normalised images are signed
    if (qp->range.qmin == 0) ++unsigned_inputs;
  }
  CHECK(unsigned_inputs >= 5);  // every input that follows a ReLU
  auto out = m->forward(x);
  // Signal-to-quantization-noise ratio of the logits at w8a8: well above 20 dB.
  const double sqnr = 10 * std::log10(ref.pow(2).sum().item<double>() / (out - ref).pow(2).sum().item<double>());
  CHECK(sqnr > 20.0);
}

TEST_CASE("learning-rate schedule: linear warm-up then cosine to zero", "[train]") {
  config::TrainRecipe r;
  r.lr = 0.1;
  r.warmup_start_lr = 0.001;
  r.warmup_epochs = 1;
  const int64_t spe = 10, total = 50;
  CHECK(train::lr_at(r, 0, spe, total) == Approx(0.001));
  CHECK(train::lr_at(r, 5, spe, total) == Approx(0.001 + 0.099 * 0.5));
  CHECK(train::lr_at(r, 10, spe, total) == Approx(0.1));
  CHECK(train::lr_at(r, 30, spe, total) == Approx(0.05));  // halfway through the cosine
  CHECK(train::lr_at(r, 50, spe, total) == Approx(0.0).margin(1e-12));
}

TEST_CASE("label-smoothed cross-entropy matches its formula", "[train]") {
  auto logits = at::tensor({2.0f, 0.5f, -1.0f, 0.1f, 0.2f, 0.3f}).reshape({2, 3});
  auto target = at::tensor({0L, 2L});
  const double eps = 0.1;
  double expect = 0;
  for (int i = 0; i < 2; ++i) {
    double lse = 0;
    for (int k = 0; k < 3; ++k) lse += std::exp(logits[i][k].item<double>());
    lse = std::log(lse);
    double nll = lse - logits[i][target[i].item<int64_t>()].item<double>();
    double uni = 0;
    for (int k = 0; k < 3; ++k) uni += (lse - logits[i][k].item<double>()) / 3;
    expect += ((1 - eps) * nll + eps * uni) / 2;
  }
  CHECK(train::smoothed_cross_entropy(logits, target, eps).item<double>() == Approx(expect).epsilon(1e-6));
}

TEST_CASE("a few training steps lower the loss, and checkpoints round-trip exactly", "[train]") {
  at::manual_seed(3);
  data::TensorDataset ds;
  // A learnable toy problem: class = which quadrant is bright.
  ds.images = at::randn({256, 1, 28, 28}) * 0.1;
  ds.labels = at::randint(0, 4, {256}, at::kLong);
  for (int64_t i = 0; i < 256; ++i) {
    const int64_t c = ds.labels[i].item<int64_t>();
    ds.images[i][0].narrow(0, (c / 2) * 14, 14).narrow(1, (c % 2) * 14, 14).add_(2.0);
  }
  ds.num_classes = 4;
  auto m = models::make_model("resnet8-w0.5", {1, 4, 28});
  auto before = train::evaluate(*m, ds, 128);
  config::TrainRecipe r;
  r.epochs = 3;
  r.batch_size = 32;
  r.lr = 0.05;
  r.augment = false;
  train::train_fp32(*m, ds, r, 1);
  auto after = train::evaluate(*m, ds, 128);
  CHECK(after.loss < before.loss);
  CHECK(after.top1 > 60.0);

  auto dir = test::scratch_dir("ckpt");
  torch::serialize::OutputArchive out;
  m->save(out);
  out.save_to((dir / "m.pt").string());
  auto m2 = models::make_model("resnet8-w0.5", {1, 4, 28});
  torch::serialize::InputArchive in;
  in.load_from((dir / "m.pt").string());
  m2->load(in);
  m2->eval();
  m->eval();
  auto x = ds.images.narrow(0, 0, 16);
  CHECK(at::equal(m->forward(x), m2->forward(x)));
}
