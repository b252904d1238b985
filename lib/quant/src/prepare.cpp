#include "qbench/quant/prepare.h"

#include "qbench/common/errors.h"
#include "qbench/quant/observer.h"

namespace qbench::quant {

namespace {
std::shared_ptr<QuantizerImpl> make_quantizer(QuantScheme scheme, int bits, const std::string& observer) {
  scheme.bits = bits;
  auto obs = observer_registry().get(observer).make(scheme);
  return std::make_shared<QuantizerImpl>(scheme, std::move(obs));
}
}  // namespace

int prepare_model(QuantModel& model, const Profile& profile, const PrepareOptions& opt) {
  const std::string wobs = opt.weight_observer.empty() ? profile.weight_observer : opt.weight_observer;
  const std::string aobs = opt.activation_observer.empty() ? profile.activation_observer : opt.activation_observer;
  int attached = 0;
  for (auto& ref : model.quant_layers()) {
    const bool edge = profile.first_last_8bit && (ref.is_first || ref.is_last);
    // 32 means float: a float tensor stays float even on the first/last layer.
    int wb = opt.w_bits == 32 ? 32 : (edge ? 8 : opt.w_bits);
    int ab = opt.a_bits == 32 ? 32 : (edge ? 8 : opt.a_bits);
    std::shared_ptr<FakeQuantizer> wq, aq;
    if (wb < 32) wq = make_quantizer(profile.weight, wb, wobs);
    if (ab < 32) aq = make_quantizer(profile.activation, ab, aobs);
    attached += (wq != nullptr) + (aq != nullptr);
    ref.layer->attach(wq, aq);
  }
  return attached;
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
}

}  // namespace qbench::quant
