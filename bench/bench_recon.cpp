// Reconstruction PTQ at the compute bound (issue 23), measured side by side in one run.
//
// Per unit (ResNet-20 basic blocks, a MobileNetV2 inverted-residual block; tensorrt profile, w4a4,
// the profile's BN folding; random weights, BN statistics randomised, N(0, 1) calibration images)
// and batch size: one reconstruction iteration of AdaRound, BRECQ and QDrop (ReconSession::step:
// batch draw, forward, loss and regulariser, backward, Adam) with the fused kernels and with the
// composed ATen form, against the bound: the same block's plain float forward, loss (at::mse_loss,
// ATen's one-kernel MSE), backward and torch::optim::Adam step over its parameters, on a batch
// already in place. AdaRound reconstructs layer by layer, so its iteration of a block is the sum
// of one iteration of each of the block's layers. Every step is taken after the regulariser's
// warm-up. The variants are timed in alternating blocks of steps, each keeping its best block, so
// that all of them see the same machine.
//
// --e2e: the end-to-end PTQ wall time (MSE calibration + reconstruction of every unit) of a QDrop
// cell like issue 23's (ResNet-20, tensorrt, w4a4, 1,024 images, 500 iterations per unit, batch
// 64, drop 0.5), with the fused kernels and with the composed form, one after the other. Minutes.
//
// --pieces: the fused pieces alone against ATen on a layer1-sized activation, and Adam over a block's
// learnables, torch::optim::Adam against FusedAdam. --spin N: N fused steps of the first unit,
// method and batch given, then N float steps (for a profiler; --trace FILE writes a chrome trace
// of five more steps).
//
//   qbench_bench_recon [--threads N] [--calib N] [--batch B]... [--unit ARCH:BLOCK]... [--method M]...
//                      [--reps R] [--rounds K] [--e2e] [--e2e-iters I] [--pieces] [--spin N [--trace FILE]]
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "qbench/common/memory.h"
#include "qbench/models/models.h"
#include "qbench/ptq/recon.h"
#include "qbench/ptq/recon_fused.h"
#include "qbench/quant/observers_extra.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"

using namespace qbench;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Unit {
  std::string arch, block;
};

const quant::Profile& profile() { return quant::profile_registry().get("tensorrt"); }

std::shared_ptr<quant::QuantModel> make(const std::string& arch) {
  at::manual_seed(0);
  auto m = models::make_model(arch, {1, 10, 28});
  models::randomize_batchnorm(*m);
  m->eval();
  quant::apply_bn_fold(*m, profile().bn_fold);
  return m;
}

quant::AlgorithmContext make_ctx(const at::Tensor& images) {
  quant::AlgorithmContext ctx;
  ctx.profile = &profile();
  ctx.w_bits = 4;
  ctx.a_bits = 4;
  ctx.seed = 0;
  ctx.calib_images = images;
  ctx.calib_batch_size = 256;
  return ctx;
}

ptq::ReconParams params(int64_t iters, int batch) {
  ptq::ReconParams p = ptq::recon_options().defaults();
  p.iters = iters;
  p.batch_size = batch;
  return p;
}

/// A prepared (MSE-calibrated) model and its context: one per set of kernels.
struct Prepared {
  std::shared_ptr<quant::QuantModel> model;
  quant::AlgorithmContext ctx;
};
Prepared prepare(const std::string& arch, const at::Tensor& images) {
  Prepared p{make(arch), make_ctx(images)};
  ptq::prepare_for_reconstruction(*p.model, p.ctx, ptq::recon_options().defaults().mse_p);
  return p;
}

/// The unit indices of `block` for a mode: the block itself, or (adaround) each of its layers.
std::vector<size_t> unit_indices(const ptq::ReconSession& s, const std::string& block) {
  std::vector<size_t> out;
  const auto& units = s.units();
  for (size_t i = 0; i < units.size(); ++i)
    if (units[i].name == block || units[i].name.rfind(block + ".", 0) == 0) out.push_back(i);
  return out;
}

