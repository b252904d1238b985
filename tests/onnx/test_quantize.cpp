// An imported ONNX network through qbench's quantization machinery: the declared structure
// (layers, BN partners, residual adds, blocks, stable names), every BN folding strategy, min/max
// PTQ under profiles with different placements, BRECQ block reconstruction, integer lowering on
// oneDNN, safetensors round trips and `train: true` (fresh weights that train). Uses the
// torchvision ResNet-18 fixture (tests/onnx/make_torchvision_fixtures.py).
#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "npy.h"
#include "qbench/deploy/deploy.h"
#include "qbench/models/safetensors.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"
#include "qbench/ptq/ptq.h"
#include "qbench/qat/qat.h"
#include "qbench/qat/method.h"
#include "qbench/ptq/recon.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

namespace qo = qbench::onnx;
namespace quant = qbench::quant;

namespace {

std::string fixtures() {
  const char* d = std::getenv("QBENCH_ONNX_FIXTURES");
  return d ? d : QBENCH_ONNX_FIXTURES_DEFAULT;
}

std::shared_ptr<qo::OnnxModel> resnet18(const char* form, bool use_initializers = true) {
  qo::ImportOptions opt;
  opt.input_shape = {1, 32, 32};
  auto m = qo::make_model(qo::import_file(fixtures() + "/resnet18." + form + ".onnx", opt), use_initializers);
  m->eval();
  return m;
}

std::shared_ptr<qo::OnnxModel> tiny(bool use_initializers = true) {
  qo::ImportOptions opt;
  opt.input_shape = {1, 16, 16};
  auto m = qo::make_model(qo::import_file(fixtures() + "/opsets/tiny_resnet.onnx", opt), use_initializers);
  m->eval();
  return m;
}

at::Tensor input() { return qbench::test::read_npy(fixtures() + "/resnet18.input.npy"); }
at::Tensor torch_logits() { return qbench::test::read_npy(fixtures() + "/resnet18.logits.npy"); }

double rel_err(const at::Tensor& y, const at::Tensor& ref) {
  return (y - ref).abs().max().item<double>() / ref.abs().max().item<double>();
}

at::Tensor images(int64_t n, uint64_t seed, int64_t hw = 32) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, 1, hw, hw}, gen);
}

}  // namespace

TEST_CASE("resnet18: structure as torchvision declares it", "[onnx][quantize]") {
  for (const char* form : {"bn", "folded"}) {
    INFO(form);
    auto m = resnet18(form);
    const auto layers = m->quant_layers();
    REQUIRE(layers.size() == 21);  // 20 convs + fc
    CHECK(layers.front().name == "conv1");
    CHECK(layers.front().is_first);
    CHECK(layers.back().name == "fc");
    CHECK(layers.back().is_last);
    CHECK(std::string(layers.back().layer->layer_type()) == "linear");
    const bool bn = std::string(form) == "bn";
    if (bn) {
      CHECK(layers.front().bn_name == "bn1");
      CHECK(layers.front().act == quant::Act::ReLU);
    }
    // Eight basic blocks, named after torchvision's modules; a stride-2 block holds its downsample.
    const auto blocks = m->blocks();
    REQUIRE(blocks.size() == 8);
    const char* names[] = {"layer1_0", "layer1_1", "layer2_0", "layer2_1", "layer3_0", "layer3_1", "layer4_0", "layer4_1"};
    const size_t n_layers[] = {2, 2, 3, 2, 3, 2, 3, 2};
    for (size_t i = 0; i < 8; ++i) {
      CHECK(blocks[i].name == names[i]);
      CHECK(blocks[i].kind == "onnx_residual");
      CHECK(blocks[i].layers.size() == n_layers[i]);
    }
    CHECK(layers[1].name == "layer1_0.conv1");
    CHECK(layers[1].block == "layer1_0");
    if (bn) CHECK(layers[1].bn_name == "layer1_0.bn1");
    // The residual adds, each with the ReLU that follows it.
    const auto adds = m->adds();
    REQUIRE(adds.size() == 8);
    for (const auto& a : adds) CHECK(a.add->relu_after());
    CHECK(adds[0].name == "layer1_0.add");
    // State-dict names follow the modules: stable across imports.
    std::set<std::string> keys;
    for (const auto& p : m->named_parameters(true)) keys.insert(p.key());
    CHECK(keys.count("conv1.weight"));
    CHECK(keys.count("layer2_0.downsample_0.weight"));
    CHECK(keys.count("fc.weight"));
    CHECK(keys.count("fc.bias"));
    if (bn) CHECK(keys.count("layer2_0.downsample_1.bias"));
    auto again = resnet18(form);
    std::set<std::string> keys2;
    for (const auto& p : again->named_parameters(true)) keys2.insert(p.key());
    CHECK(keys == keys2);
  }
}

