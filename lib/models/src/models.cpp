#include "qbench/models/models.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "qbench/common/errors.h"
#include "qbench/quant/device.h"

namespace qbench::models {

// Generated from the qbench_registry_entry(archs ...) lines of lib/models/CMakeLists.txt: an
// architecture is its own file plus that line.
void fill_archs(Registry<ArchEntry>& r);

Registry<ArchEntry>& arch_registry() {
  static Registry<ArchEntry> reg("architecture", fill_archs);
  return reg;
}

const char* stem_name(Stem s) { return s == Stem::Small ? "small" : "imagenet"; }

Stem resolve_stem(const std::string& name, int64_t image_size) {
  if (name == "auto") return image_size < 64 ? Stem::Small : Stem::ImageNet;
  if (name == "small") return Stem::Small;
  if (name == "imagenet") return Stem::ImageNet;
  throw UnknownNameError("unknown stem '" + name + "'" + did_you_mean(name, {"auto", "small", "imagenet"}));
}

std::shared_ptr<quant::QuantModel> make_model(const std::string& arch, const ModelSpec& spec) {
  if (!(spec.width > 0)) throw Error("architecture " + arch + ": width multiplier must be > 0");
  return arch_registry().get(arch).make(spec);
}

ModelSpec reference_spec(const std::string& arch) {
  const auto& e = arch_registry().get(arch);
  if (e.published_params == 0) return ModelSpec{3, 10, 32, 1.0, Stem::Small};
  return ModelSpec{3, 1000, 224, 1.0, Stem::ImageNet};
}

void randomize_batchnorm(quant::QuantModel& m) {
  at::NoGradGuard ng;
  for (auto& ref : m.quant_layers()) {
    if (!ref.bn) continue;
    const int64_t c = ref.bn->running_mean.size(0);
    ref.bn->running_mean.copy_(at::randn({c}) * 0.2);
    ref.bn->running_var.copy_(at::rand({c}) * 1.5 + 0.5);
    ref.bn->weight.copy_(at::rand({c}) + 0.5);
    ref.bn->bias.copy_(at::randn({c}) * 0.2);
  }
}

std::shared_ptr<quant::QuantModel> random_model(const std::string& arch, const ModelSpec& spec, uint64_t seed) {
  at::manual_seed(seed);
  auto m = make_model(arch, spec);
  randomize_batchnorm(*m);
  m->eval();
  return m;
}

int64_t parameter_count(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t count_macs(quant::QuantModel& m, const ModelSpec& spec) {
  const bool was_training = m.is_training();
  m.eval();
  {
    c10::NoGradGuard ng;
    m.forward(at::zeros({1, spec.in_channels, spec.image_size, spec.image_size},
                        at::TensorOptions().device(quant::module_device(m))));
  }
  m.train(was_training);
  int64_t macs = 0;
  for (const auto& l : m.quant_layers()) macs += l.layer->macs_per_sample();
  return macs;
}

}  // namespace qbench::models
