#include "qbench/train/train.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <map>
#include <random>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"
#include "qbench/common/progress.h"
#include "qbench/data/loader.h"
#include "qbench/quant/device.h"

namespace qbench::train {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
constexpr double kPi = 3.14159265358979323846;
}  // namespace

double lr_at(const config::TrainRecipe& r, int64_t step, int64_t steps_per_epoch, int64_t total_steps) {
  const int64_t warm = static_cast<int64_t>(std::llround(r.warmup_epochs * static_cast<double>(steps_per_epoch)));
  if (step < warm) return r.warmup_start_lr + (r.lr - r.warmup_start_lr) * static_cast<double>(step) / warm;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warm));
  const double t = std::min(1.0, static_cast<double>(step - warm) / span);
  return 0.5 * r.lr * (1.0 + std::cos(kPi * t));
}

at::Tensor smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& target, double eps) {
  auto logp = at::log_softmax(logits, 1);
  auto nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1);
  if (eps <= 0) return nll.mean();
  auto smooth = -logp.mean(1);
  return ((1.0 - eps) * nll + eps * smooth).mean();
}

at::Tensor augment_batch(const at::Tensor& images, uint64_t seed) {
  // The augmentation is a CPU loop over the pixels: a batch elsewhere goes through a CPU copy.
  auto out = images.to(at::kCPU, at::kFloat).contiguous().clone();
  data::augment_pad_crop_flip(out.data_ptr<float>(), out.size(0), out.size(1), out.size(2), out.size(3), seed);
  return quant::on_device(out, images.device());
}

TrainResult train_model(quant::QuantModel& model, const data::Dataset& train, const config::TrainRecipe& r,
                        uint64_t seed, const TrainHooks& hooks) {
  auto t0 = std::chrono::steady_clock::now();
  using torch::optim::SGDOptions;
  auto sgd = [&r](double wd) {
    return std::make_unique<SGDOptions>(SGDOptions(r.lr).momentum(r.momentum).nesterov(r.nesterov).weight_decay(wd));
  };
  // Learnable quantizer parameters train in groups of their own (per decay value), never with
  // the model's weight decay unless the quantizer's paper asks for it (PACT's alpha penalty).
  std::set<const void*> quant_ids;
  std::map<double, std::vector<at::Tensor>> quant_groups;
  for (auto* q : model.quantizers())
    for (auto& p : q->quant_parameters()) {
      if (quant_ids.insert(p.unsafeGetTensorImpl()).second) quant_groups[q->quant_weight_decay()].push_back(p);
    }
  // Weight decay on conv/linear weights only, not on BatchNorm parameters or biases (MQBench
  // excludes BN for the depthwise nets; we apply that rule to every net).
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& item : model.named_parameters()) {
    if (quant_ids.count(item.value().unsafeGetTensorImpl())) continue;
    (item.value().dim() <= 1 ? no_decay : decay).push_back(item.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, sgd(r.weight_decay));
  if (!no_decay.empty()) groups.emplace_back(no_decay, sgd(0.0));
  for (auto& g : quant_groups) groups.emplace_back(g.second, sgd(g.first));
  torch::optim::SGD opt(groups, SGDOptions(r.lr).momentum(r.momentum).nesterov(r.nesterov));
  if (hooks.on_start) hooks.on_start(opt);

  const int64_t n = train.size();
  const int64_t bs = r.batch_size;
  const int64_t steps_per_epoch = (n + bs - 1) / bs;
  const int64_t total = steps_per_epoch * r.epochs;
  const at::Device device = quant::module_device(model);  // batches are loaded on the CPU
  model.train();
  TrainResult res;
  int64_t step = (hooks.start_epoch - 1) * steps_per_epoch;
  for (int epoch = hooks.start_epoch; epoch <= r.epochs; ++epoch) {
    auto perm = data::seeded_permutation(n, data::derive_seed(seed, hooks.tag + "-epoch-" + std::to_string(epoch)));
    const int64_t first_step = step;
    data::BatchLoader loader(train,
                             data::plan_batches(perm, bs, r.augment ? data::Mode::Train : data::Mode::Eval,
                                                [&](int64_t b) {
                                                  return data::derive_seed(
                                                      seed, hooks.tag + "-augment-" + std::to_string(first_step + b));
                                                }));
    double loss_sum = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < steps_per_epoch; ++b, ++step) {
      check_interrupt();
      auto batch = loader.next();
      if (!batch) throw Error("data loader ended early at step " + std::to_string(b + 1) + " of an epoch");
      const at::Tensor x = quant::on_device(batch->images, device);
      const at::Tensor y = quant::on_device(batch->labels, device);
      const int64_t len = y.size(0);
      const double lr = lr_at(r, step, steps_per_epoch, total);
      for (auto& g : opt.param_groups()) static_cast<SGDOptions&>(g.options()).lr(lr);
      opt.zero_grad();
      auto loss = smoothed_cross_entropy(model.forward(x), y, r.label_smoothing);
      const double lv = loss.item<double>();
      if (!std::isfinite(lv))
        throw Error(hooks.tag + " training diverged: loss is " + std::to_string(lv) + " at epoch " +
                    std::to_string(epoch) + ", step " + std::to_string(b + 1) + " (lr " + std::to_string(lr) + ")");
      loss.backward();
      opt.step();
      loss_sum += lv * len;
      seen += len;
      if (hooks.on_step) hooks.on_step(step, lv);
      if (hooks.progress) hooks.progress(epoch, r.epochs, b + 1, steps_per_epoch, loss_sum / seen);
    }
    res.final_loss = loss_sum / std::max<int64_t>(1, seen);
    if (hooks.on_epoch_end) hooks.on_epoch_end(epoch, opt);
  }
  res.steps = step;
  res.wall_s = seconds_since(t0);
  model.eval();
  return res;
}