TEST_CASE("resnet18: every BN folding strategy keeps the FP32 logits", "[onnx][quantize]") {
  const auto x = input(), ref = torch_logits();
  for (int s = 0; s <= 4; ++s) {
    INFO("strategy " << s);
    auto m = resnet18("bn");
    CHECK(quant::apply_bn_fold(*m, s) == 20);
    at::NoGradGuard ng;
    CHECK(rel_err(m->forward(x), ref) <= 1e-4);
  }
  auto folded = resnet18("folded");
  CHECK(quant::apply_bn_fold(*folded, 0) == 0);  // no BN to fold
  CHECK_FALSE(folded->has_bn());
}

TEST_CASE("resnet18: min/max PTQ under profiles with different placements", "[onnx][quantize]") {
  const auto x = input(), ref = torch_logits();
  for (const char* profile : {"academic", "tensorrt"}) {
    INFO(profile);
    auto m = resnet18("bn");
    quant::AlgorithmContext ctx;
    ctx.profile = &quant::profile_registry().get(profile);
    quant::apply_bn_fold(*m, ctx.profile->bn_fold < 0 ? 0 : ctx.profile->bn_fold);
    ctx.calib_images = images(64, 1);
    ctx.calib_batch_size = 32;
    qbench::ptq::MinMaxCalibration().apply(*m, ctx);
    int in_q = 0, w_q = 0;
    for (const auto& l : m->quant_layers()) {
      in_q += l.layer->input_quantizer() != nullptr;
      w_q += l.layer->weight_quantizer() != nullptr;
    }
    CHECK(w_q == 21);
    CHECK(in_q == 21);
    int add_q = 0;
    for (const auto& a : m->adds()) add_q += (a.add->input_quantizer(0) != nullptr) + (a.add->input_quantizer(1) != nullptr);
    CHECK(add_q == (std::string(profile) == "tensorrt" ? 16 : 0));
    at::NoGradGuard ng;
    const auto y = m->forward(x);
    const double err = rel_err(y, ref);
    INFO("w8a8 relative logit error " << err);
    CHECK(err > 0);     // quantization happened
    CHECK(err < 0.1);   // and at 8 bits stays close
  }
}

TEST_CASE("tiny residual net: BRECQ reconstructs its blocks", "[onnx][quantize]") {
  auto m = tiny();
  quant::apply_bn_fold(*m, 0);
  quant::AlgorithmContext ctx;
  ctx.profile = &quant::profile_registry().get("academic");
  ctx.w_bits = 3;
  ctx.a_bits = 4;
  ctx.calib_images = images(64, 2, 16);
  ctx.calib_batch_size = 32;
  qbench::ptq::ReconParams rp = qbench::ptq::recon_options().defaults();
  rp.iters = 200;
  rp.batch_size = 16;
  rp.lr = 1e-2;
  const auto units = qbench::ptq::recon_units(*m, qbench::ptq::ReconMode::Brecq);
  // stem conv (the first layer, kept as is), the two blocks, fc
  REQUIRE(units.size() == 4);
  CHECK(units[0].skipped);
  CHECK(units[1].is_block);
  CHECK(units[1].name == "layer1_0");
  CHECK(units[1].layers.size() == 2);
  CHECK(units[2].name == "layer1_1");
  CHECK(units[2].layers.size() == 3);
  CHECK_FALSE(units[3].is_block);
  qbench::ptq::prepare_for_reconstruction(*m, ctx, rp.mse_p);
  const auto res = qbench::ptq::reconstruct(*m, ctx, qbench::ptq::ReconMode::Brecq, rp);
  REQUIRE(res.size() == 3);
  for (const auto& r : res) {
    INFO(r.name);
    CHECK(r.final_loss < r.initial_loss);
  }
}

