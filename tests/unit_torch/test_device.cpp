// Device placement (`qbench run --device`): resolution against this LibTorch, the provenance it
// records, device-independent checkpoints, and on a GPU (skipped without one) the pipeline's
// pieces on CUDA against the CPU.
#include <cstdlib>
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/deploy/deploy.h"
#include "qbench/models/models.h"
#include "qbench/ptq/recon.h"
#include "qbench/quant/device.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/runner/device.h"
#include "qbench/runner/runner.h"
#include "qbench/train/train.h"
#include "cuda_util.h"
#include "test_util.h"

using namespace qbench;

namespace {

using qbench::test::have_cuda;

/// A learnable toy problem (class = which quadrant is bright), as the training test uses.
data::TensorDataset toy_data(int64_t n) {
  at::manual_seed(3);
  data::TensorDataset ds;
  ds.images = at::randn({n, 1, 28, 28}) * 0.1;
  ds.labels = at::randint(0, 4, {n}, at::kLong);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = ds.labels[i].item<int64_t>();
    ds.images[i][0].narrow(0, (c / 2) * 14, 14).narrow(1, (c % 2) * 14, 14).add_(2.0);
  }
  ds.num_classes = 4;
  return ds;
}

std::shared_ptr<quant::QuantModel> toy_model(uint64_t seed = 0) {
  at::manual_seed(seed);
  return models::make_model("resnet8-w0.5", {1, 4, 28});
}

torch::optim::SGD make_sgd(quant::QuantModel& m) {
  return torch::optim::SGD(m.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
}

/// A few SGD steps so the optimizer holds momentum buffers.
void steps(quant::QuantModel& m, torch::optim::SGD& opt, const data::TensorDataset& ds, int n) {
  const auto device = quant::module_device(m);
  m.train();
  for (int i = 0; i < n; ++i) {
    opt.zero_grad();
    auto x = ds.images.narrow(0, i * 16, 16).to(device);
    auto y = ds.labels.narrow(0, i * 16, 16).to(device);
    train::smoothed_cross_entropy(m.forward(x), y, 0.1).backward();
    opt.step();
  }
  m.eval();
}

void check_same_state(quant::QuantModel& a, quant::QuantModel& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& item : pa) {
    INFO(item.key());
    CHECK(at::equal(item.value().detach().to(at::kCPU), pb[item.key()].detach().to(at::kCPU)));
  }
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& item : ba) {
    INFO(item.key());
    CHECK(at::equal(item.value().to(at::kCPU), bb[item.key()].to(at::kCPU)));
  }
}

}  // namespace

TEST_CASE("select_device: cpu is the default, auto falls back to it, cuda needs a visible device", "[device]") {
  CHECK(runner::select_device("cpu") == at::Device(at::kCPU));
  CHECK(runner::RunOptions{}.device == "cpu");
  CHECK_THROWS_AS(runner::select_device("gpu"), ConfigError);
  if (torch::cuda::is_available()) {
    CHECK(runner::select_device("auto") == at::Device("cuda:0"));
    CHECK(runner::select_device("cuda") == at::Device("cuda:0"));
  } else {
    CHECK(runner::select_device("auto") == at::Device(at::kCPU));
    CHECK_THROWS_WITH(runner::select_device("cuda"),
                      Catch::StartsWith("--device cuda: CUDA is not available (this LibTorch build has no CUDA support"));
    CHECK_THROWS_AS(runner::select_device("cuda:1"), ConfigError);
  }
}

TEST_CASE("the device is described in the environment JSON", "[device]") {
  const auto cpu = runner::describe_device(at::Device(at::kCPU));
  CHECK(cpu.name == "cpu");
  CHECK(cpu.label() == "cpu");
  CHECK(cpu.gpu_name.empty());
  const auto env = nlohmann::json::parse(runner::environment_json(1));
  CHECK(env.at("device") == "cpu");
  CHECK(env.at("intra_op_threads") == 1);
  CHECK(env.at("cuda_device_count").get<int64_t>() == static_cast<int64_t>(cpu.cuda_device_count));
  CHECK_FALSE(env.contains("gpu"));
  runner::DeviceInfo gpu{"cuda:0", "NVIDIA H100 80GB HBM3", 1};
  CHECK(gpu.label() == "cuda:0 (NVIDIA H100 80GB HBM3)");
  gpu.gpu_name.clear();
  CHECK(gpu.label() == "cuda:0");
}

