// The reconstruction engine (see recon.h): units, the FP32 / quantized side-by-side caches (memory
// or an unlinked temp file), the per-unit optimisation and the final baking of the rounding.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/ptq/ptq.h"
#include "qbench/ptq/recon.h"
#include "qbench/ptq/recon_fused.h"
#include "qbench/quant/device.h"
#include "qbench/quant/observers_extra.h"
#include "qbench/quant/prepare.h"

namespace qbench::ptq {

using quant::FakeQuantizer;
using quant::QuantLayer;

const char* recon_mode_name(ReconMode m) {
  switch (m) {
    case ReconMode::AdaRound: return "adaround";
    case ReconMode::Brecq: return "brecq";
    default: return "qdrop";
  }
}

namespace {

constexpr double kPi = 3.14159265358979323846;

bool inside(const std::string& path, const std::string& prefix) {
  return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && path[prefix.size()] == '.';
}

torch::nn::Module& module_of(QuantLayer* l) {
  auto* m = dynamic_cast<torch::nn::Module*>(l);
  if (!m) throw Error("reconstruction: a quant layer that is not a module");
  return *m;
}

/// The shared pointer behind a quantizer slot ("weight_quant", "input_quant", "input_quant_a"...).
std::shared_ptr<FakeQuantizer> slot(torch::nn::Module& m, const std::string& name) {
  for (const auto& c : m.named_children())
    if (c.key() == name) return std::dynamic_pointer_cast<FakeQuantizer>(c.value());
  return nullptr;
}

/// What the layer feeds its weight quantizer at inference (eval mode): the raw weight, or for a
/// conv whose BN is folded on the fly (strategies 1..4) the running-statistics fold W*gamma/sigma.
at::Tensor weight_input(QuantLayer* l) {
  if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(l); conv && conv->bn() && conv->bn_fold() > 0)
    return conv->folded_weight_bias().first;
  return l->weight_tensor().detach();
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Capturing a unit's input: a quantizer-slot tap that records what reaches it and stops the pass.

struct StopForward {};

class InputTap : public FakeQuantizer {
 public:
  explicit InputTap(std::shared_ptr<FakeQuantizer> inner)
      : FakeQuantizer(inner ? inner->scheme() : quant::QuantScheme{}), inner_(std::move(inner)) {
    ready_ = true;
  }
  at::Tensor forward(const at::Tensor& x) override {
    if (armed_) {
      captured_ = x.detach();
      throw StopForward{};
    }
    return inner_ ? inner_->forward(x) : x;
  }
  void set_observing(bool on) override {
    if (inner_) inner_->set_observing(on);
  }
  void set_quantizing(bool on) override {
    if (inner_) inner_->set_quantizing(on);
  }
  void compute_qparams() override {}
  std::optional<quant::QParams> affine_qparams() const override {
    return inner_ ? inner_->affine_qparams() : std::nullopt;
  }
  std::string describe() const override { return inner_ ? inner_->describe() : "float (reconstruction input tap)"; }
  void arm() {
    armed_ = true;
    captured_ = at::Tensor();
  }
  void disarm() { armed_ = false; }
  at::Tensor take() { return std::move(captured_); }

 private:
  std::shared_ptr<FakeQuantizer> inner_;
  bool armed_ = false;
  at::Tensor captured_;
};

/// Installs a tap on a layer's input slot for its lifetime. A layer without an input quantizer
/// (activations left in float) keeps a pass-through tap afterwards, since a slot cannot be emptied.
class TapGuard {
 public:
  explicit TapGuard(QuantLayer* l) : layer_(l) {
    orig_ = slot(module_of(l), "input_quant");
    tap_ = std::make_shared<InputTap>(orig_);
    layer_->attach(nullptr, tap_);
  }
  ~TapGuard() {
    tap_->disarm();
    if (orig_) layer_->attach(nullptr, orig_);
  }
  InputTap& tap() { return *tap_; }