TrainResult train_model(quant::QuantModel& model, const data::TensorDataset& train, const config::TrainRecipe& r,
                        uint64_t seed, const TrainHooks& hooks) {
  return train_model(model, data::InMemoryDataset(train), r, seed, hooks);
}

TrainResult train_fp32(quant::QuantModel& model, const data::Dataset& train, const config::TrainRecipe& r,
                       uint64_t seed, const TrainProgress& progress) {
  TrainHooks hooks;
  hooks.progress = progress;
  hooks.tag = "fp32";
  return train_model(model, train, r, seed, hooks);
}

TrainResult train_fp32(quant::QuantModel& model, const data::TensorDataset& train, const config::TrainRecipe& r,
                       uint64_t seed, const TrainProgress& progress) {
  return train_fp32(model, data::InMemoryDataset(train), r, seed, progress);
}

EvalResult evaluate(quant::QuantModel& model, const data::TensorDataset& test, int64_t batch_size,
                    const std::function<void(int64_t, int64_t)>& progress) {
  return evaluate(model, data::InMemoryDataset(test), batch_size, progress);
}

EvalResult evaluate(quant::QuantModel& model, const data::Dataset& test, int64_t batch_size,
                    const std::function<void(int64_t, int64_t)>& progress) {
  auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  model.eval();
  const at::Device device = quant::module_device(model);  // batches are loaded on the CPU
  const int64_t n = test.size();
  int64_t correct1 = 0, correct5 = 0;
  double loss_sum = 0;
  data::BatchLoader loader(test, data::plan_sequential(n, batch_size));
  for (int64_t start = 0; start < n; start += batch_size) {
    check_interrupt();
    auto batch = loader.next();
    if (!batch) throw Error("data loader ended early at image " + std::to_string(start));
    const at::Tensor x = quant::on_device(batch->images, device);
    const at::Tensor y = quant::on_device(batch->labels, device);
    const int64_t len = y.size(0);
    auto logits = model.forward(x);
    auto loss = smoothed_cross_entropy(logits, y, 0.0);
    loss_sum += loss.item<double>() * len;
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    auto topk = std::get<1>(logits.topk(k, 1));
    auto hit = topk.eq(y.unsqueeze(1));
    correct1 += hit.narrow(1, 0, 1).sum().item<int64_t>();
    correct5 += hit.sum().item<int64_t>();
    if (progress) progress(start + len, n);
  }
  EvalResult r;
  r.images = n;
  r.top1 = n ? 100.0 * static_cast<double>(correct1) / n : 0;
  r.top5 = n ? 100.0 * static_cast<double>(correct5) / n : 0;
  r.loss = n ? loss_sum / n : 0;
  if (!std::isfinite(r.loss)) throw Error("evaluation produced a non-finite loss (NaN/Inf logits)");
  r.wall_s = seconds_since(t0);
  return r;
}

