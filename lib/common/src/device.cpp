#include "qbench/common/device.h"

#include <cctype>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench {

std::string DeviceRequest::text() const {
  switch (kind) {
    case Kind::Cpu: return "cpu";
    case Kind::Auto: return "auto";
    default: return index < 0 ? "cuda" : "cuda:" + std::to_string(index);
  }
}

DeviceRequest parse_device(const std::string& text) {
  DeviceRequest r;
  if (text == "cpu") return r;
  if (text == "auto") {
    r.kind = DeviceRequest::Kind::Auto;
    return r;
  }
  if (text == "cuda") {
    r.kind = DeviceRequest::Kind::Cuda;
    return r;
  }
  if (text.rfind("cuda:", 0) == 0) {
    const std::string n = text.substr(5);
    bool digits = !n.empty() && n.size() <= 4;
    for (char c : n) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) {
      r.kind = DeviceRequest::Kind::Cuda;
      r.index = std::stoi(n);
      return r;
    }
  }
  std::string hint;
  if (text == "gpu" || text.rfind("gpu:", 0) == 0) {
    hint = " (did you mean: cuda?)";
  } else if (auto best = closest_names(text, {"cpu", "cuda", "auto"}); !best.empty()) {
    hint = " (did you mean: " + join(best, ", ") + "?)";
  }
  throw ConfigError("--device: expected cpu, cuda, cuda:N or auto, got '" + text + "'" + hint);
}

std::string resolve_device(const DeviceRequest& request, std::size_t cuda_devices) {
  switch (request.kind) {
    case DeviceRequest::Kind::Cpu: return "cpu";
    case DeviceRequest::Kind::Auto: return cuda_devices > 0 ? "cuda:0" : "cpu";
    default: break;
  }
  if (cuda_devices == 0)
    throw ConfigError("--device " + request.text() +
                      ": CUDA is not available (this LibTorch build has no CUDA support, or no CUDA device is "
                      "visible); use --device cpu or auto");
  const int index = request.index < 0 ? 0 : request.index;
  if (static_cast<std::size_t>(index) >= cuda_devices)
    throw ConfigError("--device " + request.text() + ": only " + std::to_string(cuda_devices) + " CUDA device" +
                      (cuda_devices == 1 ? " is" : "s are") + " visible (cuda:0" +
                      (cuda_devices > 1 ? "..cuda:" + std::to_string(cuda_devices - 1) : std::string()) + ")");
  return "cuda:" + std::to_string(index);
}

}  // namespace qbench
