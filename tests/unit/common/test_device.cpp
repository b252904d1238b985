// `qbench run --device`: parsing and resolution against the number of visible CUDA devices (the
// rules are torch-free; lib/runner feeds them torch::cuda::device_count()).
#include <catch2/catch.hpp>

#include <string>

#include "qbench/common/device.h"
#include "qbench/common/errors.h"

using qbench::DeviceRequest;
using qbench::parse_device;
using qbench::resolve_device;

namespace {
std::string error_of(const std::string& text, std::size_t cuda_devices) {
  try {
    resolve_device(parse_device(text), cuda_devices);
  } catch (const qbench::ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("parse_device accepts cpu, cuda, cuda:N and auto", "[common][device]") {
  CHECK(parse_device("cpu").kind == DeviceRequest::Kind::Cpu);
  CHECK(parse_device("auto").kind == DeviceRequest::Kind::Auto);
  auto c = parse_device("cuda");
  CHECK(c.kind == DeviceRequest::Kind::Cuda);
  CHECK(c.index == -1);
  auto c3 = parse_device("cuda:3");
  CHECK(c3.kind == DeviceRequest::Kind::Cuda);
  CHECK(c3.index == 3);
  for (const char* t : {"cpu", "cuda", "cuda:0", "cuda:12", "auto"}) CHECK(parse_device(t).text() == t);
}

TEST_CASE("parse_device rejects anything else naming the flag", "[common][device]") {
  for (const char* t : {"", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cuda0", "mps", "cuda:99999"}) {
    INFO(t);
    CHECK_THROWS_AS(parse_device(t), qbench::ConfigError);
  }
  CHECK_THROWS_WITH(parse_device("tpu"), Catch::StartsWith("--device: expected cpu, cuda, cuda:N or auto, got 'tpu'"));
  CHECK_THROWS_WITH(parse_device("gpu"), Catch::Contains("did you mean: cuda?"));
  CHECK_THROWS_WITH(parse_device("cuda0"), Catch::Contains("(did you mean: cuda?)"));
}

TEST_CASE("the default device is cpu and never needs CUDA", "[common][device]") {
  CHECK(DeviceRequest{}.text() == "cpu");
  CHECK(resolve_device(DeviceRequest{}, 0) == "cpu");
  CHECK(resolve_device(parse_device("cpu"), 4) == "cpu");
}

TEST_CASE("auto picks the first CUDA device when one is visible, else cpu", "[common][device]") {
  CHECK(resolve_device(parse_device("auto"), 0) == "cpu");
  CHECK(resolve_device(parse_device("auto"), 1) == "cuda:0");
  CHECK(resolve_device(parse_device("auto"), 8) == "cuda:0");
}

TEST_CASE("cuda resolves to a concrete visible device", "[common][device]") {
  CHECK(resolve_device(parse_device("cuda"), 1) == "cuda:0");
  CHECK(resolve_device(parse_device("cuda:0"), 1) == "cuda:0");
  CHECK(resolve_device(parse_device("cuda:1"), 2) == "cuda:1");
}

TEST_CASE("cuda without a visible device is a configuration error naming the flag", "[common][device]") {
  const auto msg = error_of("cuda", 0);
  CHECK_THAT(msg, Catch::StartsWith("--device cuda: CUDA is not available"));
  CHECK_THAT(msg, Catch::Contains("this LibTorch build has no CUDA support, or no CUDA device is visible"));
  CHECK_THAT(error_of("cuda:1", 0), Catch::StartsWith("--device cuda:1: CUDA is not available"));
  CHECK(msg.find('\n') == std::string::npos);  // one line
}

TEST_CASE("cuda:N beyond the visible devices says how many there are", "[common][device]") {
  CHECK(error_of("cuda:1", 1) == "--device cuda:1: only 1 CUDA device is visible (cuda:0)");
  CHECK(error_of("cuda:4", 2) == "--device cuda:4: only 2 CUDA devices are visible (cuda:0..cuda:1)");
}