LatencyResult measure_latency(quant::QuantModel& model, const at::Tensor& batch_in, int warmup, int repeats) {
  torch::NoGradGuard no_grad;
  model.eval();
  // The batch is on the model's device before the clock starts (the copy is not timed). CUDA
  // kernels run asynchronously: the device is synchronised before the clock starts and before it
  // stops, so a repeat times the whole forward pass, not its launch.
  const at::Device device = quant::module_device(model);
  const at::Tensor batch = quant::on_device(batch_in, device);
  const bool cuda = device.is_cuda();
  auto sync = [&] {
    if (cuda) torch::cuda::synchronize(device.index());
  };
  for (int i = 0; i < warmup; ++i) model.forward(batch);
  sync();
  std::vector<double> ms;
  ms.reserve(repeats);
  for (int i = 0; i < repeats; ++i) {
    check_interrupt();
    sync();
    auto t0 = std::chrono::steady_clock::now();
    auto y = model.forward(batch);
    sync();
    (void)y.data_ptr();  // eager CPU ops are synchronous; touch the output anyway
    ms.push_back(seconds_since(t0) * 1000.0);
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&ms](double p) {
    // Nearest-rank percentile.
    std::size_t idx = static_cast<std::size_t>(std::ceil(p / 100.0 * ms.size()));
    return ms[std::min(ms.size() - 1, idx == 0 ? 0 : idx - 1)];
  };
  LatencyResult r;
  r.p50_ms = pct(50);
  r.p90_ms = pct(90);
  r.batch = static_cast<int>(batch.size(0));
  return r;
}

namespace {
at::Tensor cpu_copy(const at::Tensor& t) {
  if (!t.defined() || t.device().is_cpu()) return t;
  at::Tensor c = t.detach().to(at::kCPU);
  c.set_requires_grad(t.requires_grad());
  return c;
}

// Module::save's layout (own parameters, own buffers, then each serializable child in its own
// archive under its name) with every tensor on the CPU; Module::load reads it back.
void save_module_on_cpu(const torch::nn::Module& m, torch::serialize::OutputArchive& archive) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) archive.write(p.key(), cpu_copy(p.value()));
  for (const auto& b : m.named_buffers(/*recurse=*/false))
    archive.write(b.key(), cpu_copy(b.value()), /*is_buffer=*/true);
  for (const auto& c : m.named_children()) {
    if (!c.value()->is_serializable()) continue;
    torch::serialize::OutputArchive child(archive.compilation_unit());
    save_module_on_cpu(*c.value(), child);
    archive.write(c.key(), child);
  }
}
}  // namespace

namespace {

// The archive's bytes with the qbench header in front.
std::string with_header(const std::string& archive) {
  std::string h(kCheckpointMagic, 8);
  const uint64_t n = archive.size();
  for (int i = 0; i < 8; ++i) h.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  h += sha256_hex(archive);
  return h;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open checkpoint");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw DataError(path + ": read error");
  return bytes;
}

// What the checkpoint at `path` holds; `archive` gets the LibTorch archive's bytes when it is not
// Corrupt.
IntegrityCheck check_bytes(const std::string& path, const std::string& bytes, std::string* archive) {
  IntegrityCheck c;
  auto corrupt = [&](const std::string& why) {
    c.status = Integrity::Corrupt;
    c.problem = path + ": " + why;
    return c;
  };
  const bool has_magic = bytes.size() >= 8 && bytes.compare(0, 8, kCheckpointMagic, 8) == 0;
  if (has_magic) {
    if (bytes.size() < kCheckpointHeaderBytes)
      return corrupt("truncated checkpoint (" + std::to_string(bytes.size()) + " bytes, shorter than its " +
                     std::to_string(kCheckpointHeaderBytes) + "-byte header)");
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    const std::string want = bytes.substr(16, 64);
    const uint64_t have = bytes.size() - kCheckpointHeaderBytes;
    c.bytes = static_cast<int64_t>(have);
    if (have != n)
      return corrupt("holds " + std::to_string(have) + " archive bytes, its header says " + std::to_string(n) +
                     " (truncated or damaged checkpoint)");
    Sha256 h;
    h.update(bytes.data() + kCheckpointHeaderBytes, have);
    c.sha256 = h.hex_digest();
    if (c.sha256 != want)
      return corrupt("content hash mismatch: the archive hashes to " + c.sha256 + ", the header says " + want +
                     " (damaged checkpoint)");
    c.status = Integrity::Verified;
    if (archive) *archive = bytes.substr(kCheckpointHeaderBytes);
    return c;
  }
  // Before checkpoints carried a hash they were the bare archive (a zip file): accepted when
  // LibTorch reads it and it holds what load_checkpoint needs.
  if (bytes.size() < 4 || bytes.compare(0, 4, "PK\x03\x04", 4) != 0)
    return corrupt("not a qbench checkpoint (bad magic: expected " + std::string(kCheckpointMagic, 8) +
                   " or a LibTorch archive)");
  c.bytes = static_cast<int64_t>(bytes.size());
  c.sha256 = sha256_hex(bytes);
  try {
    torch::serialize::InputArchive root, mod, op;
    root.load_from(bytes.data(), bytes.size(), at::Device(at::kCPU));
    root.read("model", mod);
    root.read("optimizer", op);
  } catch (const c10::Error& e) {
    return corrupt(std::string("unreadable LibTorch archive (no qbench hash): ") + e.what_without_backtrace());
  }
  c.status = Integrity::Unhashed;
  if (archive) *archive = bytes;
  return c;
}

}  // namespace

