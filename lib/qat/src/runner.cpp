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
  return quant::attach_quantizers(model, profile, w_bits, a_bits, {method.make_weight, qat_activation_factory(method)});
}

std::function<std::shared_ptr<FakeQuantizer>(const QuantScheme&)> qat_activation_factory(const QatMethod& method) {
  // An unsigned *affine* activation (uint8 with a zero point: x86-onednn, fbgemm, qnnpack, tvm...)
  // holds negative values through its zero point, as the PTQ observers' grids do. Most QAT methods
  // learn no offset: handed "unsigned" they clip at 0, which on a signed edge (a residual add's
  // operand, a linear bottleneck, normalised images) turns the quantizer into a ReLU and breaks the
  // network. They get "auto" instead: unsigned where the observed input is non-negative, else
  // their signed grid [-2^(b-1), 2^(b-1) - 1], which is the unsigned grid with zero point 2^(b-1)
  // (the integer lowering maps it so). LSQ+ learns its offset on the unsigned grid either way.
  // An unsigned *symmetric* scheme (no zero point) keeps its meaning: negatives clip.
  return [make = method.make_activation](const quant::QuantScheme& s) {
    quant::QuantScheme t = s;
    if (!t.symmetric && t.signedness == quant::Signedness::Unsigned) t.signedness = quant::Signedness::Auto;
    return make(t);
  };
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

std::vector<quant::QParams> mse_ranges(quant::QuantModel& model, const quant::Profile& profile, int w_bits,
                                       int a_bits, const at::Tensor& images, int64_t batch_size) {
  quant::PrepareOptions opt;
  opt.w_bits = w_bits;
  opt.a_bits = a_bits;
  opt.weight_observer = opt.activation_observer = "mse";
  quant::prepare_model(model, profile, opt);
  model.eval();
  quant::calibrate(model, images, batch_size, [](int64_t, int64_t) { check_interrupt(); });
  std::vector<quant::QParams> out;
  for (auto* q : model.quantizers()) {
    auto qp = q->affine_qparams();
    if (!qp) throw Error("mse_ranges: an observer-calibrated quantizer has no affine grid");
    out.push_back(*qp);
  }
  quant::set_quantizing(model, false);
  return out;
}

int restart_ranges(quant::QuantModel& model, const std::vector<quant::QParams>& ranges) {
  auto qs = model.quantizers();
  if (qs.size() != ranges.size())
    throw Error("restart_ranges: " + std::to_string(ranges.size()) + " ranges for " + std::to_string(qs.size()) +
                " quantizers (the placement changed between the two attaches)");
  torch::NoGradGuard no_grad;
  int taken = 0;
  for (size_t i = 0; i < qs.size(); ++i) taken += qs[i]->init_range(ranges[i]) ? 1 : 0;
  return taken;
}

void QatAlgorithm::apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  if (!ctx.profile) throw Error(method_ + ": no profile");
  if (!ctx.finetune) throw Error(method_ + ": the QAT runner needs a fine-tuning loop from the pipeline");
  const auto& method = qat_method_registry().get(method_);
  if (ctx.qat_range_init != "paper" && ctx.qat_range_init != "mse")
    throw Error(method_ + ": unknown range_init '" + ctx.qat_range_init + "' (paper|mse)");
  if (ctx.progress) ctx.progress(0.0, "initialising quantizers");
  std::vector<quant::QParams> start;
  if (ctx.qat_range_init == "mse")
    start = mse_ranges(model, *ctx.profile, ctx.w_bits, ctx.a_bits, ctx.init_images, ctx.calib_batch_size);
  attach_qat_quantizers(model, method, *ctx.profile, ctx.w_bits, ctx.a_bits);
  init_quantizers(model, ctx.init_images, ctx.calib_batch_size);
  if (!start.empty()) {
    const int taken = restart_ranges(model, start);
    ctx.details.push_back({"qat_range_init",
                           "mse",
                           {{"quantizers", static_cast<double>(start.size())}, {"restarted", static_cast<double>(taken)}},
                           "learnable ranges started from the MSE observer's; the rest kept the method's own start"});
  }
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
