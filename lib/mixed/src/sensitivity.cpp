#include "qbench/mixed/sensitivity.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <cmath>
#include <map>

#include "qbench/common/errors.h"
#include "qbench/quant/device.h"
#include "qbench/quant/observer.h"

namespace qbench::mixed {

namespace {

using Tensors = std::vector<at::Tensor>;

/// Hv for the summed chunk losses (one double backward per chunk).
Tensors hessian_vector(const std::function<at::Tensor(int)>& loss, int chunks, const Tensors& params, const Tensors& v) {
  Tensors hv;
  for (const auto& p : params) hv.push_back(at::zeros_like(p));
  for (int c = 0; c < chunks; ++c) {
    at::Tensor l = loss(c);
    Tensors g = torch::autograd::grad({l}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
    at::Tensor gv = at::zeros({}, l.options());
    for (std::size_t i = 0; i < params.size(); ++i) gv = gv + (g[i] * v[i]).sum();
    Tensors h = torch::autograd::grad({gv}, params, {}, /*retain_graph=*/false, /*create_graph=*/false);
    for (std::size_t i = 0; i < params.size(); ++i) hv[i] += h[i];
  }
  return hv;
}

/// The profile's scheme at `bits` with its observer, not yet calibrated.
std::shared_ptr<quant::QuantizerImpl> profile_quantizer(const quant::QuantScheme& base, const std::string& observer,
                                                        int bits) {
  quant::QuantScheme s = base;
  s.bits = bits;
  return std::make_shared<quant::QuantizerImpl>(s, quant::observer_registry().get(observer).make(s));
}

/// The profile's quantizer at `bits`, calibrated on `x`; returns Q(x).
at::Tensor quantize_like_profile(const quant::QuantScheme& base, const std::string& observer, int bits,
                                 const at::Tensor& x) {
  auto q = profile_quantizer(base, observer, bits);
  at::NoGradGuard ng;
  q->set_observing(true);
  q->forward(x);
  q->set_observing(false);
  q->compute_qparams();
  q->set_quantizing(true);
  return q->forward(x);
}

/// An identity "quantizer" on a layer's input that keeps what it saw (and its gradient).
class InputTap : public quant::FakeQuantizer {
 public:
  InputTap() : FakeQuantizer(quant::QuantScheme{}) {}
  at::Tensor forward(const at::Tensor& x) override {
    if (x.requires_grad()) x.retain_grad();
    seen = x;
    return x;
  }
  void compute_qparams() override {}
  std::string describe() const override { return "input tap"; }
  at::Tensor seen;
};

/// Attaches taps on every layer input (and the output taps) and removes them again.
struct Taps {
  std::vector<quant::LayerRef> layers;
  std::vector<std::shared_ptr<InputTap>> in;
  std::vector<at::Tensor> out;
  explicit Taps(quant::QuantModel& m, bool outputs) : layers(m.quant_layers()) {
    out.resize(layers.size());
    for (std::size_t k = 0; k < layers.size(); ++k) {
      in.push_back(std::make_shared<InputTap>());
      layers[k].layer->attach(nullptr, in.back());
      if (outputs)
        layers[k].layer->set_output_tap([this, k](const at::Tensor& y) {
          if (y.requires_grad()) y.retain_grad();
          out[k] = y;
        });
    }
  }
  ~Taps() {
    for (auto& l : layers) {
      l.layer->detach_input();
      l.layer->set_output_tap({});
    }
  }
};

at::Tensor chunk(const at::Tensor& t, int64_t bs, int c) {
  const int64_t start = c * bs;
  return t.narrow(0, start, std::min(bs, t.size(0) - start));
}

double sum_sq(const at::Tensor& t) { return t.to(at::kDouble).pow(2).sum().item<double>(); }

}  // namespace

Sensitivity layer_structure(quant::QuantModel& model, const at::Tensor& sample, std::size_t w_count,
                            std::size_t a_count) {
  at::NoGradGuard ng;
  Sensitivity out;
  Taps taps(model, false);
  model.eval();
  model.forward(quant::on_device(sample, quant::module_device(model)));
  std::map<const void*, int> group_of;
  for (std::size_t k = 0; k < taps.layers.size(); ++k) {
    LayerSensitivity ls;
    ls.name = taps.layers[k].name;
    ls.params = taps.layers[k].layer->weight_tensor().numel();
    ls.macs = taps.layers[k].layer->macs_per_sample();
    const at::Tensor& in = taps.in[k]->seen;
    ls.act_elems = in.numel() / std::max<int64_t>(1, in.size(0));
    ls.a_group = group_of.emplace(in.unsafeGetTensorImpl(), static_cast<int>(k)).first->second;
    ls.w_sens.assign(w_count, 0.0);
    ls.a_sens.assign(a_count, 0.0);
    out.layers.push_back(std::move(ls));
  }
  return out;
}

TraceEstimate hutchinson_trace(const std::function<at::Tensor(int)>& loss, int chunks, const Tensors& params,
                               int probes, double tolerance, uint64_t seed) {
  torch::autograd::AutoGradMode grad_on(true);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed * 0x9E3779B97F4A7C15ULL + 0x68757463ULL);
  const std::size_t n = params.size();
  std::vector<double> sum(n, 0), sum2(n, 0);
  TraceEstimate est;
  for (int p = 0; p < probes; ++p) {
    Tensors v;
    for (const auto& t : params) {
      at::Tensor r = at::randint(0, 2, t.sizes(), gen, at::TensorOptions().dtype(at::kFloat)) * 2 - 1;
      v.push_back(quant::on_device(r, t.device()).to(t.scalar_type()));
    }
    Tensors hv = hessian_vector(loss, chunks, params, v);
    for (std::size_t i = 0; i < n; ++i) {
      const double x = (hv[i] * v[i]).to(at::kDouble).sum().item<double>();
      sum[i] += x;
      sum2[i] += x * x;
    }
    est.probes = p + 1;
    if (est.probes < 8) continue;  // a standard error from fewer probes is itself too noisy
    bool done = true;
    for (std::size_t i = 0; i < n && done; ++i) {
      const double k = est.probes, mean = sum[i] / k;
      const double var = std::max(0.0, (sum2[i] - k * mean * mean) / (k - 1));
      if (std::sqrt(var / k) > tolerance * std::fabs(mean)) done = false;
    }
    if (done) break;
  }
  const double k = est.probes;
  for (std::size_t i = 0; i < n; ++i) {
    const double mean = sum[i] / k;
    const double var = k > 1 ? std::max(0.0, (sum2[i] - k * mean * mean) / (k - 1)) : 0.0;
    est.trace.push_back(mean);
    est.stderr_.push_back(std::sqrt(var / k));
  }
  return est;
}

std::vector<double> exact_trace(const std::function<at::Tensor(int)>& loss, int chunks, const Tensors& params) {
  torch::autograd::AutoGradMode grad_on(true);
  std::vector<double> tr;
  for (std::size_t i = 0; i < params.size(); ++i) {
    double t = 0;
    for (int64_t e = 0; e < params[i].numel(); ++e) {
      Tensors v;
      for (const auto& p : params) v.push_back(at::zeros_like(p));
      v[i].view({-1})[e] = 1;
      Tensors hv = hessian_vector(loss, chunks, params, v);
      t += hv[i].reshape({-1})[e].item<double>();
    }
    tr.push_back(t);
  }
  return tr;
}

Sensitivity measure_sensitivity(quant::QuantModel& model, const quant::Profile& profile, const at::Tensor& images,
                                const at::Tensor& labels, const SensitivityOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.measure != "hessian" && opt.measure != "fisher" && opt.measure != "loss")
    throw Error("unknown sensitivity measure '" + opt.measure + "'");
  for (auto* q : model.quantizers())
    if (q) throw Error("mixed precision: sensitivities are measured on the FP32 model, and it has quantizers");
  const at::Device device = quant::module_device(model);
  const bool was_training = model.is_training();
  model.eval();
  const int64_t n = images.size(0), bs = std::max<int64_t>(1, opt.batch_size);
  const int chunks = static_cast<int>((n + bs - 1) / bs);
  auto batch_images = [&](int c) { return quant::on_device(chunk(images, bs, c), device); };
  auto batch_labels = [&](int c) { return quant::on_device(chunk(labels, bs, c), device); };
  // Mean loss over all images = sum over chunks of (chunk sum) / n.
  auto chunk_loss = [&](int c) {
    at::Tensor logits = model.forward(batch_images(c));
    return at::cross_entropy_loss(logits, batch_labels(c), {}, at::Reduction::Sum) / static_cast<double>(n);
  };