 private:
  QuantLayer* layer_;
  std::shared_ptr<FakeQuantizer> orig_;
  std::shared_ptr<InputTap> tap_;
};

// ---------------------------------------------------------------------------------------------
// Caches of N samples, in memory (on the model's device) or in an unlinked temp file (rows read
// back with pread and moved to the device).

class TensorCache {
 public:
  TensorCache() = default;
  TensorCache(const TensorCache&) = delete;
  TensorCache& operator=(const TensorCache&) = delete;
  ~TensorCache() {
    if (fd_ >= 0) ::close(fd_);
  }
  void init(int64_t n, at::IntArrayRef row_shape, bool disk, at::Device device) {
    n_ = n;
    row_shape_ = row_shape.vec();
    row_numel_ = 1;
    for (auto d : row_shape_) row_numel_ *= d;
    device_ = device;
    if (!disk) {
      std::vector<int64_t> shape{n};
      shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
      mem_ = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(device));
      return;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/qbench-recon-XXXXXX";
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    fd_ = ::mkstemp(name.data());
    if (fd_ < 0) throw Error("reconstruction: cannot create a cache file from " + pattern + ": " + std::strerror(errno));
    ::unlink(name.data());  // gone from the directory at once; the space is freed at close
  }
  bool on_disk() const { return fd_ >= 0; }
  int64_t size() const { return n_; }
  /// The whole cache (in memory only): [N, row shape] on the model's device.
  const at::Tensor& mem() const { return mem_; }
  const std::vector<int64_t>& row_shape() const { return row_shape_; }
  void put(int64_t start, const at::Tensor& b_in) {
    auto b = b_in.detach().to(at::kFloat).contiguous();
    if (b.numel() != b.size(0) * row_numel_) throw Error("reconstruction: cached batch has the wrong shape");
    if (!on_disk()) {
      mem_.narrow(0, start, b.size(0)).copy_(b.view(mem_.narrow(0, start, b.size(0)).sizes()));
      return;
    }
    b = quant::on_device(b, at::Device(at::kCPU));
    const size_t bytes = static_cast<size_t>(b.numel()) * sizeof(float);
    const off_t off = static_cast<off_t>(start * row_numel_ * static_cast<int64_t>(sizeof(float)));
    write_all(reinterpret_cast<const char*>(b.data_ptr<float>()), bytes, off);
  }
  /// Rows idx (int64, 1-d, on any device), as one batch on the cache's device.
  at::Tensor rows(const at::Tensor& idx_in) {
    if (!on_disk()) return mem_.index_select(0, quant::on_device(idx_in, mem_.device()));
    const at::Tensor idx = quant::on_device(idx_in, at::Device(at::kCPU));  // read through an accessor
    std::vector<int64_t> shape{idx.size(0)};
    shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
    auto out = at::empty(shape, at::kFloat);
    auto ia = idx.accessor<int64_t, 1>();
    const size_t rb = static_cast<size_t>(row_numel_) * sizeof(float);
    for (int64_t i = 0; i < idx.size(0); ++i)
      read_all(reinterpret_cast<char*>(out.data_ptr<float>() + i * row_numel_), rb, static_cast<off_t>(ia[i] * rb));
    return quant::on_device(out, device_);
  }
  at::Tensor range(int64_t start, int64_t len) {
    if (!on_disk()) return mem_.narrow(0, start, len);
    return rows(at::arange(start, start + len, at::kLong));
  }

 private:
  void write_all(const char* p, size_t n, off_t off) {
    while (n > 0) {
      ssize_t w = ::pwrite(fd_, p, n, off);
      if (w <= 0) throw Error(std::string("reconstruction: writing the cache file failed: ") + std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
      off += w;
    }
  }
  void read_all(char* p, size_t n, off_t off) {
    while (n > 0) {
      ssize_t r = ::pread(fd_, p, n, off);
      if (r <= 0) throw Error(std::string("reconstruction: reading the cache file failed: ") + std::strerror(errno));
      p += r;
      n -= static_cast<size_t>(r);
      off += r;
    }
  }
  int64_t n_ = 0, row_numel_ = 0;
  std::vector<int64_t> row_shape_;
  at::Device device_{at::kCPU};
  at::Tensor mem_;
  int fd_ = -1;
};

// ---------------------------------------------------------------------------------------------

/// A unit resolved against the model.
struct UnitRt {
  ReconUnit unit;
  std::vector<quant::LayerRef> layers;
  std::vector<quant::AddRef> adds;
  quant::BlockModule* block = nullptr;
  QuantLayer* entry = nullptr;  ///< the layer whose input is the unit's input
  at::Tensor forward(const at::Tensor& x) const {
    if (block) return block->forward_block(x);
    QuantLayer* l = layers.front().layer;
    if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(l)) return conv->forward_fused(x);
    if (auto* lin = dynamic_cast<quant::QLinearImpl*>(l)) return lin->forward(x);
    throw Error("reconstruction: layer " + layers.front().name + " is neither a conv nor a linear layer");
  }
};

/// The learnable replacement of one activation quantizer slot, and how to put the original back.
struct ActSlot {
  torch::nn::Module* owner;
  std::string name;
  std::shared_ptr<FakeQuantizer> orig;
  std::shared_ptr<ReconActQuantizer> recon;
  std::function<void(std::shared_ptr<FakeQuantizer>)> put;
};

struct WeightSlot {
  QuantLayer* layer;
  std::string name;
  std::shared_ptr<FakeQuantizer> orig;
  std::shared_ptr<AdaRoundQuantizer> ada;
};

/// Sets requires_grad off on every model parameter for its lifetime (only V and the step sizes
/// learn), restoring the flags after.
class FreezeGuard {
 public:
  explicit FreezeGuard(torch::nn::Module& m) {
    for (auto& p : m.parameters()) {
      saved_.emplace_back(p, p.requires_grad());
      p.set_requires_grad(false);
    }
  }
  ~FreezeGuard() {
    for (auto& [p, rg] : saved_) p.set_requires_grad(rg);
  }