/// The bound: the block's plain float forward, loss, backward and Adam step on a fixed batch.
class FloatStep {
 public:
  /// input_grad: the block's input needs its gradient too (as the first input quantizer's step does).
  FloatStep(const std::string& arch, const std::string& block, const std::vector<int64_t>& in_shape, int batch,
            bool input_grad = false)
      : model_(make(arch)) {
    for (const auto& b : model_->blocks())
      if (b.name == block) {
        block_ = b.block;
        for (auto& p : b.module->parameters()) {
          p.set_requires_grad(true);
          params_.push_back(p);
        }
      }
    if (!block_) throw std::runtime_error("no block " + block + " in " + arch);
    std::vector<int64_t> xs{batch};
    xs.insert(xs.end(), in_shape.begin(), in_shape.end());
    at::manual_seed(1);
    x_ = at::randn(xs).set_requires_grad(input_grad);
    {
      torch::NoGradGuard ng;
      y_ = at::randn(block_->forward_block(x_).sizes());
    }
    m_ = static_cast<double>(y_.numel() / y_.size(1));
    opt_ = std::make_unique<torch::optim::Adam>(params_, torch::optim::AdamOptions(1e-3));
  }
  void step() {
    opt_->zero_grad();
    if (x_.requires_grad()) x_.mutable_grad().reset();
    auto out = block_->forward_block(x_);
    // sum over channels, mean over the rest: the reconstruction loss's scale.
    auto loss = at::mse_loss(out, y_, at::Reduction::Sum) / m_;
    loss.backward();
    opt_->step();
  }

 private:
  std::shared_ptr<quant::QuantModel> model_;
  quant::BlockModule* block_ = nullptr;
  std::vector<at::Tensor> params_;
  at::Tensor x_, y_;
  double m_ = 1;
  std::unique_ptr<torch::optim::Adam> opt_;
};

/// Times the variants in alternating blocks of `reps` calls, `rounds` times; each keeps its best
/// block's mean (seconds per call).
std::vector<double> interleaved(const std::vector<std::function<void()>>& fs, int reps, int rounds) {
  std::vector<double> best(fs.size(), 1e30);
  for (auto& f : fs)
    for (int i = 0; i < 2; ++i) f();  // warm-up: first-touch allocations, caches
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < fs.size(); ++k) {
      const double t0 = now_s();
      for (int i = 0; i < reps; ++i) fs[k]();
      best[k] = std::min(best[k], (now_s() - t0) / reps);
    }
  return best;
}

struct Row {
  std::string method;
  double fused = 0, composed = 0, bound = 0, bound_dx = 0;
};