TEST_CASE("module_device follows Module::to and attach places quantizers on the model's device", "[device]") {
  auto m = toy_model();
  CHECK(quant::module_device(*m) == at::Device(at::kCPU));
  quant::PrepareOptions opt;
  opt.w_bits = opt.a_bits = 4;
  quant::prepare_model(*m, quant::profile_registry().get("academic"), opt);
  for (auto* q : m->quantizers()) CHECK(quant::module_device(*q) == at::Device(at::kCPU));
  const auto x = at::randn({2, 1, 28, 28});
  CHECK(quant::on_device(x, at::Device(at::kCPU)).unsafeGetTensorImpl() == x.unsafeGetTensorImpl());  // no copy
}

TEST_CASE("save_checkpoint writes Module::save's layout with CPU tensors, and load_checkpoint restores exactly",
          "[device][train]") {
  const auto ds = toy_data(64);
  auto m = toy_model();
  auto opt = make_sgd(*m);
  steps(*m, opt, ds, 2);
  auto dir = test::scratch_dir("device_ckpt");
  const std::string path = (dir / "epoch_1.pt").string();
  train::save_checkpoint(*m, opt, path);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  // After the 80-byte qbench header, the "model" archive is what Module::save writes: Module::load
  // reads it.
  {
    std::ifstream f(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 80);
    CHECK(bytes.compare(0, 8, "QBCKPT01") == 0);
    torch::serialize::InputArchive root, mod;
    root.load_from(bytes.data() + 80, bytes.size() - 80);
    root.read("model", mod);
    auto m2 = toy_model(99);
    m2->load(mod);
    check_same_state(*m, *m2);
  }
  // load_checkpoint restores model and optimizer: the next steps are identical.
  auto m3 = toy_model(7);
  auto opt3 = make_sgd(*m3);
  train::load_checkpoint(*m3, opt3, path);
  check_same_state(*m, *m3);
  steps(*m, opt, ds, 2);
  steps(*m3, opt3, ds, 2);
  check_same_state(*m, *m3);
}

TEST_CASE("augment_batch keeps the batch's device and its values", "[device][train]") {
  const auto x = at::randn({3, 1, 8, 8});
  const auto a = train::augment_batch(x, 42);
  CHECK(a.device().is_cpu());
  CHECK(at::equal(a, train::augment_batch(x, 42)));
  if (!torch::cuda::is_available()) return;
  const auto g = train::augment_batch(x.to(at::Device("cuda:0")), 42);
  CHECK(g.device().is_cuda());
  CHECK(at::equal(g.to(at::kCPU), a));
}

// ---------------------------------------------------------------------------------------------
// CUDA only

TEST_CASE("CUDA: a model, its quantizers and a training step on the GPU match the CPU", "[device][cuda]") {
  if (!have_cuda()) return;
  const at::Device cuda("cuda:0");
  runner::configure_device(cuda);  // no TF32: FP32 convolutions on both
  const auto ds = toy_data(64);
  auto cpu = toy_model(), gpu = toy_model();
  gpu->to(cuda);
  CHECK(quant::module_device(*gpu) == cuda);
  const auto x = ds.images.narrow(0, 0, 16);
  gpu->eval();
  cpu->eval();
  {
    at::NoGradGuard ng;
    const auto ref = cpu->forward(x);
    const auto d = (gpu->forward(x.to(cuda)).to(at::kCPU) - ref).abs().max().item<double>();
    // Relative: cuDNN may pick Winograd/FFT convolutions (about 1e-5 relative).
    CHECK(d <= 1e-4 * std::max(1.0, ref.abs().max().item<double>()));
  }
  // Quantizers attach on the model's device; calibration takes CPU images.
  quant::PrepareOptions opt;
  opt.w_bits = opt.a_bits = 8;
  const auto& prof = quant::profile_registry().get("academic");
  quant::prepare_model(*cpu, prof, opt);
  quant::prepare_model(*gpu, prof, opt);
  for (auto* q : gpu->quantizers()) CHECK(quant::module_device(*q) == cuda);
  quant::calibrate(*cpu, ds.images, 32);
  quant::calibrate(*gpu, ds.images, 32);
  for (auto* q : gpu->quantizers()) CHECK(q->affine_qparams()->scale.device().is_cuda());
  const auto ev_cpu = train::evaluate(*cpu, ds, 32), ev_gpu = train::evaluate(*gpu, ds, 32);
  CHECK(ev_gpu.top1 == Approx(ev_cpu.top1).margin(100.0 * 2 / 64));  // at most 2 of 64 predictions differ
  const auto lat = train::measure_latency(*gpu, x, 1, 3);
  CHECK(lat.p50_ms > 0);
  CHECK(lat.batch == 16);
}

