#include "qbench/qat/qat.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/quant/device.h"
#include "qbench/quant/prepare.h"

namespace qbench::qat {

int attach_qat_quantizers(quant::QuantModel& model, const QatMethod& method, const quant::Profile& profile,
                          int w_bits, int a_bits) {
  // The QAT quantizers learn their scales freely: a profile that restricts scales to powers of
  // two (vitis) would be violated silently, so it is refused until a PoT-aware method (TQT) exists.
  if (profile.weight.pot_scale || profile.activation.pot_scale)
    throw Error("profile " + profile.name +
                " needs power-of-two scales, which the QAT quantizers do not keep (TQT is planned); use a PTQ "
                "algorithm with this profile");
  // Same placement as PTQ (lib/quant attach_quantizers), with the method's quantizers.
  return quant::attach_quantizers(model, profile, w_bits, a_bits, {method.make_weight, method.make_activation});
}

void init_quantizers(quant::QuantModel& model, const at::Tensor& images, int64_t batch_size) {
  if (!images.defined() || images.size(0) == 0) throw Error("QAT needs initialisation images (qat.init_images > 0)");
  torch::NoGradGuard no_grad;
  model.eval();
  quant::set_quantizing(model, false);
  quant::set_observing(model, true);
  const at::Device device = quant::module_device(model);  // images may stay on the CPU: batches move
  const int64_t n = images.size(0), bs = std::max<int64_t>(1, batch_size);
  for (int64_t start = 0; start < n; start += bs) {
    check_interrupt();
    model.forward(quant::on_device(images.narrow(0, start, std::min(bs, n - start)), device));
  }
  quant::set_observing(model, false);
  quant::compute_all_qparams(model);
  quant::set_quantizing(model, true);
}

void QatAlgorithm::apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  if (!ctx.profile) throw Error(method_ + ": no profile");
  if (!ctx.finetune) throw Error(method_ + ": the QAT runner needs a fine-tuning loop from the pipeline");
  const auto& method = qat_method_registry().get(method_);
  attach_qat_quantizers(model, method, *ctx.profile, ctx.w_bits, ctx.a_bits);
  if (ctx.progress) ctx.progress(0.0, "initialising quantizers");
  init_quantizers(model, ctx.init_images, ctx.calib_batch_size);
  ctx.finetune(model);
}

void register_algorithms(Registry<quant::AlgorithmEntry>& r) {
  for (const auto& e : qat_method_registry().entries()) {
    const std::string name = e.first;
    quant::AlgorithmEntry entry{CellKind::Qat, "QAT: " + e.second.description + " [" + e.second.paper + "]",
                                [name] { return std::make_unique<QatAlgorithm>(name); }};
    entry.nonuniform = e.second.nonuniform;
    r.add(name, std::move(entry));
  }
}

}  // namespace qbench::qat