 private:
  std::vector<std::pair<at::Tensor, bool>> saved_;
};

torch::nn::Module& in_eval(torch::nn::Module& m) {
  m.eval();
  return m;
}

/// BRECQ's / QDrop's lp_loss (p = 2, reduction "none"): the squared error summed over channels
/// (dim 1), averaged over the batch and the spatial positions.
at::Tensor rec_loss(const at::Tensor& out, const at::Tensor& target) { return (out - target).pow(2).sum(1).mean(); }

}  // namespace

std::vector<ReconUnit> recon_units(quant::QuantModel& model, ReconMode mode) {
  std::vector<ReconUnit> out;
  std::set<std::string> seen;
  for (const auto& l : model.quant_layers()) {
    if (mode == ReconMode::AdaRound || l.block.empty()) {
      ReconUnit u{l.name, false, {l.name}, l.is_first};
      out.push_back(std::move(u));
      continue;
    }
    if (!seen.insert(l.block).second) continue;
    ReconUnit u{l.block, true, {}, false};
    for (const auto& b : model.blocks())
      if (b.name == l.block) u.layers = b.layers;
    for (const auto& name : u.layers)
      for (const auto& l2 : model.quant_layers())
        if (l2.name == name && l2.is_first) u.skipped = true;  // a block holding the first layer: keep it as is
    out.push_back(std::move(u));
  }
  return out;
}

void prepare_for_reconstruction(quant::QuantModel& model, quant::AlgorithmContext& ctx, double mse_p) {
  if (!ctx.profile) throw Error("reconstruction: no profile");
  const double p = mse_p;
  auto mse = [p](const quant::QuantScheme& s) -> std::shared_ptr<FakeQuantizer> {
    return std::make_shared<quant::QuantizerImpl>(s, std::make_unique<quant::MseObserver>(s, p));
  };
  quant::attach_quantizers(model, *ctx.profile, ctx.w_bits, ctx.a_bits, {mse, mse});
  calibrate_observers(model, ctx);
}

// ---------------------------------------------------------------------------------------------
// The session: one unit at a time.

struct ReconSession::Impl {
  /// What a unit holds from begin() to end().
  struct Current {
    size_t index = 0;
    std::chrono::steady_clock::time_point t0;
    UnitResult res;
    TensorCache c_y, c_xq, c_xfp;
    std::vector<WeightSlot> wslots;
    std::vector<ActSlot> aslots;
    std::vector<quant::QAddImpl*> fused_adds;  ///< adds running quant_add_fused (hooks cleared at end)
    std::vector<at::Tensor> vs, steps;
    bool learn_steps = false;
    int64_t iters = 0;
    // Composed: torch::optim::Adam; fused (CPU): one FusedAdam with the groups V and steps.
    std::unique_ptr<torch::optim::Adam> opt_v, opt_a;
    std::unique_ptr<FusedAdam> fused_opt;
    size_t group_a = 0;
    // Fused batch draw: the step's input and target, written in place every step.
    at::Tensor xbuf, ybuf;
    // AdaRound (fused): the unit's input after its fixed input quantizer, for every cached row;
    // the quantizer then passes the drawn rows through.
    at::Tensor xq_quantized;
    std::shared_ptr<ReconActQuantizer> entry_quant;
    at::Tensor last_rec;
  };

  Impl(quant::QuantModel& m, quant::AlgorithmContext& c, ReconMode md, const ReconParams& p, ReconKernels k)
      : model(m), ctx(c), mode(md), rp(p), kernels(k), freeze(in_eval(m)) {}

  quant::QuantModel& model;
  quant::AlgorithmContext& ctx;
  ReconMode mode;
  ReconParams rp;
  ReconKernels kernels;
  FreezeGuard freeze;
  bool learn_act = false;
  double drop_p = 1.0;
  at::Generator gen;
  at::Tensor images;
  at::Device device{at::kCPU};
  int64_t n = 0, pass_bs = 1, bs = 1;
  std::vector<UnitRt> units;
  std::vector<ReconUnit> unit_list;
  std::vector<WeightSlot> learned_weights;  // every AdaRound quantizer, baked at the end
  std::unique_ptr<Current> cur;

