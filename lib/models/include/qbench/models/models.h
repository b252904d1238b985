#pragma once
// Architectures in the LibTorch C++ frontend, registered by name.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/qmodules.h"

namespace qbench::models {

struct ModelSpec {
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  int64_t image_size = 28;
};

struct ArchEntry {
  std::string description;
  std::function<std::shared_ptr<quant::QuantModel>(const ModelSpec&)> make;
};

Registry<ArchEntry>& arch_registry();

/// Builds an architecture with weights initialised from torch's global generator (seed it first).
std::shared_ptr<quant::QuantModel> make_model(const std::string& arch, const ModelSpec& spec);

/// Number of parameters (weights, biases, BN affine), excluding buffers.
int64_t parameter_count(torch::nn::Module& m);

}  // namespace qbench::models
