#include "qbench/quant/prepare.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/common/strings.h"
#include "qbench/quant/device.h"
#include "qbench/quant/observer.h"

namespace qbench::quant {

namespace {
std::shared_ptr<FakeQuantizer> make_quantizer(QuantScheme scheme, int bits,
                                              const std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)>& f) {
  if (bits >= 32) return nullptr;
  scheme.bits = bits;
  return f(scheme);
}

void warn_unimplemented_once(const Profile& p) {
  if (p.spec.unimplemented_placements.empty()) return;
  static std::mutex mu;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> lock(mu);
  if (!warned.insert(p.name).second) return;
  Progress::global().note("warning: profile " + p.name + ": placement " + join(p.spec.unimplemented_placements, ", ") +
                          " is not implemented yet; those tensors stay float (" + p.spec.file + ")");
}
}  // namespace

int attach_quantizers(QuantModel& model, const Profile& profile, int w_bits, int a_bits,
                      const QuantizerFactory& make) {
  if (!profile.spec.not_implemented.empty())
    throw Error("profile " + profile.name + " cannot run: " + join(profile.spec.not_implemented, "; "));
  warn_unimplemented_once(profile);
  const auto& spec = profile.spec;
  // Placement flags: a profile built in code (no file) behaves like academic.
  const bool from_file = !spec.placement.empty();
  const bool layer_inputs = !from_file || spec.places("conv_linear_inputs");
  const bool graph_input = spec.places("graph_input");
  const int wb_cell = from_file ? effective_bits(profile, true, w_bits) : w_bits;
  const int ab_cell = from_file ? effective_bits(profile, false, a_bits) : a_bits;
  // 8 capped by max_bits (openvino's 7-bit weights stay 7-bit on the first/last layer too).
  const int wb_edge = w_bits >= 32 ? 32 : (from_file ? std::min(8, spec.weight.max_bits) : 8);
  const int ab_edge = a_bits >= 32 ? 32 : (from_file ? std::min(8, spec.activation.max_bits) : 8);
  // Quantizers are built on the CPU; they join the model on its device (layers move theirs in
  // QuantLayer::attach, adds hold no tensor of their own to take it from).
  const at::Device device = module_device(model);
  auto placed = [&device](std::shared_ptr<FakeQuantizer> q) {
    if (q && module_device(*q) != device) q->to(device);
    return q;
  };
  int attached = 0;
  for (auto& ref : model.quant_layers()) {
    const bool edge = profile.first_last_8bit && (ref.is_first || ref.is_last);
    // 32 means float: a float tensor stays float even on the first/last layer.
    int wb = edge ? wb_edge : wb_cell;
    int ab = edge ? ab_edge : ab_cell;
    // Mixed precision: the allocation's widths (already within the profile's allowed set and
    // its first/last policy, lib/mixed) replace the cell's.
    if (auto it = model.bit_allocation().find(ref.name); it != model.bit_allocation().end()) {
      wb = from_file ? effective_bits(profile, true, it->second.w) : it->second.w;
      ab = from_file ? effective_bits(profile, false, it->second.a) : it->second.a;
    }
    auto wq = make_quantizer(profile.weight, wb, make.weight);
    std::shared_ptr<FakeQuantizer> aq;
    if (layer_inputs || (graph_input && ref.is_first)) aq = make_quantizer(profile.activation, ab, make.activation);
    attached += (wq != nullptr) + (aq != nullptr);
    ref.layer->attach(wq, aq);
    ref.layer->set_bias_int32(spec.bias == "int32");
  }
  for (auto& ref : model.adds()) {
    if (spec.places("add_inputs")) {
      auto qa = placed(make_quantizer(profile.activation, ab_cell, make.activation));
      auto qb = placed(make_quantizer(profile.activation, ab_cell, make.activation));
      attached += (qa != nullptr) + (qb != nullptr);
      ref.add->attach_inputs(qa, qb);
    }
    if (spec.places("add_outputs")) {
      auto qo = placed(make_quantizer(profile.activation, ab_cell, make.activation));
      attached += qo != nullptr;
      ref.add->attach_output(qo);
    }
  }
  return attached;
}

int prepare_model(QuantModel& model, const Profile& profile, const PrepareOptions& opt) {
  const std::string wobs = opt.weight_observer.empty() ? profile.weight_observer : opt.weight_observer;
  const std::string aobs = opt.activation_observer.empty() ? profile.activation_observer : opt.activation_observer;
  auto fixed = [](const std::string& observer) {
    return [observer](const QuantScheme& s) -> std::shared_ptr<FakeQuantizer> {
      return std::make_shared<QuantizerImpl>(s, observer_registry().get(observer).make(s));
    };
  };
  return attach_quantizers(model, profile, opt.w_bits, opt.a_bits, {fixed(wobs), fixed(aobs)});
}

void set_observing(QuantModel& model, bool on) {
  for (auto* q : model.quantizers()) q->set_observing(on);
}

void set_quantizing(QuantModel& model, bool on) {
  for (auto* q : model.quantizers()) q->set_quantizing(on);
}

void compute_all_qparams(QuantModel& model) {
  for (auto& ref : model.quant_layers()) {
    try {
      if (auto* q = ref.layer->input_quantizer()) q->compute_qparams();
      if (auto* q = ref.layer->weight_quantizer()) q->compute_qparams();
    } catch (const Error& e) {
      throw Error("layer " + ref.name + ": " + e.what());
    }
  }
  for (auto& ref : model.adds()) {
    try {
      for (auto* q : {ref.add->input_quantizer(0), ref.add->input_quantizer(1), ref.add->output_quantizer()})
        if (q) q->compute_qparams();
    } catch (const Error& e) {
      throw Error("add " + ref.name + ": " + e.what());
    }
  }
}

void calibrate(QuantModel& model, const at::Tensor& images, int64_t batch_size,
               const std::function<void(int64_t, int64_t)>& after_batch) {
  at::NoGradGuard no_grad;
  model.eval();
  set_quantizing(model, false);
  set_observing(model, true);
  const at::Device device = module_device(model);  // images may stay on the CPU: batches move
  const int64_t n = images.size(0), bs = std::max<int64_t>(1, batch_size);
  for (int64_t start = 0; start < n; start += bs) {
    model.forward(on_device(images.narrow(0, start, std::min(bs, n - start)), device));
    if (after_batch) after_batch(std::min(n, start + bs), n);
  }
  set_observing(model, false);
  compute_all_qparams(model);
  set_quantizing(model, true);
}

}  // namespace qbench::quant
