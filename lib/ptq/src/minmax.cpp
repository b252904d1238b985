#include <ATen/ATen.h>
#include <torch/utils.h>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/ptq/ptq.h"
#include "qbench/ptq/recon.h"
#include "qbench/quant/prepare.h"

namespace qbench::ptq {

void calibrate_observers(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  if (!ctx.calib_images.defined() || ctx.calib_images.size(0) == 0)
    throw Error("PTQ calibration needs calibration images (ptq.calib_images > 0)");
  quant::calibrate(model, ctx.calib_images, ctx.calib_batch_size, [&](int64_t done, int64_t n) {
    check_interrupt();
    if (ctx.progress) ctx.progress(static_cast<double>(done) / n, "calibrating");
  });
}

void MinMaxCalibration::apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  if (!ctx.profile) throw Error("minmax: no profile");
  quant::PrepareOptions opt;
  opt.w_bits = ctx.w_bits;
  opt.a_bits = ctx.a_bits;
  opt.weight_observer = "minmax";
  opt.activation_observer = "minmax";
  quant::prepare_model(model, *ctx.profile, opt);
  calibrate_observers(model, ctx);
}

void ObserverCalibration::apply(quant::QuantModel& model, quant::AlgorithmContext& ctx) {
  if (!ctx.profile) throw Error("calibrate: no profile");
  quant::PrepareOptions opt;
  opt.w_bits = ctx.w_bits;
  opt.a_bits = ctx.a_bits;
  opt.weight_observer = ctx.weight_observer;
  opt.activation_observer = ctx.activation_observer;
  quant::prepare_model(model, *ctx.profile, opt);
  calibrate_observers(model, ctx);
}

void register_minmax(Registry<quant::AlgorithmEntry>& r) {
  r.add("minmax", {CellKind::Ptq,
                   "PTQ observer calibration: min/max ranges of weights and activations on N training images",
                   [] { return std::make_unique<MinMaxCalibration>(); }});
  r.add("calibrate", {CellKind::Ptq,
                      "PTQ observer calibration with the observers named in pipeline.ptq.observer (mse, kl, percentile...)",
                      [] { return std::make_unique<ObserverCalibration>(); }});
}

}  // namespace qbench::ptq
