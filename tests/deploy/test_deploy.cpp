// Integer deployment (lib/deploy): a lowered network against its fake-quant twin under both
// quantized engines, one conv's int8 output against the fake-quant conv, and the cases that must
// refuse to lower.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/data/dataset.h"
#include "qbench/deploy/deploy.h"
#include "qbench/models/models.h"
#include "qbench/qat/qat.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/qat/method.h"

using namespace qbench;

namespace {

struct EngineCase {
  const char* profile;
  const char* engine;
};
const std::vector<EngineCase> kEngines = {{"x86-onednn", "onednn"}, {"qnnpack", "qnnpack"}};

at::Tensor images(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  // Fashion-MNIST-like: a non-negative blob on a constant background, normalised.
  auto x = at::rand({n, 1, 28, 28}, gen);
  return ((x * x * 3.0) - 0.8).contiguous();
}

/// `arch` with its BN folded and quantizers calibrated (min/max) under `profile`, eval mode.
std::shared_ptr<quant::QuantModel> calibrated(const std::string& arch, const std::string& profile, int w_bits,
                                              int a_bits, const at::Tensor& calib, const std::string& qat_method = "",
                                              bool fold = true) {
  auto m = models::random_model(arch, {}, 7);  // 1x28x28, 10 classes
  const auto& prof = quant::profile_registry().get(profile);
  if (fold) quant::apply_bn_fold(*m, prof.bn_fold);
  if (qat_method.empty()) {
    quant::PrepareOptions o;
    o.w_bits = w_bits;
    o.a_bits = a_bits;
    quant::prepare_model(*m, prof, o);
  } else {
    const auto& meth = qat::qat_method_registry().get(qat_method);
    qat::attach_qat_quantizers(*m, meth, prof, w_bits, a_bits);  // as the QAT runner attaches them
  }
  quant::calibrate(*m, calib, calib.size(0));
  return m;
}

quant::QConv2dImpl* conv_named(quant::QuantModel& m, const std::string& name) {
  for (auto& ref : m.quant_layers())
    if (ref.name == name) return dynamic_cast<quant::QConv2dImpl*>(ref.layer);
  FAIL("no layer " << name);
  return nullptr;
}

struct Cmp {
  double mean_cos, min_cos, agree_pct;
};

/// Compares float logits computed here, independently of deploy::compare.
Cmp compare_logits(const at::Tensor& sim, const at::Tensor& dep) {
  auto cos = (sim * dep).sum(1) / (sim.norm(2, {1}) * dep.norm(2, {1}));
  return {cos.mean().item<double>(), cos.min().item<double>(),
          100.0 * sim.argmax(1).eq(dep.argmax(1)).to(at::kDouble).mean().item<double>()};
}

}  // namespace

TEST_CASE("deploy: engines present in this build", "[deploy]") {
  CHECK_FALSE(deploy::engine_available("fbgemm-that-is-not-there"));
  CHECK_FALSE(deploy::engine_available("none"));
  // Debian's LibTorch has both (hardware-profiles.md); say so when a build lacks one.
  for (const auto& e : kEngines)
    if (!deploy::engine_available(e.engine)) WARN("engine " << e.engine << " absent: its deploy tests skip");
}