  double eval_loss(Current& c) {
    torch::NoGradGuard ng;
    for (auto& a : c.aslots) a.recon->set_drop_prob(1.0);
    const UnitRt& U = units[c.index];
    double total = 0;
    for (int64_t s = 0; s < n; s += pass_bs) {
      const int64_t len = std::min(pass_bs, n - s);
      total += rec_loss(U.forward(c.c_xq.range(s, len)), c.c_y.range(s, len)).item<double>() * static_cast<double>(len);
    }
    return total / static_cast<double>(n);
  }
  bool fused_cpu() const { return kernels == ReconKernels::Fused && device.is_cpu(); }
};

ReconSession::ReconSession(quant::QuantModel& model, quant::AlgorithmContext& ctx, ReconMode mode,
                           const ReconParams& rp, ReconKernels kernels)
    : impl_(std::make_unique<Impl>(model, ctx, mode, rp, kernels)) {
  auto& I = *impl_;
  if (!ctx.calib_images.defined() || ctx.calib_images.size(0) == 0)
    throw Error("reconstruction needs calibration images (ptq.calib_images > 0)");
  if (rp.iters < 0 || rp.batch_size < 1) throw Error("reconstruction: iters must be >= 0 and batch_size >= 1");
  I.learn_act = mode != ReconMode::AdaRound;
  I.drop_p = mode == ReconMode::QDrop ? rp.drop_prob : 1.0;
  // One generator for batches and drop masks: the same seed gives the same result.
  I.gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seed * 0x9E3779B97F4A7C15ULL + 0x7265636FULL);
  // The calibration images may stay on the CPU: each pass moves its batch to the model's device,
  // where the caches (in memory) and every learned tensor live.
  I.images = ctx.calib_images.to(at::kFloat);
  I.device = quant::module_device(model);
  I.n = I.images.size(0);
  I.pass_bs = std::max<int64_t>(1, ctx.calib_batch_size);
  I.bs = std::min<int64_t>(rp.batch_size, I.n);

  const auto all_layers = model.quant_layers();
  const auto all_adds = model.adds();
  std::map<std::string, quant::BlockModule*> block_of;
  for (const auto& b : model.blocks()) block_of[b.name] = b.block;
  for (auto& u : recon_units(model, mode)) {
    UnitRt rt;
    rt.unit = u;
    for (const auto& name : u.layers)
      for (const auto& l : all_layers)
        if (l.name == name) rt.layers.push_back(l);
    if (rt.layers.empty()) continue;  // a block without quant layers: nothing to learn
    if (u.is_block) {
      rt.block = block_of.at(u.name);
      for (const auto& a : all_adds)
        if (inside(a.name, u.name)) rt.adds.push_back(a);
    }
    rt.entry = rt.layers.front().layer;
    I.unit_list.push_back(rt.unit);
    I.units.push_back(std::move(rt));
  }
}

ReconSession::~ReconSession() = default;

const std::vector<ReconUnit>& ReconSession::units() const { return impl_->unit_list; }

int64_t ReconSession::iters() const { return impl_->cur ? impl_->cur->iters : 0; }

