#include "qbench/runner/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qbench/common/device.h"

namespace qbench::runner {
namespace fs = std::filesystem;

at::Device select_device(const std::string& flag) {
  const DeviceRequest request = parse_device(flag);  // malformed: ConfigError before asking CUDA
  std::size_t visible = 0;
  if (request.kind != DeviceRequest::Kind::Cpu && torch::cuda::is_available()) visible = torch::cuda::device_count();
  return at::Device(resolve_device(request, visible));
}

std::string DeviceInfo::label() const { return gpu_name.empty() ? name : name + " (" + gpu_name + ")"; }

std::vector<std::string> nvidia_gpu_names() {
  std::vector<std::pair<std::string, std::string>> by_bus;  // (PCI bus id, model)
  std::error_code ec;
  const fs::path root("/proc/driver/nvidia/gpus");
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::ifstream f(entry.path() / "information");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Model:", 0) != 0) continue;
      auto name = line.substr(6);
      name.erase(0, name.find_first_not_of(" \t"));
      name.erase(name.find_last_not_of(" \t\r") + 1);
      if (!name.empty()) by_bus.emplace_back(entry.path().filename().string(), name);
      break;
    }
  }
  std::sort(by_bus.begin(), by_bus.end());
  std::vector<std::string> out;
  for (auto& b : by_bus) out.push_back(std::move(b.second));
  return out;
}

DeviceInfo describe_device(const at::Device& device) {
  DeviceInfo info;
  info.name = device.str();
  info.cuda_device_count = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  if (!device.is_cuda()) return info;
  const auto gpus = nvidia_gpu_names();
  const int index = device.has_index() ? device.index() : 0;
  const char* order = std::getenv("CUDA_DEVICE_ORDER");
  const bool pci_order = order && std::string(order) == "PCI_BUS_ID" && !std::getenv("CUDA_VISIBLE_DEVICES");
  if (gpus.size() == 1 && index == 0)
    info.gpu_name = gpus.front();
  else if (pci_order && index >= 0 && static_cast<std::size_t>(index) < gpus.size())
    info.gpu_name = gpus[static_cast<std::size_t>(index)];
  return info;
}

void configure_device(const at::Device& device) {
  if (!device.is_cuda()) return;
  auto& ctx = at::globalContext();
  ctx.setDeterministicCuDNN(true);
  ctx.setBenchmarkCuDNN(false);
  ctx.setAllowTF32CuDNN(false);
  ctx.setAllowTF32CuBLAS(false);
}

}  // namespace qbench::runner
