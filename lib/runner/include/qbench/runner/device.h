#pragma once
// `qbench run --device`: the rules are torch-free (qbench/common/device.h); this resolves them
// against what LibTorch sees on this machine and describes the result for the provenance.
#include <c10/core/Device.h>

#include <cstddef>
#include <string>
#include <vector>

namespace qbench::runner {

/// The device `--device FLAG` runs on: cpu, cuda / cuda:N (checked against
/// torch::cuda::device_count()), or auto (cuda:0 when torch::cuda::is_available(), else cpu).
/// Throws ConfigError naming the flag (exit code 2) for a malformed value, for CUDA on a build or
/// machine without it, and for cuda:N beyond the visible devices. Touches nothing else.
at::Device select_device(const std::string& flag);

struct DeviceInfo {
  std::string name;                   ///< "cpu" or "cuda:N"
  std::string gpu_name;               ///< the GPU's model name when known ("" on the CPU or when unknown)
  std::size_t cuda_device_count = 0;  ///< torch::cuda::device_count()
  /// "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)" or "cuda:0" when the name is unknown.
  std::string label() const;
};

/// Describes `device` for the provenance. The GPU name comes from the NVIDIA driver's
/// /proc/driver/nvidia/gpus/*/information (no CUDA headers are needed): it is given when the
/// driver lists exactly one GPU, or when CUDA_DEVICE_ORDER=PCI_BUS_ID and CUDA_VISIBLE_DEVICES is
/// unset (then CUDA's numbering is the PCI order the driver lists); otherwise it stays unknown
/// rather than risk naming the wrong card.
DeviceInfo describe_device(const at::Device& device);

/// The GPU models the NVIDIA driver lists, in PCI bus order (empty without the driver).
std::vector<std::string> nvidia_gpu_names();

/// Global settings a run on `device` needs, applied before any work: on CUDA deterministic cuDNN
/// algorithms, no cuDNN autotuning (it picks kernels by timing, so results could vary run to run)
/// and no TF32 in convolutions and matmuls (FP32 numbers stay FP32, as on the CPU). Nothing on
/// the CPU.
void configure_device(const at::Device& device);

}  // namespace qbench::runner
