#pragma once
// Where a model lives. Models are built (and randomly initialised) on the CPU and then moved with
// Module::to(device); everything else follows the model: data batches are moved to its device as
// they are used, tensors the library creates take the device of the tensors they combine with,
// and random draws come from seeded CPU generators and are moved afterwards, so a seed draws the
// same numbers on every device.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>

namespace qbench::quant {

/// The device of a module's first parameter (else its first buffer); the CPU when it has neither.
inline at::Device module_device(const torch::nn::Module& m) {
  for (const auto& p : m.parameters(/*recurse=*/true))
    if (p.defined()) return p.device();
  for (const auto& b : m.buffers(/*recurse=*/true))
    if (b.defined()) return b.device();
  return at::Device(at::kCPU);
}

/// `x` on `device` (x itself when it is already there, so the CPU path copies nothing).
inline at::Tensor on_device(const at::Tensor& x, at::Device device) {
  return x.defined() && x.device() != device ? x.to(device) : x;
}

}  // namespace qbench::quant