  Sensitivity out;
  auto layers = model.quant_layers();
  out.layers.resize(layers.size());
  for (std::size_t k = 0; k < layers.size(); ++k) {
    out.layers[k].name = layers[k].name;
    out.layers[k].params = layers[k].layer->weight_tensor().numel();
    out.layers[k].w_sens.assign(opt.w_bits.size(), 0);
    out.layers[k].a_sens.assign(opt.a_bits.size(), 0);
  }
  const std::string wobs = profile.weight_observer, aobs = profile.activation_observer;
  // Each weight's quantized versions, once.
  std::vector<std::vector<at::Tensor>> wq(layers.size());
  for (std::size_t k = 0; k < layers.size(); ++k)
    for (int b : opt.w_bits)
      wq[k].push_back(quantize_like_profile(profile.weight, wobs, b, layers[k].layer->weight_tensor().detach()));

  {
    // One pass with taps: the shared input edges, the per-sample sizes, and for hessian and
    // fisher the first-order terms (gradients at inputs and outputs).
    torch::autograd::AutoGradMode grad_on(opt.measure != "loss");
    Taps taps(model, opt.measure == "fisher");
    std::map<const void*, int> group_of;
    for (int c = 0; c < chunks; ++c) {
      at::Tensor x = batch_images(c);
      if (opt.measure != "loss") x.requires_grad_(true);
      at::Tensor logits = model.forward(x);
      at::Tensor l = at::cross_entropy_loss(logits, batch_labels(c), {}, at::Reduction::Sum);
      if (opt.measure != "loss") l.backward({}, /*retain_graph=*/false);
      for (std::size_t k = 0; k < layers.size(); ++k) {
        auto& ls = out.layers[k];
        const at::Tensor& in = taps.in[k]->seen;
        if (!in.defined()) throw Error("mixed precision: layer " + layers[k].name + " saw no input");
        if (c == 0) {
          ls.macs = layers[k].layer->macs_per_sample();
          ls.act_elems = in.numel() / std::max<int64_t>(1, in.size(0));
          auto [it, fresh] = group_of.emplace(in.unsafeGetTensorImpl(), static_cast<int>(k));
          ls.a_group = it->second;
        }
        if (opt.measure == "loss") continue;
        // Activations: E[(Q_a(x) - x)^2 (dl/dx)^2] (per-sample gradients: the loss is a sum).
        const at::Tensor g = in.grad();
        if (!g.defined()) continue;
        const at::Tensor xd = in.detach();
        for (std::size_t j = 0; j < opt.a_bits.size(); ++j) {
          at::Tensor d = quantize_like_profile(profile.activation, aobs, opt.a_bits[j], xd) - xd;
          ls.a_sens[j] += (d * g).to(at::kDouble).pow(2).sum().item<double>() / static_cast<double>(n);
        }
        if (opt.measure != "fisher") continue;
        // Weights: the output change Q_b(W) causes, after the BatchNorm (eval: an affine map).
        const at::Tensor gy = taps.out[k].defined() ? taps.out[k].grad() : at::Tensor();
        if (!gy.defined()) continue;
        at::NoGradGuard ng;
        auto& w = layers[k].layer->weight_tensor();
        const at::Tensor w0 = w.detach().clone();
        quant::QuantLayer* layer = layers[k].layer;
        // The layer's own computation without quantizers or BN. Neither path calls the output
        // tap (QConv2d::forward stops before the BN; the linear one is recomputed here).
        auto plain = [&]() {
          if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(layer)) return conv->forward(xd);
          auto* lin = dynamic_cast<quant::QLinearImpl*>(layer);
          if (!lin) throw Error("mixed precision: layer " + layers[k].name + " is neither conv nor linear");
          return at::linear(xd, w, lin->bias);
        };
        const at::Tensor y0 = plain();
        for (std::size_t i = 0; i < opt.w_bits.size(); ++i) {
          w.copy_(wq[k][i]);
          at::Tensor dy = plain() - y0;
          if (auto* bn = layers[k].layer->bn()) {
            at::Tensor scale = bn->weight / at::sqrt(bn->running_var + bn->options.eps());
            dy = dy * scale.reshape({1, -1, 1, 1});
          }
          ls.w_sens[i] += (dy * gy).to(at::kDouble).pow(2).sum().item<double>() / static_cast<double>(n);
        }
        w.copy_(w0);
      }
    }
  }

  if (opt.measure == "hessian") {
    Tensors params;
    for (auto& ref : layers) params.push_back(ref.layer->weight_tensor());
    TraceEstimate est = hutchinson_trace(chunk_loss, chunks, params, opt.probes, opt.tolerance, opt.seed);
    out.probes_used = est.probes;
    for (std::size_t k = 0; k < layers.size(); ++k) {
      auto& ls = out.layers[k];
      ls.trace = est.trace[k];
      ls.trace_stderr = est.stderr_[k];
      const at::Tensor w = params[k].detach();
      // A negative estimate (a saddle direction of an unconverged model, or the estimator's
      // noise) counts as no sensitivity, never as a gain from quantizing.
      for (std::size_t i = 0; i < opt.w_bits.size(); ++i)
        ls.w_sens[i] = std::max(0.0, est.trace[k]) / static_cast<double>(w.numel()) * sum_sq(wq[k][i] - w);
    }
  } else if (opt.measure == "loss") {
    at::NoGradGuard ng;
    auto mean_loss = [&]() {
      double total = 0;
      for (int c = 0; c < chunks; ++c) total += chunk_loss(c).item<double>();
      return total;
    };
    const double base = mean_loss();
    for (std::size_t k = 0; k < layers.size(); ++k) {
      auto& ls = out.layers[k];
      auto& w = layers[k].layer->weight_tensor();
      const at::Tensor w0 = w.detach().clone();
      for (std::size_t i = 0; i < opt.w_bits.size(); ++i) {
        w.copy_(wq[k][i]);
        ls.w_sens[i] = mean_loss() - base;
      }
      w.copy_(w0);
      for (std::size_t j = 0; j < opt.a_bits.size(); ++j) {
        // The input quantizer calibrated on the images, then the loss with it alone.
        auto q = profile_quantizer(profile.activation, aobs, opt.a_bits[j]);
        if (quant::module_device(*q) != device) q->to(device);
        layers[k].layer->attach(nullptr, q);
        q->set_observing(true);
        for (int c = 0; c < chunks; ++c) model.forward(batch_images(c));
        q->set_observing(false);
        q->compute_qparams();
        q->set_quantizing(true);
        ls.a_sens[j] = mean_loss() - base;
        layers[k].layer->detach_input();
      }
    }
  }
  for (auto& p : model.parameters()) p.mutable_grad() = at::Tensor();
  if (was_training) model.train();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace qbench::mixed