TEST_CASE("tiny residual net: integer lowering on oneDNN agrees with the simulation", "[onnx][quantize]") {
  REQUIRE(qbench::deploy::engine_available("onednn"));  // Debian's LibTorch has it
  auto m = tiny();
  quant::AlgorithmContext ctx;
  ctx.profile = &quant::profile_registry().get("x86-onednn");
  quant::apply_bn_fold(*m, 0);
  ctx.calib_images = images(64, 3, 16);
  ctx.calib_batch_size = 32;
  qbench::ptq::MinMaxCalibration().apply(*m, ctx);
  const auto x = images(16, 9, 16);
  at::Tensor sim;
  {
    at::NoGradGuard ng;
    sim = m->forward(x);
  }
  auto lowered = qbench::deploy::lower(*m, *ctx.profile, ctx.calib_images, 32);
  at::NoGradGuard ng;
  const auto y = lowered->forward(x);
  const double cos = at::cosine_similarity(y.flatten(), sim.flatten(), 0).item<double>();
  INFO("cosine " << cos);
  CHECK(cos > 0.99);
}

TEST_CASE("weights round-trip through safetensors and train: true draws fresh weights that train",
          "[onnx][quantize]") {
  const std::string dir = QBENCH_TEST_TMP;
  std::system(("mkdir -p " + dir).c_str());
  const auto x = input(), ref = torch_logits();
  auto m = resnet18("bn");
  qbench::models::export_weights(*m, dir + "/resnet18_onnx.safetensors");
  at::manual_seed(0);
  auto fresh = resnet18("bn", /*use_initializers=*/false);
  {
    at::NoGradGuard ng;
    CHECK(rel_err(fresh->forward(x), ref) > 0.1);  // not the file's weights
  }
  qbench::models::import_weights(*fresh, dir + "/resnet18_onnx.safetensors");
  {
    at::NoGradGuard ng;
    CHECK(rel_err(fresh->forward(x), ref) <= 1e-4);
  }
  // The same seed draws the same fresh weights.
  at::manual_seed(5);
  auto a = tiny(false);
  at::manual_seed(5);
  auto b = tiny(false);
  for (const auto& p : a->named_parameters(true)) CHECK(at::equal(p.value(), b->named_parameters(true)[p.key()]));
  // And they train: a few SGD steps lower the loss on a fixed batch.
  at::manual_seed(7);
  auto t = tiny(false);
  t->train();
  torch::optim::SGD opt(t->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto xb = images(32, 4, 16);
  const auto labels = at::randint(0, 10, {32}, at::make_generator<at::CPUGeneratorImpl>(5));
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) {
    opt.zero_grad();
    auto loss = at::cross_entropy_loss(t->forward(xb), labels);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  CHECK(last < first);
}

TEST_CASE("tiny residual net: every QAT method attaches, initialises and takes a training step", "[onnx][quantize]") {
  const auto& reg = qbench::qat::qat_method_registry();
  const auto x = images(32, 11, 16);
  const auto labels = at::randint(0, 10, {32}, at::make_generator<at::CPUGeneratorImpl>(12));
  int methods = 0;
  for (const auto& name : reg.names()) {
    INFO(name);
    auto m = tiny();
    quant::apply_bn_fold(*m, 1);  // folded on the fly, gamma and beta train
    const auto& profile = quant::profile_registry().get("academic");
    CHECK(qbench::qat::attach_qat_quantizers(*m, reg.get(name), profile, 4, 4) == 14);  // 7 layers x (weight, input)
    qbench::qat::init_quantizers(*m, x, 32);
    m->train();
    std::vector<at::Tensor> params = m->parameters();
    for (auto* q : m->quantizers())
      for (auto& p : q->quant_parameters()) params.push_back(p);
    torch::optim::SGD opt(params, torch::optim::SGDOptions(0.01));
    auto loss = at::cross_entropy_loss(m->forward(x), labels);
    opt.zero_grad();
    loss.backward();
    const auto& w = m->quant_layers()[1].layer->weight_tensor();
    REQUIRE(w.grad().defined());
    CHECK(w.grad().abs().sum().item<double>() > 0);
    opt.step();
    CHECK(std::isfinite(loss.item<double>()));
    ++methods;
  }
  CHECK(methods == 7);  // lsq, lsq+, pact, dsq, dorefa, apot, qil
}
