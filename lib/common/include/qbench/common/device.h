#pragma once
// The compute device a run asks for (`qbench run --device`), parsed and validated without
// LibTorch so the rules are unit-tested in seconds. lib/runner feeds resolve_device() with what
// LibTorch sees (torch::cuda::device_count()) and turns the result into an at::Device.
#include <cstddef>
#include <string>

namespace qbench {

struct DeviceRequest {
  enum class Kind { Cpu, Cuda, Auto };
  Kind kind = Kind::Cpu;
  int index = -1;  ///< cuda:N; -1 = plain "cuda" (the first visible device)
  /// The request as text: "cpu", "cuda", "cuda:N" or "auto".
  std::string text() const;
};

/// Parses "cpu", "cuda", "cuda:N" (N >= 0) or "auto". Anything else throws ConfigError
/// "--device: expected cpu, cuda, cuda:N or auto, got 'X'".
DeviceRequest parse_device(const std::string& text);

/// The device a request runs on, given the number of CUDA devices LibTorch sees (0 on a CPU-only
/// build or a machine without a visible GPU): "cpu" or "cuda:N". `auto` is cuda:0 when a device is
/// visible, else cpu. Asking for CUDA where none is visible, or for cuda:N beyond the visible
/// devices, throws ConfigError naming the flag (the CLI's exit code 2).
std::string resolve_device(const DeviceRequest& request, std::size_t cuda_devices);

}  // namespace qbench