/// One method on one unit at one batch size: fused and composed sessions on their own prepared
/// models, interleaved with the float bound.
Row time_method(ptq::ReconMode mode, Prepared& pf, Prepared& pc, const Unit& u, int batch, int reps, int rounds) {
  const int64_t iters = 500;
  const ptq::ReconParams p = params(iters, batch);
  ptq::ReconSession sf(*pf.model, pf.ctx, mode, p, ptq::ReconKernels::Fused);
  ptq::ReconSession sc(*pc.model, pc.ctx, mode, p, ptq::ReconKernels::Composed);
  const auto idx = unit_indices(sf, u.block);
  if (idx.empty()) throw std::runtime_error("no unit " + u.block);
  Row row{ptq::recon_mode_name(mode)};
  row.bound = row.bound_dx = 1e30;
  std::unique_ptr<FloatStep> bound, bound_dx;
  // A block's layers one at a time (adaround), else the block itself.
  for (size_t i : idx) {
    sf.begin(i);
    sc.begin(i);
    if (!bound) {  // on the block's input (the first unit's)
      bound = std::make_unique<FloatStep>(u.arch, u.block, sf.input_shape(), batch);
      bound_dx = std::make_unique<FloatStep>(u.arch, u.block, sf.input_shape(), batch, /*input_grad=*/true);
    }
    const int64_t it = iters / 2;  // after the 20% warm-up: the regulariser is on
    auto t = interleaved({[&] { sf.step(it); }, [&] { sc.step(it); }, [&] { bound->step(); }, [&] { bound_dx->step(); }},
                         reps, rounds);
    row.fused += t[0];
    row.composed += t[1];
    row.bound = std::min(row.bound, t[2]);
    row.bound_dx = std::min(row.bound_dx, t[3]);
    sf.end();
    sc.end();
  }
  sf.bake();
  sc.bake();
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5, rounds = 5;
  int64_t calib = 1024, e2e_iters = 500, spin = 0;
  bool e2e = false, pieces = false;
  std::string trace;
  std::vector<std::string> methods;
  std::vector<int> batches;
  std::vector<Unit> units;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--calib" && i + 1 < argc) calib = std::atoll(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batches.push_back(std::atoi(argv[++i]));
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (a == "--e2e") e2e = true;
    else if (a == "--method" && i + 1 < argc) methods.push_back(argv[++i]);
    else if (a == "--spin" && i + 1 < argc) spin = std::atoll(argv[++i]);
    else if (a == "--trace" && i + 1 < argc) trace = argv[++i];
    else if (a == "--pieces") pieces = true;
    else if (a == "--e2e-iters" && i + 1 < argc) e2e_iters = std::atoll(argv[++i]);
    else if (a == "--unit" && i + 1 < argc) {
      std::string v = argv[++i];
      const auto colon = v.find(':');
      if (colon == std::string::npos) {
        std::fprintf(stderr, "--unit ARCH:BLOCK, e.g. resnet20:layer1.1\n");
        return 2;
      }
      units.push_back({v.substr(0, colon), v.substr(colon + 1)});
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--calib N] [--batch B]... [--unit ARCH:BLOCK]... [--method M]... [--reps R] "
                   "[--rounds K] [--e2e] [--e2e-iters I] [--pieces] [--spin N [--trace FILE]]\n",
                   argv[0]);
      return 2;
    }
  }
  if (batches.empty()) batches = {32, 64};
  if (methods.empty()) methods = {"adaround", "brecq", "qdrop"};
  if (units.empty())
    units = {{"resnet20", "layer1.1"}, {"resnet20", "layer2.1"}, {"resnet20", "layer3.1"}, {"mobilenetv2", "features.5"}};
  const std::string alloc = tune_allocator();
  at::set_num_threads(threads);
  at::manual_seed(2);
  const auto images = at::randn({calib, 1, 28, 28});
  std::printf("reconstruction iteration vs the float bound (forward + loss + backward + Adam of the same block)\n");
  std::printf("tensorrt profile, w4a4, %lld calibration images, %d threads, allocator %s; ms per iteration, best of %d "
              "blocks of %d\n",
              static_cast<long long>(calib), threads, alloc.c_str(), rounds, reps);
  std::printf("%-24s %5s %-9s %8s %8s %8s %8s %10s %10s %9s\n", "unit", "batch", "method", "fused", "composed",
              "bound", "bound+dx", "fused/bnd", "comp/bnd", "speed-up");
  auto mode_of = [](const std::string& m) {
    return m == "adaround" ? ptq::ReconMode::AdaRound : m == "brecq" ? ptq::ReconMode::Brecq : ptq::ReconMode::QDrop;
  };
  if (pieces) {  // the fused pieces alone, on a layer1-sized activation
    auto x = at::randn({64, 16, 28, 28}), r = at::randn({64, 16, 28, 28});
    auto s = at::full({1}, 0.2f).set_requires_grad(true);
    auto xg = x.clone().set_requires_grad(true);
    // The input's gradient taken (not accumulated) each time, as in a step.
    auto fwd_bwd = [&](auto&& f) {
      xg.mutable_grad().reset();
      s.mutable_grad().reset();
      f().backward(r);
    };
    auto t = interleaved({[&] { fwd_bwd([&] { return ptq::act_quant_drop(xg, s, -8, 7, 0.01, 0.5, 7); }); },
                          [&] { fwd_bwd([&] { return ptq::act_quant_drop(xg, s, -8, 7, 0.01, 1.0, 7); }); },
                          [&] { fwd_bwd([&] { return at::relu(xg); }); },
                          [&] { auto c = x.clone(); }},
                         reps, rounds);
    std::printf("act quant+drop fwd+bwd %.3f ms, no drop %.3f ms, relu fwd+bwd %.3f ms, copy %.3f ms\n", t[0] * 1e3,
                t[1] * 1e3, t[2] * 1e3, t[3] * 1e3);
    at::Tensor keep;
    auto t2 = interleaved({[&] { keep = ptq::drop_mask(7, x.numel(), 0.5); },
                           [&] { keep = ptq::act_quant_drop(x, s.detach(), -8, 7, 0.01, 0.5, 7); },
                           [&] { keep = ptq::act_quant_drop(x, s.detach(), -8, 7, 0.01, 1.0, 7); },
                           [&] { keep = ptq::rec_loss_fused(x, r); }},
                          reps, rounds);
    std::printf("mask %.3f ms, act fwd drop %.3f ms, no drop %.3f ms, loss fwd %.3f ms\n", t2[0] * 1e3, t2[1] * 1e3,
                t2[2] * 1e3, t2[3] * 1e3);
    // A residual add of two quantized operands and ReLU, fused against the three ops (operand b
    // without a gradient, as the block input is).
    {
      auto a = x.clone().set_requires_grad(true), b = r.clone() * 0.5;
      auto sa = at::full({1}, 0.2f).set_requires_grad(true), sb = at::full({1}, 0.1f).set_requires_grad(true);
      auto reset = [&] {
        a.mutable_grad().reset();
        sa.mutable_grad().reset();
        sb.mutable_grad().reset();
      };
      // p = 0.5 (QDrop) and 1 (no mask), each fused and as the three ops.
      auto fused = [&](double p) {
        reset();
        ptq::quant_add_fused(a, b, {sa, -8, 7, 0.01, p, 3}, {sb, -8, 7, 0.01, p, 4}, true).backward(r);
      };
      auto three = [&](double p) {
        reset();
        at::relu(ptq::act_quant_drop(a, sa, -8, 7, 0.01, p, 3) + ptq::act_quant_drop(b, sb, -8, 7, 0.01, p, 4)).backward(r);
      };
      auto t5 = interleaved({[&] { fused(0.5); }, [&] { three(0.5); }, [&] { fused(1.0); }, [&] { three(1.0); }}, reps,
                            rounds);
      std::printf("quantized add + relu fwd+bwd: drop fused %.3f ms, three ops %.3f ms; no drop fused %.3f ms, three "
                  "ops %.3f ms\n",
                  t5[0] * 1e3, t5[1] * 1e3, t5[2] * 1e3, t5[3] * 1e3);
    }
    // The batch draw: 64 random rows of layer1-sized caches of 1,024 rows (three caches, 154 MB,
    // as a block's quantized input, float input and target), with QDrop's mix and without.
    {
      auto ca = at::randn({1024, 16, 28, 28}), cb = at::randn({1024, 16, 28, 28}), cy = at::randn({1024, 16, 28, 28});
      auto xb = at::empty({64, 16, 28, 28}), yb = at::empty({64, 16, 28, 28});
      auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
      auto draw = [&] { return at::randperm(1024, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, 64); };
      auto t3 = interleaved({[&] { ptq::gather_rows(ca, &cb, draw(), 0.5, 11, xb); },
                             [&] { ptq::gather_rows(ca, nullptr, draw(), 1.0, 0, xb); },
                             [&] { ptq::gather_rows(cy, nullptr, draw(), 1.0, 0, yb); }},
                            reps, rounds);
      std::printf("batch draw of 64 rows: input with QDrop's mix %.3f ms, without %.3f ms, target %.3f ms\n",
                  t3[0] * 1e3, t3[1] * 1e3, t3[2] * 1e3);
    }
    // Adam over a basic block's learnables (two 16x16x3x3 V, four step sizes): torch::optim::Adam
    // (two optimisers, as the composed form) against one FusedAdam.
    std::vector<at::Tensor> pt, pf;
    for (auto shape : std::vector<std::vector<int64_t>>{{16, 16, 3, 3}, {16, 16, 3, 3}, {1}, {1}, {1}, {1}}) {
      pt.push_back(at::randn(shape).set_requires_grad(true));
      pf.push_back(pt.back().detach().clone().set_requires_grad(true));
    }
    torch::optim::Adam ta({pt[0], pt[1]}, torch::optim::AdamOptions(1e-3));
    torch::optim::Adam tb({pt[2], pt[3], pt[4], pt[5]}, torch::optim::AdamOptions(4e-5));
    ptq::FusedAdam fa;
    fa.add_group({pf[0], pf[1]}, 1e-3);
    fa.add_group({pf[2], pf[3], pf[4], pf[5]}, 4e-5);
    auto t3 = interleaved({[&] {
                             ta.zero_grad();
                             tb.zero_grad();
                             for (auto& p : pt) p.mutable_grad() = at::ones_like(p);
                             ta.step();
                             tb.step();
                           },
                           [&] {
                             for (auto& p : pf) p.mutable_grad() = at::ones_like(p);
                             fa.step();
                           }},
                          reps, rounds);
    std::printf("Adam over a block's V and steps: torch::optim::Adam %.1f us, FusedAdam %.1f us\n", t3[0] * 1e6,
                t3[1] * 1e6);
    // The MSE observer's search (prepare_for_reconstruction runs it for every quantizer, p = 2.4):
    // a per-tensor activation at its 1M-sample cap, and a per-channel 64x64x3x3 weight.
    for (bool act : {true, false}) {
      quant::QuantScheme sch;
      sch.bits = 4;
      sch.symmetric = true;
      sch.signedness = quant::Signedness::Signed;
      sch.granularity = act ? quant::Granularity::PerTensor : quant::Granularity::PerChannel;
      quant::MseObserver o(sch, 2.4);
      o.update(act ? at::randn({1 << 20}) : at::randn({64, 64, 3, 3}));
      auto t4 = interleaved({[&] { o.compute(); }, [&] { o.compute_composed(); }}, 1, rounds);
      std::printf("MSE observer search, %s: fused %.1f ms, composed %.1f ms (%.1fx)\n",
                  act ? "activation, 1M samples, 95 candidates" : "64x64x3x3 weight per channel, 80 candidates",
                  t4[0] * 1e3, t4[1] * 1e3, t4[1] / t4[0]);
    }
    return 0;
  }
  if (spin > 0) {
    Prepared pf = prepare(units[0].arch, images);
    ptq::ReconSession s(*pf.model, pf.ctx, mode_of(methods[0]), params(500, batches[0]), ptq::ReconKernels::Fused);
    s.begin(unit_indices(s, units[0].block).front());
    const double t0 = now_s();
    for (int64_t i = 0; i < spin; ++i) s.step(250);
    const double t_fused = (now_s() - t0) / static_cast<double>(spin);
    if (!trace.empty()) {  // a chrome trace of 5 more steps
      torch::autograd::profiler::RecordProfile guard(trace);
      for (int i = 0; i < 5; ++i) s.step(250);
    }
    FloatStep bound(units[0].arch, units[0].block, s.input_shape(), batches[0]);
    const double t1 = now_s();
    for (int64_t i = 0; i < spin; ++i) bound.step();
    const double t_bound = (now_s() - t1) / static_cast<double>(spin);
    std::printf("%s %s batch %d: %.2f ms per fused step, bound %.2f ms (not interleaved: for profiling)\n",
                units[0].block.c_str(), methods[0].c_str(), batches[0], t_fused * 1e3, t_bound * 1e3);
    return 0;
  }
  for (const auto& u : units) {
    Prepared pf = prepare(u.arch, images), pc = prepare(u.arch, images);
    for (int batch : batches) {
      for (const auto& mname : methods) {
        const auto mode = mode_of(mname);
        const Row r = time_method(mode, pf, pc, u, batch, reps, rounds);
        std::printf("%-24s %5d %-9s %8.2f %8.2f %8.2f %8.2f %9.2fx %9.2fx %8.2fx\n", (u.arch + ":" + u.block).c_str(),
                    batch, r.method.c_str(), r.fused * 1e3, r.composed * 1e3, r.bound * 1e3, r.bound_dx * 1e3,
                    r.fused / r.bound, r.composed / r.bound, r.composed / r.fused);
        std::fflush(stdout);
      }
    }
  }
  if (e2e) {
    std::printf("\nend to end: QDrop, resnet20, tensorrt w4a4, %lld images, %lld iterations per unit, batch 64, "
                "drop 0.5, %d threads\n",
                static_cast<long long>(calib), static_cast<long long>(e2e_iters), threads);
    double t[2] = {0, 0};
    const ptq::ReconKernels kinds[2] = {ptq::ReconKernels::Fused, ptq::ReconKernels::Composed};
    for (int k = 0; k < 2; ++k) {
      auto m = make("resnet20");
      auto ctx = make_ctx(images);
      const auto p = params(e2e_iters, 64);
      const double t0 = now_s();
      ptq::prepare_for_reconstruction(*m, ctx, p.mse_p);
      ptq::reconstruct(*m, ctx, ptq::ReconMode::QDrop, p, kinds[k]);
      t[k] = now_s() - t0;
      std::printf("  %-8s %8.1f s\n", k == 0 ? "fused" : "composed", t[k]);
      std::fflush(stdout);
    }
    std::printf("  composed / fused %.2fx\n", t[1] / t[0]);
  }
  return 0;
}