TEST_CASE("deploy: lowered resnet8 (w8a8) matches its fake-quant twin on both engines", "[deploy]") {
  at::set_num_threads(1);
  const auto calib = images(128, 1), test = images(256, 2);
  for (const auto& e : kEngines) {
    if (!deploy::engine_available(e.engine)) continue;
    DYNAMIC_SECTION(e.profile) {
      auto m = calibrated("resnet8", e.profile, 8, 8, calib);
      at::Tensor sim;
      {
        at::NoGradGuard ng;
        sim = m->forward(test);
      }
      const auto& prof = quant::profile_registry().get(e.profile);
      auto low = deploy::lower(*m, prof, calib);
      REQUIRE(low->engine() == e.engine);
      auto dep = low->forward(test);
      REQUIRE_FALSE(dep.is_quantized());
      REQUIRE(dep.sizes() == sim.sizes());
      const auto c = compare_logits(sim, dep);
      INFO("mean cosine " << c.mean_cos << " min " << c.min_cos << " agreement " << c.agree_pct);
      CHECK(c.mean_cos > 0.999);
      CHECK(c.min_cos > 0.99);
      CHECK(c.agree_pct >= 99.0);

      // Every conv and add really ran as a quantized operator with the quantizers' qparams.
      int convs = 0, adds = 0;
      for (const auto& n : low->nodes()) {
        if (n.kind == "conv2d") {
          ++convs;
          CHECK(n.op.rfind("quantized::conv2d", 0) == 0);
        }
        if (n.kind == "add") {
          ++adds;
          CHECK(n.op.rfind("quantized::add", 0) == 0);
        }
      }
      CHECK(convs == 9);  // stem, 2 per block, 2 downsamples
      CHECK(adds == 3);
      // The add's output grid is its own output quantizer's.
      for (auto& ref : m->adds()) {
        auto qp = ref.add->output_quantizer()->affine_qparams();
        REQUIRE(qp);
        for (const auto& n : low->nodes())
          if (n.name == ref.name) {
            CHECK(n.out_scale == Approx(qp->scale.item<double>()).epsilon(1e-7));
            CHECK(n.out_zero_point == qp->zero_point.item<int64_t>() - qp->range.qmin);
          }
      }

      // deploy::compare on a dataset view of the same images agrees with the figures above.
      data::TensorDataset td{"random", test, sim.argmax(1).to(at::kLong), 10};
      auto ds = std::make_shared<data::InMemoryDataset>(td);
      auto a = deploy::compare(*m, *low, *ds, 100);
      CHECK(a.images == 256);
      CHECK(a.agreement == Approx(c.agree_pct).margin(1e-9));
      CHECK(a.logit_cosine == Approx(c.mean_cos).margin(1e-6));
      CHECK(a.sim_top1 == Approx(100.0));  // the labels are the simulation's own predictions
      CHECK(a.deploy_top1 == Approx(a.agreement));
      CHECK(a.sqnr_db > 35.0);
      WARN(e.engine << ": agreement " << a.agreement << "%, logit cosine " << a.logit_cosine << ", SQNR "
                    << a.sqnr_db << " dB over " << a.images << " images");
      REQUIRE(a.layers.size() >= 12);  // all 9 convs, 3 adds and the fc
      CHECK(a.layers.front().name == "conv1");
      CHECK(a.layers.front().section == "deploy_layers");
      for (const auto& row : a.layers) {
        INFO(row.name << ": " << row.text);
        if (row.values.count("op_max_err_steps")) CHECK(row.values.at("op_max_err_steps") <= 1.0 + 1e-4);
      }

      // restore(): the fake-quant model again, bit for bit.
      low->restore();
      {
        at::NoGradGuard ng;
        CHECK(at::equal(m->forward(test), sim));
      }
    }
  }
}

TEST_CASE("deploy: one conv's int8 output is the fake-quant conv's output within one step", "[deploy]") {
  at::set_num_threads(1);
  const auto calib = images(64, 3);
  for (const auto& e : kEngines) {
    if (!deploy::engine_available(e.engine)) continue;
    DYNAMIC_SECTION(e.profile) {
      auto m = calibrated("resnet8", e.profile, 8, 8, calib);
      auto* conv = conv_named(*m, "layer1.0.conv1");  // conv + folded BN + ReLU, consumed by layer1.0.conv2
      auto* next = conv_named(*m, "layer1.0.conv2");
      const auto qp = next->input_quantizer()->affine_qparams();
      REQUIRE(qp);
      const double step = qp->scale.item<double>();
      // An input like the stem's ReLU output, on and off the input quantizer's grid.
      auto x = (at::rand({8, 16, 28, 28}, at::detail::createCPUGenerator(5)) * 2.0).contiguous();
      at::Tensor ref;
      {
        at::NoGradGuard ng;
        ref = quant::fake_quantize(conv->forward_fused(x), *qp);  // what conv2 sees in the simulation
      }
      auto low = deploy::lower(*m, quant::profile_registry().get(e.profile), calib);
      at::globalContext().setQEngine(std::string(e.engine) == "onednn" ? at::QEngine::ONEDNN : at::QEngine::QNNPACK);
      at::Tensor y;
      {
        at::NoGradGuard ng;
        y = conv->forward_fused(x);  // the deploy hook: quantized::conv2d_relu
      }
      REQUIRE(y.is_quantized());
      CHECK(y.scalar_type() == at::kQUInt8);
      CHECK(y.q_scale() == Approx(step).epsilon(1e-7));
      CHECK(y.q_zero_point() == qp->zero_point.item<int64_t>());
      auto err = (y.dequantize() - ref).abs();
      const double max_steps = err.max().item<double>() / step;
      const double exact = (err < 1e-6 * step + 1e-9).to(at::kDouble).mean().item<double>();
      INFO("max error " << max_steps << " steps, " << 100 * exact << "% identical");
      CHECK(max_steps <= 1.0 + 1e-4);
      CHECK(exact > 0.95);
    }
  }
}

TEST_CASE("deploy: low bit widths run in int8 kernels holding 4-bit values", "[deploy]") {
  at::set_num_threads(1);
  if (!deploy::engine_available("onednn")) return;
  const auto calib = images(128, 4), test = images(128, 5);
  auto m = calibrated("resnet8", "x86-onednn", 4, 4, calib);
  at::Tensor sim;
  {
    at::NoGradGuard ng;
    sim = m->forward(test);
  }
  auto low = deploy::lower(*m, quant::profile_registry().get("x86-onednn"), calib);
  bool narrow = false;
  for (const auto& n : low->nodes()) narrow = narrow || (n.kind != "linear" && n.out_qmax == 15);
  CHECK(narrow);
  const auto c = compare_logits(sim, low->forward(test));
  INFO("mean cosine " << c.mean_cos << " agreement " << c.agree_pct);
  CHECK(c.mean_cos > 0.99);
  CHECK(c.agree_pct >= 95.0);
}