void save_checkpoint(const torch::nn::Module& model, torch::optim::Optimizer& opt, const std::string& path) {
  torch::serialize::OutputArchive root, mod, op;
  save_module_on_cpu(model, mod);
  // The optimizer writes its state tensors as they are: SGD's momentum buffers are swapped for
  // CPU copies while it does, then put back.
  std::vector<std::pair<torch::optim::SGDParamState*, at::Tensor>> swapped;
  for (auto& item : opt.state()) {
    auto* s = dynamic_cast<torch::optim::SGDParamState*>(item.second.get());
    if (!s || !s->momentum_buffer().defined() || s->momentum_buffer().device().is_cpu()) continue;
    swapped.emplace_back(s, s->momentum_buffer());
    s->momentum_buffer(cpu_copy(s->momentum_buffer()));
  }
  try {
    opt.save(op);
  } catch (...) {
    for (auto& [s, b] : swapped) s->momentum_buffer(b);
    throw;
  }
  for (auto& [s, b] : swapped) s->momentum_buffer(b);
  root.write("model", mod);
  root.write("optimizer", op);
  std::ostringstream os(std::ios::binary);
  root.save_to(os);
  const std::string archive = os.str();
  const std::string header = with_header(archive);
  try {
    atomic_write_file(path, {{header.data(), header.size()}, {archive.data(), archive.size()}}, "checkpoint");
  } catch (const DataError&) {
    throw;
  } catch (const Error& e) {
    throw DataError(e.what());
  }
}

IntegrityCheck verify_checkpoint(const std::string& path) { return check_bytes(path, read_all(path), nullptr); }

IntegrityCheck add_checkpoint_hash(const std::string& path) {
  std::string archive;
  const auto c = check_bytes(path, read_all(path), &archive);
  if (c.status != Integrity::Unhashed)
    throw DataError(path + ": add_checkpoint_hash needs an unhashed checkpoint, this one is " +
                    integrity_name(c.status) + (c.problem.empty() ? "" : ": " + c.problem));
  const std::string header = with_header(archive);
  try {
    atomic_write_file(path, {{header.data(), header.size()}, {archive.data(), archive.size()}}, "checkpoint");
  } catch (const Error& e) {
    throw DataError(e.what());
  }
  return verify_checkpoint(path);
}

Integrity load_checkpoint(torch::nn::Module& model, torch::optim::Optimizer& opt, const std::string& path) {
  std::string archive;
  const auto c = check_bytes(path, read_all(path), &archive);
  if (c.status == Integrity::Corrupt) throw DataError(c.problem);
  torch::serialize::InputArchive root, mod, op;
  root.load_from(archive.data(), archive.size(), quant::module_device(model));
  root.read("model", mod);
  root.read("optimizer", op);
  model.load(mod);
  opt.load(op);
  return c.status;
}

}  // namespace qbench::train
