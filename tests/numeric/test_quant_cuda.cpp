// The quantizers on a CUDA device against the same quantizers on the CPU: forward values and
// every gradient (input and learnable parameters). Needs a GPU: without one (CI, the build
// machine) each test returns at once with a warning.
#include <cstdlib>
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qbench/quant/fake_quant.h"
#include "qbench/quant/observer.h"
#include "qbench/qat/method.h"
#include "qbench/quant/quantizer.h"

#include "cuda_util.h"
#include "scheme_util.h"

using namespace qbench::quant;
using namespace qbench::qat;

namespace {

using qbench::test::have_cuda;

/// max |a - b| <= atol + rtol * max |b|, both brought to the CPU.
void check_close(const at::Tensor& got, const at::Tensor& want, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(got.defined() == want.defined());
  if (!want.defined()) return;
  const auto g = got.detach().to(at::kCPU, at::kDouble), w = want.detach().to(at::kCPU, at::kDouble);
  REQUIRE(g.sizes() == w.sizes());
  const double diff = (g - w).abs().max().item<double>();
  const double scale = w.numel() ? w.abs().max().item<double>() : 0.0;
  INFO("max |diff| " << diff << ", max |cpu| " << scale);
  CHECK(diff <= atol + rtol * scale);
}

/// As check_close, but up to 0.1% of the elements may differ: an element sitting on a rounding
/// tie can land one step away when x / s is computed as x * (1 / s) (CUDA's division by a scalar)
/// or s is an ulp off, while the CPU runs the fused kernels.
void check_close_most(const at::Tensor& got, const at::Tensor& want, double rtol, double atol, const std::string& what) {
  INFO(what);
  const auto g = got.detach().to(at::kCPU, at::kDouble), w = want.detach().to(at::kCPU, at::kDouble);
  REQUIRE(g.sizes() == w.sizes());
  const double scale = w.numel() ? w.abs().max().item<double>() : 0.0;
  const int64_t off = ((g - w).abs() > atol + rtol * scale).sum().item<int64_t>();
  INFO(off << " of " << w.numel() << " elements beyond tolerance");
  CHECK(off * 1000 <= w.numel());
}

/// Initialises a quantizer on `x` (observe, compute, quantize), then runs forward and backward of
/// sum(y * w) with x requiring grad. Returns {y, dx, grads of quant_parameters()...}.
std::vector<at::Tensor> run(FakeQuantizer& q, const at::Tensor& x, const at::Tensor& w) {
  q.set_observing(true);
  q.forward(x);
  q.set_observing(false);
  q.compute_qparams();
  q.set_quantizing(true);
  auto xi = x.detach().clone().set_requires_grad(true);
  auto y = q.forward(xi);
  (y * w).sum().backward();
  std::vector<at::Tensor> out{y.detach(), xi.grad()};
  for (auto& p : q.quant_parameters()) out.push_back(p.grad());
  return out;
}

void compare_on_cuda(const std::function<std::shared_ptr<FakeQuantizer>()>& make, const at::Tensor& x,
                     const std::string& what) {
  at::manual_seed(11);
  const auto w = at::randn(x.sizes());
  auto q_cpu = make();
  auto q_cuda = make();
  q_cuda->to(at::Device("cuda:0"));
  const auto cpu = run(*q_cpu, x, w);
  const auto cuda = run(*q_cuda, x.to(at::Device("cuda:0")), w.to(at::Device("cuda:0")));
  REQUIRE(cpu.size() == cuda.size());
  CHECK(cuda[0].device().is_cuda());
  // Element-wise results within 1e-5; parameter gradients are sums over every element, added in
  // another order on the GPU, so they get a relative 1e-4.
  check_close_most(cuda[0], cpu[0], 1e-5, 1e-5, what + ": forward");
  check_close_most(cuda[1], cpu[1], 1e-5, 1e-5, what + ": input gradient");
  for (std::size_t i = 2; i < cpu.size(); ++i)
    check_close(cuda[i], cpu[i], 1e-4, 1e-5, what + ": gradient of learnable parameter " + std::to_string(i - 2));
  auto qp_cpu = q_cpu->affine_qparams(), qp_cuda = q_cuda->affine_qparams();
  REQUIRE(qp_cpu.has_value() == qp_cuda.has_value());
  if (qp_cpu) {
    check_close(qp_cuda->scale, qp_cpu->scale, 1e-5, 0.0, what + ": affine scale");
    CHECK(at::equal(qp_cuda->zero_point.to(at::kCPU), qp_cpu->zero_point.to(at::kCPU)));
  }
}

}  // namespace