void ReconSession::begin(size_t ui) {
  auto& I = *impl_;
  if (I.cur) throw Error("reconstruction: begin() while unit " + I.units[I.cur->index].unit.name + " is running");
  if (ui >= I.units.size() || I.units[ui].unit.skipped) throw Error("reconstruction: unit index out of range or skipped");
  I.cur = std::make_unique<Impl::Current>();
  auto& c = *I.cur;
  auto& model = I.model;
  const UnitRt& U = I.units[ui];
  c.index = ui;
  c.t0 = std::chrono::steady_clock::now();
  c.res.name = U.unit.name;
  const int64_t n = I.n, pass_bs = I.pass_bs;
  const double drop_p = I.drop_p;

  // 1. Caches: FP32 input (qdrop) and output, then the quantized model's input.
  {
    torch::NoGradGuard ng;
    TapGuard tg(U.entry);
    auto run_pass = [&](bool quantizing, const std::function<void(int64_t, const at::Tensor&)>& sink) {
      quant::set_quantizing(model, quantizing);
      for (int64_t s = 0; s < n; s += pass_bs) {
        check_interrupt();
        tg.tap().arm();
        try {
          model.forward(quant::on_device(I.images.narrow(0, s, std::min(pass_bs, n - s)), I.device));
        } catch (const StopForward&) {
        }
        tg.tap().disarm();
        auto x = tg.tap().take();
        if (!x.defined()) throw Error("reconstruction: the forward pass never reached unit " + U.unit.name);
        sink(s, x);
      }
    };
    run_pass(false, [&](int64_t s, const at::Tensor& x) {
      auto y = U.forward(x);
      if (s == 0) {
        const double row_bytes =
            4.0 * (static_cast<double>(x.numel() / x.size(0)) * (drop_p < 1.0 ? 2.0 : 1.0) +
                   static_cast<double>(y.numel() / y.size(0)));
        const bool disk = row_bytes * static_cast<double>(n) > static_cast<double>(I.rp.cache_mb) * 1048576.0;
        c.c_y.init(n, y.sizes().slice(1), disk, I.device);
        c.c_xq.init(n, x.sizes().slice(1), disk, I.device);
        if (drop_p < 1.0) c.c_xfp.init(n, x.sizes().slice(1), disk, I.device);
        c.res.on_disk = disk;
        if (!disk && I.fused_cpu()) {
          // The fused batch draw writes each step's batch here.
          std::vector<int64_t> xs{I.bs}, ys{I.bs};
          for (auto d : x.sizes().slice(1)) xs.push_back(d);
          for (auto d : y.sizes().slice(1)) ys.push_back(d);
          c.xbuf = at::empty(xs, at::kFloat);
          c.ybuf = at::empty(ys, at::kFloat);
        }
      }
      c.c_y.put(s, y);
      if (drop_p < 1.0) c.c_xfp.put(s, x);
    });
    run_pass(true, [&](int64_t s, const at::Tensor& x) { c.c_xq.put(s, x); });
  }
  quant::set_quantizing(model, true);

  // The observer-only start: round to nearest, MSE scales (before the learnable quantizers,
  // whose soft rounding starts at the float weight).
  c.res.initial_loss = I.eval_loss(c);

  // 2. Learnable quantizers in the unit.
  for (const auto& l : U.layers) {
    if (l.is_first) continue;
    auto orig = slot(module_of(l.layer), "weight_quant");
    if (!orig) continue;  // weights left in float
    auto qp = orig->affine_qparams();
    if (!qp) throw Error("reconstruction: the weight quantizer of " + l.name + " is not affine");
    auto ada = std::make_shared<AdaRoundQuantizer>(orig->scheme(), *qp, weight_input(l.layer));
    ada->set_kernels(I.kernels);
    l.layer->attach(ada, nullptr);
    c.wslots.push_back({l.layer, l.name, orig, ada});
  }
  auto add_act = [&](torch::nn::Module* owner, const std::string& name,
                     std::function<void(std::shared_ptr<FakeQuantizer>)> put) {
    auto orig = slot(*owner, name);
    if (!orig) return;
    auto qp = orig->affine_qparams();
    if (!qp) throw Error("reconstruction: activation quantizer " + name + " is not affine");
    auto rq = std::make_shared<ReconActQuantizer>(orig->scheme(), *qp, I.learn_act, I.gen);
    rq->set_kernels(I.kernels);
    put(rq);
    c.aslots.push_back({owner, name, orig, rq, put});
  };
  for (const auto& l : U.layers) {
    QuantLayer* layer = l.layer;
    add_act(&module_of(layer), "input_quant", [layer](std::shared_ptr<FakeQuantizer> q) { layer->attach(nullptr, q); });
  }
  for (const auto& a : U.adds) {
    quant::QAddImpl* add = a.add;
    add_act(add, "input_quant_a", [add](std::shared_ptr<FakeQuantizer> q) { add->attach_inputs(q, nullptr); });
    add_act(add, "input_quant_b", [add](std::shared_ptr<FakeQuantizer> q) { add->attach_inputs(nullptr, q); });
    add_act(add, "output_quant", [add](std::shared_ptr<FakeQuantizer> q) { add->attach_output(q); });
  }
  // An add with both operands quantized runs quantizers, add and ReLU as one fused pass each way
  // (quant_add_fused: the same values, gradients and key draws, a then b, as the three ops)
  // whenever both quantizers would run their fused kernel; otherwise the ops as they are.
  for (const auto& a : U.adds) {
    quant::QAddImpl* add = a.add;
    std::shared_ptr<ReconActQuantizer> qa, qb;
    for (auto& s : c.aslots) {
      if (s.owner != add) continue;
      if (s.name == "input_quant_a") qa = s.recon;
      if (s.name == "input_quant_b") qb = s.recon;
    }
    if (!qa || !qb || I.kernels != ReconKernels::Fused) continue;
    add->set_fused([qa, qb, relu = add->relu_after()](const at::Tensor& x, const at::Tensor& y) -> at::Tensor {
      if (!x.sizes().equals(y.sizes()) || !qa->fused_ready(x) || !qb->fused_ready(y) ||
          qa->drop_prob() != qb->drop_prob())
        return {};
      const ActQuantArgs aa = qa->fused_args(x);
      const ActQuantArgs ab = qb->fused_args(y);
      return quant_add_fused(x, y, aa, ab, relu);
    });
    c.fused_adds.push_back(add);
  }

  // 3. What learns, and how.
  for (auto& w : c.wslots) {
    w.ada->v().set_requires_grad(true);
    c.vs.push_back(w.ada->v());
  }
  for (auto& a : c.aslots)
    for (auto& t : a.recon->quant_parameters()) {
      t.set_requires_grad(true);
      c.steps.push_back(t);
    }
  c.learn_steps = !c.steps.empty() && I.rp.act_lr > 0;
  c.iters = (c.vs.empty() && !c.learn_steps) ? 0 : I.rp.iters;
  if (I.fused_cpu()) {
    c.fused_opt = std::make_unique<FusedAdam>();
    if (!c.vs.empty()) c.fused_opt->add_group(c.vs, I.rp.lr);
    if (c.learn_steps) c.group_a = c.fused_opt->add_group(c.steps, I.rp.act_lr);
  } else {
    if (!c.vs.empty()) c.opt_v = std::make_unique<torch::optim::Adam>(c.vs, torch::optim::AdamOptions(I.rp.lr));
    if (c.learn_steps) c.opt_a = std::make_unique<torch::optim::Adam>(c.steps, torch::optim::AdamOptions(I.rp.act_lr));
  }
  for (auto& a : c.aslots) a.recon->set_drop_prob(drop_p);

  // AdaRound: the unit's input quantizer is fixed (no step to learn, no drop), so its output for
  // every cached row is computed once, and each step draws quantized rows that the quantizer
  // passes through: the same values (fake quantization is elementwise), one pass less per step.
  // Only while the copy fits in cache_mb beside the caches.
  const double cache_bytes = 4.0 * static_cast<double>(c.c_xq.mem().defined() ? c.c_xq.mem().numel() * 2 : 0) +
                             4.0 * static_cast<double>(c.c_y.mem().defined() ? c.c_y.mem().numel() : 0);
  if (c.xbuf.defined() && !I.learn_act && drop_p >= 1.0 &&
      cache_bytes <= static_cast<double>(I.rp.cache_mb) * 1048576.0) {
    for (auto& a : c.aslots) {
      if (a.owner != &module_of(U.entry) || a.name != "input_quant") continue;
      torch::NoGradGuard ng;
      const at::Tensor& xq = c.c_xq.mem();
      c.xq_quantized = at::empty_like(xq);
      for (int64_t s = 0; s < n; s += pass_bs) {
        const int64_t len = std::min(pass_bs, n - s);
        c.xq_quantized.narrow(0, s, len).copy_(a.recon->forward(xq.narrow(0, s, len)));
      }
      c.entry_quant = a.recon;
    }
  }
}