TEST_CASE("deploy: what cannot lower throws, naming the reason", "[deploy]") {
  at::set_num_threads(1);
  const auto calib = images(32, 6);
  using Catch::Matchers::Contains;
  if (!deploy::engine_available("onednn")) return;
  const auto& x86 = quant::profile_registry().get("x86-onednn");

  SECTION("a profile without an engine") {
    auto m = calibrated("resnet8", "academic", 8, 8, calib);
    CHECK_THROWS_WITH(deploy::lower(*m, quant::profile_registry().get("academic"), calib),
                      Contains("names no integer engine"));
  }
  SECTION("BatchNorm left unfolded") {
    auto m = calibrated("resnet8", "x86-onednn", 8, 8, calib, "", /*fold=*/false);
    CHECK_THROWS_WITH(deploy::lower(*m, x86, calib), Contains("conv1") && Contains("not folded"));
  }
  SECTION("APoT weights are not affine") {
    auto m = calibrated("resnet8", "x86-onednn", 4, 4, calib, "apot");
    CHECK_THROWS_WITH(deploy::lower(*m, x86, calib), Contains("not affine") && Contains("conv1"));
  }
  SECTION("DSQ is not affine either") {
    auto m = calibrated("resnet8", "x86-onednn", 4, 4, calib, "dsq");
    CHECK_THROWS_WITH(deploy::lower(*m, x86, calib), Contains("deploy:"));
  }
  SECTION("float activations (a32) have no integer conv") {
    auto m = calibrated("resnet8", "x86-onednn", 8, 32, calib);
    CHECK_THROWS_WITH(deploy::lower(*m, x86, calib), Contains("no activation quantizer"));
  }
  SECTION("uncalibrated quantizers") {
    at::manual_seed(7);
    auto m = models::make_model("resnet8", {1, 10, 28});
    m->eval();
    quant::apply_bn_fold(*m, 0);
    quant::prepare_model(*m, x86, {});
    CHECK_THROWS_WITH(deploy::lower(*m, x86, calib), Contains("not quantizing"));
  }
  SECTION("no calibration images") {
    auto m = calibrated("resnet8", "x86-onednn", 8, 8, calib);
    CHECK_THROWS_WITH(deploy::lower(*m, x86, at::Tensor()), Contains("calibration images"));
  }
  SECTION("a thrown lowering leaves the model as it was") {
    auto m = calibrated("resnet8", "x86-onednn", 8, 32, calib);
    at::Tensor before, after;
    at::NoGradGuard ng;
    before = m->forward(calib);
    CHECK_THROWS_AS(deploy::lower(*m, x86, calib), Error);
    after = m->forward(calib);
    CHECK(at::equal(before, after));
  }
}

TEST_CASE("deploy: mobilenetv2 (ReLU6, depthwise, linear bottlenecks) lowers and agrees", "[deploy]") {
  at::set_num_threads(1);
  if (!deploy::engine_available("onednn")) return;
  const auto calib = images(64, 8), test = images(64, 9);
  models::ModelSpec spec;
  spec.width = 0.5;
  spec.stem = models::Stem::Small;
  auto m = models::random_model("mobilenetv2", spec, 7);
  {
    // torchvision's classifier init N(0, 0.01) leaves random-weight logits nearly tied; spread them.
    at::NoGradGuard ng;
    auto& fc = *dynamic_cast<quant::QLinearImpl*>(m->quant_layers().back().layer);
    fc.weight.normal_(0, 1.0 / std::sqrt(static_cast<double>(fc.weight.size(1))));
  }
  const auto& prof = quant::profile_registry().get("x86-onednn");
  quant::apply_bn_fold(*m, prof.bn_fold);
  quant::prepare_model(*m, prof, {});
  quant::calibrate(*m, calib, calib.size(0));
  at::Tensor sim;
  {
    at::NoGradGuard ng;
    sim = m->forward(test);
  }
  auto low = deploy::lower(*m, prof, calib);
  // The head conv feeds average pooling, not a quantizer: its grid comes from an output observer.
  bool observed = false;
  for (const auto& n : low->nodes()) observed = observed || n.out_source.find("observer") != std::string::npos;
  CHECK(observed);
  const auto c = compare_logits(sim, low->forward(test));
  INFO("mean cosine " << c.mean_cos << " agreement " << c.agree_pct);
  CHECK(c.mean_cos > 0.99);
  CHECK(c.agree_pct >= 95.0);
}
