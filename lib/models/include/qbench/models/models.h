#pragma once
// Architectures in the LibTorch C++ frontend, registered by name. The ImageNet definitions use the
// parameter names and shapes of torchvision (resnet18/50, mobilenetv2) and timm
// (efficientnet-lite0, regnetx-600mf), so published weights load through safetensors.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "qbench/common/registry.h"
#include "qbench/quant/qmodules.h"

namespace qbench::models {

/// How an ImageNet network's stem meets the input: `imagenet` keeps the published stem (stride-4
/// ResNet stem, stride-2 convs); `small` adapts it to 28x28 / 32x32 input (3x3 stride-1 stem, no
/// max-pool, the first stride-2 stage at stride 1), the usual CIFAR adaptation.
enum class Stem { ImageNet, Small };
const char* stem_name(Stem s);
/// "imagenet" | "small"; "auto" resolves to small below 64 pixels. Throws UnknownNameError.
Stem resolve_stem(const std::string& name, int64_t image_size);

struct ModelSpec {
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  int64_t image_size = 28;
  double width = 1.0;         ///< width multiplier on every stage's channels (rounded per family)
  Stem stem = Stem::Small;    ///< ignored by the CIFAR-style nets, which are small by design
};

struct ArchEntry {
  std::string description;
  std::function<std::shared_ptr<quant::QuantModel>(const ModelSpec&)> make;
  /// Published figures at the reference configuration (3x224x224, 1000 classes, width 1, ImageNet
  /// stem), for `qbench list archs` and the tests; 0 when the arch has no published reference.
  int64_t published_params = 0;
  double published_gmacs = 0;
  std::string source;  ///< where the definition and its names come from
};

Registry<ArchEntry>& arch_registry();

/// Builds an architecture with weights initialised from torch's global generator (seed it first).
std::shared_ptr<quant::QuantModel> make_model(const std::string& arch, const ModelSpec& spec);

/// The reference configuration the published figures refer to (ImageNet: 3x224x224, 1000
/// classes; the CIFAR-style nets: 3x32x32, 10 classes).
ModelSpec reference_spec(const std::string& arch);

/// Non-trivial BatchNorm statistics and affine parameters (running mean N(0, 0.2), variance
/// U(0.5, 2), gamma U(0.5, 1.5), beta N(0, 0.2)) drawn from torch's global generator, for tests and
/// benchmarks of untrained networks, so that BN folding and integer lowering have real work to do.
void randomize_batchnorm(quant::QuantModel& m);

/// An untrained network for tests and benchmarks: make_model with torch's global generator seeded
/// with `seed`, then randomize_batchnorm, in eval mode. The same seed gives the same network.
std::shared_ptr<quant::QuantModel> random_model(const std::string& arch, const ModelSpec& spec, uint64_t seed);

/// Number of parameters (weights, biases, BN affine), excluding buffers.
int64_t parameter_count(torch::nn::Module& m);

/// Multiply-accumulates of one image through the conv and linear layers (what papers report as
/// MACs or "FLOPs"), measured by one forward pass at the spec's input size.
int64_t count_macs(quant::QuantModel& m, const ModelSpec& spec);

}  // namespace qbench::models