void ReconSession::step(int64_t it) {
  auto& I = *impl_;
  if (!I.cur) throw Error("reconstruction: step() without begin()");
  auto& c = *I.cur;
  const UnitRt& U = I.units[c.index];
  const auto& rp = I.rp;
  const int64_t iters = c.iters;
  check_interrupt();
  auto idx = at::randperm(I.n, I.gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, I.bs);
  at::Tensor x, y;
  if (c.xbuf.defined()) {
    // Fused draw: the sampled rows straight into the step's buffers, QDrop's mix on the way
    // (the key drawn where drop_mix would draw it, so both forms see the same mask).
    const uint64_t key = I.drop_p < 1.0 ? next_drop_key(I.gen) : 0;
    gather_rows(c.xq_quantized.defined() ? c.xq_quantized : c.c_xq.mem(), I.drop_p < 1.0 ? &c.c_xfp.mem() : nullptr,
                idx, I.drop_p, key, c.xbuf);
    gather_rows(c.c_y.mem(), nullptr, idx, 1.0, 0, c.ybuf);
    x = c.xbuf;
    y = c.ybuf;
  } else {
    x = c.c_xq.rows(idx);
    if (I.drop_p < 1.0) x = drop_mix(x, c.c_xfp.rows(idx), I.drop_p, I.gen);
    y = c.c_y.rows(idx);
  }
  const bool reg_on = !c.vs.empty() && regularizer_on(it, iters, rp) && rp.lambda > 0;
  const double beta = reg_on ? anneal_beta(it, iters, rp) : 0.0;
  for (auto& w : c.wslots) w.ada->set_regularizer(beta);  // fused: computed in the weight's pass
  at::Tensor out;
  if (c.entry_quant) {
    // x is already quantized: the entry's quantizer passes it through for this forward.
    struct PassThrough {
      ReconActQuantizer& q;
      explicit PassThrough(ReconActQuantizer& q_) : q(q_) { q.set_quantizing(false); }
      ~PassThrough() { q.set_quantizing(true); }
    } pass(*c.entry_quant);
    out = U.forward(x);
  } else {
    out = U.forward(x);
  }
  const bool fused_loss = I.kernels == ReconKernels::Fused && out.device().is_cpu() &&
                          out.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat;
  auto rec = fused_loss ? rec_loss_fused(out, y) : rec_loss(out, y);
  at::Tensor loss = rec;
  if (reg_on) {
    at::Tensor reg = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(I.device));
    for (auto& w : c.wslots) {
      at::Tensor r = w.ada->take_regularizer();
      if (!r.defined()) r = rounding_regularizer(w.ada->v(), beta);
      reg = reg + r;
    }
    loss = loss + rp.lambda * reg;
  }
  // Cosine annealing of the step sizes' lr to 0 over the unit's iterations (CosineAnnealingLR,
  // T_max = iters), set after each step for the next.
  const double lr_a = rp.act_lr * 0.5 * (1.0 + std::cos(kPi * static_cast<double>(it + 1) / iters));
  if (c.fused_opt) {
    loss.backward();
    c.fused_opt->step();
    if (c.learn_steps) c.fused_opt->set_lr(c.group_a, lr_a);
    if (!c.learn_steps)
      for (auto& t : c.steps) t.mutable_grad().reset();  // steps that do not learn: nothing to keep
  } else {
    if (c.opt_v) c.opt_v->zero_grad();
    if (c.opt_a) c.opt_a->zero_grad();
    loss.backward();
    if (c.opt_v) c.opt_v->step();
    if (c.opt_a) {
      c.opt_a->step();
      for (auto& g : c.opt_a->param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr_a);
    }
  }
  c.last_rec = rec.detach();
}

