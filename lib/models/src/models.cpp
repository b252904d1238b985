#include "qbench/models/models.h"

namespace qbench::models {

void register_cifar_resnets(Registry<ArchEntry>& r);

Registry<ArchEntry>& arch_registry() {
  static Registry<ArchEntry> reg = [] {
    Registry<ArchEntry> r("architecture");
    register_cifar_resnets(r);
    return r;
  }();
  return reg;
}

std::shared_ptr<quant::QuantModel> make_model(const std::string& arch, const ModelSpec& spec) {
  return arch_registry().get(arch).make(spec);
}

int64_t parameter_count(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace qbench::models