TEST_CASE("CUDA: checkpoints written on the GPU hold CPU tensors and load on either device", "[device][cuda]") {
  if (!have_cuda()) return;
  const at::Device cuda("cuda:0");
  const auto ds = toy_data(64);
  auto m = toy_model();
  m->to(cuda);
  auto opt = make_sgd(*m);
  steps(*m, opt, ds, 2);
  auto dir = test::scratch_dir("device_ckpt_cuda");
  const std::string path = (dir / "epoch_1.pt").string();
  train::save_checkpoint(*m, opt, path);
  for (auto& p : m->parameters()) CHECK(p.device().is_cuda());  // the model stays where it was
  {
    torch::serialize::InputArchive root, mod;
    root.load_from(path);  // no device: the tensors as written
    root.read("model", mod);
    auto probe = toy_model(9);
    probe->load(mod);
    for (auto& p : probe->parameters()) CHECK(p.device().is_cpu());
    check_same_state(*m, *probe);
  }
  auto on_cpu = toy_model(9);
  auto opt_cpu = make_sgd(*on_cpu);
  train::load_checkpoint(*on_cpu, opt_cpu, path);
  check_same_state(*m, *on_cpu);
  auto on_gpu = toy_model(9);
  on_gpu->to(cuda);
  auto opt_gpu = make_sgd(*on_gpu);
  train::load_checkpoint(*on_gpu, opt_gpu, path);
  for (auto& p : on_gpu->parameters()) CHECK(p.device().is_cuda());
  check_same_state(*m, *on_gpu);
}

TEST_CASE("CUDA: QDrop's drop mask is drawn on the CPU, the same on every device", "[device][cuda]") {
  if (!have_cuda()) return;
  const at::Device cuda("cuda:0");
  const auto q = at::zeros({4, 8, 5, 5}), x = at::ones({4, 8, 5, 5});
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(123), g2 = at::make_generator<at::CPUGeneratorImpl>(123);
  const auto on_cpu = ptq::drop_mix(q, x, 0.5, g1);
  const auto on_gpu = ptq::drop_mix(q.to(cuda), x.to(cuda), 0.5, g2);
  CHECK(on_gpu.device().is_cuda());
  CHECK(at::equal(on_gpu.to(at::kCPU), on_cpu));
}

TEST_CASE("CUDA: integer lowering moves a GPU model to the CPU", "[device][cuda]") {
  if (!have_cuda()) return;
  if (!deploy::engine_available("onednn")) return;
  const at::Device cuda("cuda:0");
  const auto ds = toy_data(64);
  auto m = toy_model();
  m->to(cuda);
  quant::apply_bn_fold(*m, 0);
  quant::PrepareOptions opt;
  opt.w_bits = opt.a_bits = 8;
  quant::prepare_model(*m, quant::profile_registry().get("x86-onednn"), opt);
  quant::calibrate(*m, ds.images, 32);
  auto lowered = deploy::lower(*m, quant::profile_registry().get("x86-onednn"), ds.images.to(cuda), 32);
  CHECK(quant::module_device(*m) == at::Device(at::kCPU));
  const auto y = lowered->forward(ds.images.narrow(0, 0, 8).to(cuda));
  CHECK(y.device().is_cpu());
  CHECK(y.size(0) == 8);
}