double ReconSession::last_loss() const {
  const auto& c = impl_->cur;
  return c && c->last_rec.defined() ? c->last_rec.item<double>() : 0.0;
}

std::vector<int64_t> ReconSession::input_shape() const {
  if (!impl_->cur) throw Error("reconstruction: input_shape() without begin()");
  return impl_->cur->c_xq.row_shape();
}

std::vector<int64_t> ReconSession::output_shape() const {
  if (!impl_->cur) throw Error("reconstruction: output_shape() without begin()");
  return impl_->cur->c_y.row_shape();
}

UnitResult ReconSession::end() {
  auto& I = *impl_;
  if (!I.cur) throw Error("reconstruction: end() without begin()");
  auto& c = *I.cur;
  const UnitRt& U = I.units[c.index];
  UnitResult res = c.res;
  // How much rounding was still undecided (0.01 < h < 0.99) when it is made hard: a sign that
  // the schedule (iters, lr) was too short to converge.
  double undecided = 0, n_v = 0;
  for (auto& w : c.wslots) {
    torch::NoGradGuard ng;
    auto h = w.ada->h();
    undecided += ((h > 0.01) & (h < 0.99)).sum().item<double>();
    n_v += static_cast<double>(h.numel());
  }
  res.soft_fraction = n_v > 0 ? undecided / n_v : 0.0;

  // 4. Hard rounding (kept in the AdaRound quantizers until every unit is done, so that the
  //    FP32 passes of later units still see the float weights), learned steps back into the
  //    original fixed quantizers.
  for (auto& w : c.wslots) {
    w.ada->v().set_requires_grad(false);
    w.ada->v().mutable_grad().reset();
    w.ada->set_regularizer(0.0);
    w.ada->set_hard(true);
    I.learned_weights.push_back(w);
  }
  for (auto* add : c.fused_adds) add->set_fused(nullptr);
  for (auto& a : c.aslots) {
    auto* fixed = dynamic_cast<quant::QuantizerImpl*>(a.orig.get());
    if (fixed && I.learn_act) fixed->set_qparams(a.recon->qparams());
    a.put(a.orig);
  }
  res.final_loss = I.eval_loss(c);
  res.iters = c.iters;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.t0).count();
  CellDetail d{"recon_units",
               res.name,
               {{"initial_loss", res.initial_loss},
                {"final_loss", res.final_loss},
                {"iters", static_cast<double>(res.iters)},
                {"seconds", res.seconds},
                {"soft_fraction", res.soft_fraction}},
               std::string(U.unit.is_block ? "block" : "layer") + (res.on_disk ? ", caches on disk" : "")};
  I.ctx.details.push_back(std::move(d));
  I.cur.reset();
  return res;
}

void ReconSession::bake() {
  auto& I = *impl_;
  if (I.cur) throw Error("reconstruction: bake() while a unit is running");
  // 5. Bake the hard rounding into the weights and give each layer its fixed quantizer back: its
  //    round-to-nearest with the same scale reproduces the learned grid points exactly.
  {
    torch::NoGradGuard ng;
    for (auto& w : I.learned_weights) {
      const at::Tensor w_hard = w.ada->forward(weight_input(w.layer));
      at::Tensor& weight = w.layer->weight_tensor();
      auto* conv = dynamic_cast<quant::QConv2dImpl*>(w.layer);
      if (conv && conv->bn() && conv->bn_fold() > 0) {
        auto& bn = *conv->bn();
        auto scale = (bn.weight / at::sqrt(bn.running_var + bn.options.eps())).reshape({-1, 1, 1, 1});
        weight.copy_(at::where(scale != 0, w_hard / scale, weight));
      } else {
        weight.copy_(w_hard);
      }
      w.layer->attach(w.orig, nullptr);
    }
  }
  I.learned_weights.clear();
  quant::set_quantizing(I.model, true);
}