TEST_CASE("CUDA: every QAT quantizer's forward and gradients equal the CPU's within 1e-5", "[cuda][qat]") {
  if (!have_cuda()) return;
  at::manual_seed(5);
  const auto weight = at::randn({8, 4, 3, 3}) * 0.2;
  const auto act = at::relu(at::randn({4, 8, 6, 6}));
  const auto signed_act = at::randn({4, 8, 6, 6});
  for (const auto& [name, method] : qat_method_registry().entries()) {
    for (int bits : {4, 8}) {
      const auto ws = qbench::test::test_scheme(bits, Signedness::Signed);
      const auto as = qbench::test::test_scheme(bits, Signedness::Auto);
      compare_on_cuda([&] { return method.make_weight(ws); }, weight, name + " weight " + std::to_string(bits) + "-bit");
      compare_on_cuda([&] { return method.make_activation(as); }, act, name + " activation " + std::to_string(bits) + "-bit");
      compare_on_cuda([&] { return method.make_activation(as); }, signed_act,
                      name + " signed activation " + std::to_string(bits) + "-bit");
    }
  }
}

TEST_CASE("CUDA: observer-calibrated fake quantization equals the CPU's", "[cuda][ptq]") {
  if (!have_cuda()) return;
  at::manual_seed(6);
  const auto weight = at::randn({8, 4, 3, 3}) * 0.2;
  const auto act = at::randn({4, 8, 6, 6});
  for (const auto& [name, entry] : observer_registry().entries()) {
    for (bool per_channel : {false, true}) {
      const auto s = qbench::test::test_scheme(4, Signedness::Signed, per_channel);
      const auto& make_obs = entry.make;
      compare_on_cuda([&] { return std::make_shared<QuantizerImpl>(s, make_obs(s)); }, per_channel ? weight : act,
                      name + (per_channel ? " per-channel weight" : " per-tensor activation"));
    }
  }
}

TEST_CASE("CUDA: a calibrated quantizer moved between devices keeps its parameters with it", "[cuda][ptq]") {
  if (!have_cuda()) return;
  const auto s = qbench::test::test_scheme(8, Signedness::Signed, true);
  auto q = std::make_shared<QuantizerImpl>(s, observer_registry().get("minmax").make(s));
  const auto w = at::randn({8, 4, 3, 3});
  q->set_observing(true);
  q->forward(w);
  q->set_observing(false);
  q->compute_qparams();
  q->set_quantizing(true);
  const auto ref = q->forward(w);
  q->to(at::Device("cuda:0"));
  CHECK(q->qparams().scale.device().is_cuda());
  check_close(q->forward(w.to(at::Device("cuda:0"))), ref, 0.0, 1e-6, "after the move to CUDA");
  q->set_qparams(q->qparams());  // re-set (reconstruction does this) and back to the CPU
  q->to(at::Device(at::kCPU));
  CHECK(q->qparams().scale.device().is_cpu());
  CHECK(at::equal(q->forward(w), ref));
}

TEST_CASE("a calibrated quantizer's qparams are its buffers, so Module::to moves them", "[quant][device]") {
  // Runs everywhere: the property that lets a GPU run move calibrated models (and lib/deploy move
  // them back to the CPU) without leaving a scale behind on the old device.
  const auto s = qbench::test::test_scheme(8, Signedness::Signed, true);
  QuantizerImpl q(s, observer_registry().get("minmax").make(s));
  q.set_observing(true);
  q.forward(at::randn({8, 4, 3, 3}));
  q.set_observing(false);
  q.compute_qparams();
  auto buffers = q.named_buffers(false);
  CHECK(q.qparams().scale.unsafeGetTensorImpl() == buffers["scale"].unsafeGetTensorImpl());
  CHECK(q.qparams().zero_point.unsafeGetTensorImpl() == buffers["zero_point"].unsafeGetTensorImpl());
  QParams changed = q.qparams();
  changed.scale = changed.scale * 2.0;
  q.set_qparams(changed);  // a second set (reconstruction's learned steps) keeps the link
  buffers = q.named_buffers(false);
  CHECK(q.qparams().scale.unsafeGetTensorImpl() == buffers["scale"].unsafeGetTensorImpl());
  CHECK(at::equal(buffers["scale"], changed.scale));
}
