// inspect: the report names what the importer built (checked against the file's known structure).
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "qbench/onnx/inspect.h"
#include "qbench/quant/profile.h"

namespace qo = qbench::onnx;
using Catch::Matchers::Contains;

TEST_CASE("inspect reports steps, layers, placements and reconstruction units", "[onnx][inspect]") {
  const char* d = std::getenv("QBENCH_ONNX_FIXTURES");
  const std::string dir = std::string(d ? d : QBENCH_ONNX_FIXTURES_DEFAULT) + "/opsets";
  qo::ImportOptions opt;
  opt.input_shape = {1, 16, 16};
  const auto g = qo::import_file(dir + "/tiny_resnet.onnx", opt);
  const auto plain = qo::inspect(g);
  CHECK_THAT(plain, Contains("tiny_resnet.onnx: opset 13"));
  CHECK_THAT(plain, Contains("input 'input' [N,1,16,16]"));
  CHECK_THAT(plain, Contains("BatchNorm: yes"));
  // the stem: conv 1->8, 3x3 at 16x16: 16*16*8*9 = 18,432 MACs; 72 weights + 16 BN weights and biases
  CHECK_THAT(plain, Contains("Conv+BatchNormalization+Relu") && Contains("[N,8,16,16]  params 88  MACs 18.4k  -> conv1"));
  CHECK_THAT(plain, Contains("conv1  conv2d  [first]  BN: bn1  act: relu  block: -"));
  CHECK_THAT(plain, Contains("fc  linear  [last]  BN: -  act: none"));
  CHECK_THAT(plain, Contains("layer1_1.downsample_0  conv2d  BN: layer1_1.downsample_1  act: none  block: layer1_1"));
  CHECK_THAT(plain, Contains("residual adds: 2"));
  CHECK_THAT(plain, Contains("brecq/qdrop: 4 units") && Contains("layer1_1  block (3 layers)") &&
                        Contains("conv1  layer  [first layer: kept as is]"));
  CHECK_THAT(plain, !Contains("profile "));
  const auto trt = qo::inspect(g, &qbench::quant::profile_registry().get("tensorrt"));
  CHECK_THAT(trt, Contains("profile tensorrt at w8a8"));
  CHECK_THAT(trt, Contains("layer1_0.add  operands 8b"));
  const auto acad = qo::inspect(g, &qbench::quant::profile_registry().get("academic"));
  CHECK_THAT(acad, !Contains("layer1_0.add  operands"));
}