std::vector<UnitResult> reconstruct(quant::QuantModel& model, quant::AlgorithmContext& ctx, ReconMode mode,
                                    const ReconParams& rp, ReconKernels kernels) {
  ReconSession session(model, ctx, mode, rp, kernels);
  const auto& units = session.units();
  std::vector<UnitResult> results;
  const double n_units = static_cast<double>(units.size());
  for (size_t ui = 0; ui < units.size(); ++ui) {
    const auto& u = units[ui];
    const std::string where = u.name + " (" + std::to_string(ui + 1) + "/" + std::to_string(units.size()) + ")";
    if (u.skipped) {
      CellDetail d{"recon_units", u.name, {{"iters", 0.0}}, "first layer: not reconstructed (round to nearest)"};
      ctx.details.push_back(std::move(d));
      continue;
    }
    session.begin(ui);
    const int64_t iters = session.iters();
    for (int64_t it = 0; it < iters; ++it) {
      session.step(it);
      // Read back only when shown: on a GPU each read is a host sync.
      if (ctx.progress && (it % 50 == 0 || it + 1 == iters))
        ctx.progress((static_cast<double>(ui) + static_cast<double>(it + 1) / iters) / n_units,
                     std::string(recon_mode_name(mode)) + " " + where + " iter " + std::to_string(it + 1) + "/" +
                         std::to_string(iters) + " loss " + fmt(session.last_loss()));
    }
    UnitResult res = session.end();
    if (ctx.progress)
      ctx.progress(static_cast<double>(ui + 1) / n_units, std::string(recon_mode_name(mode)) + " " + where + " loss " +
                                                             fmt(res.initial_loss) + " -> " + fmt(res.final_loss));
    results.push_back(std::move(res));
  }
  session.bake();
  return results;
}

void ReconAlgorithm::apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  const ReconParams p = recon_options().read(ctx.settings);
  prepare_for_reconstruction(model, ctx, p.mse_p);
  reconstruct(model, ctx, mode_, p);
}

const OptionTable<ReconParams>& recon_options() {
  using T = OptionTable<ReconParams>;
  constexpr double inf = T::kInf;
  static const T table =
      T("ptq", "reconstruction")
          .integer("iters", &ReconParams::iters, 20000, 1, inf, "optimisation steps per unit",
                   "20000 (BRECQ/QDrop code; MQBench's AdaRound docs: 10000)")
          .integer("batch_size", &ReconParams::batch_size, 32, 1, 2147483647, "images per step", "32")
          .number("lambda", &ReconParams::lambda, 0.01, 0, false, inf, false, "weight of the rounding regulariser",
                  "0.01 (0.1 for MobileNetV2, 0.2 for MnasNet)")
          .number("beta_start", &ReconParams::beta_start, 20.0, 0, true, inf, false,
                  "regulariser exponent after the warm-up, annealed linearly to beta_end", "20")
          .number("beta_end", &ReconParams::beta_end, 2.0, 0, true, inf, false, "exponent at the last step", "2")
          .number("warmup", &ReconParams::warmup, 0.2, 0, false, 1, true,
                  "fraction of iters without the regulariser", "0.2")
          .number("lr", &ReconParams::lr, 1e-3, 0, true, inf, false, "Adam lr of the rounding variables V", "1e-3")
          .number("act_lr", &ReconParams::act_lr, 4e-5, 0, false, inf, false,
                  "Adam lr (cosine to 0) of the LSQ activation steps (brecq, qdrop; 0 keeps them)",
                  "4e-5 (BRECQ's paper: 4e-4 over 5000 iters)")
          .number("drop_prob", &ReconParams::drop_prob, 0.5, 0, false, 1, false,
                  "qdrop: probability that an input element is quantized", "0.5 (QDrop)")
          .number("mse_p", &ReconParams::mse_p, 2.4, 0, true, inf, false,
                  "Lp norm of the MSE observers that start every scale", "2.4")
          .integer("cache_mb", &ReconParams::cache_mb, 1024, 1, inf,
                   "unit caches above this size go to an unlinked temp file", "", /*in_key=*/false);
  return table;
}

void register_recon_engine(Registry<quant::AlgorithmEntry>& r) {
  const SettingsSection& settings = recon_options().section();
  r.add("adaround", {CellKind::Ptq,
                     "AdaRound: learned per-layer weight rounding on the layer output, MSE-calibrated activations "
                     "[Nagel et al. 2020, arXiv:2004.10568]",
                     [] { return std::make_unique<ReconAlgorithm>(ReconMode::AdaRound); }, settings});
  r.add("brecq", {CellKind::Ptq,
                  "BRECQ: block reconstruction of the weight rounding with LSQ activation step sizes "
                  "[Li et al. 2021, arXiv:2102.05426]",
                  [] { return std::make_unique<ReconAlgorithm>(ReconMode::Brecq); }, settings});
  r.add("qdrop", {CellKind::Ptq,
                  "QDrop: BRECQ with activation quantization randomly dropped during reconstruction "
                  "[Wei et al. 2022, arXiv:2203.05740]",
                  [] { return std::make_unique<ReconAlgorithm>(ReconMode::QDrop); }, settings});
}

}  // namespace qbench::ptq
