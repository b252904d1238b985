// Refusals: every bad file fails at import (or at make_model for forms the executor cannot honour)
// with an OnnxError whose message starts with the file's name and says what is wrong.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"

namespace qo = qbench::onnx;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string dir() {
  const char* d = std::getenv("QBENCH_ONNX_FIXTURES");
  return std::string(d ? d : QBENCH_ONNX_FIXTURES_DEFAULT) + "/opsets";
}

std::string error_of(const std::string& file, const qo::ImportOptions& opt = {}) {
  try {
    auto g = qo::import_file(dir() + "/" + file, opt);
    auto m = qo::make_model(g, true);
  } catch (const qo::OnnxError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the good fixture imports (the refusals below are not the harness failing)", "[onnx][errors]") {
  qo::ImportOptions opt;
  opt.input_shape = {4, 6, 6};
  auto m = qo::make_model(qo::import_file(dir() + "/good.onnx", opt), true);
  CHECK(m->forward(at::ones({3, 4, 6, 6})).sizes() == at::IntArrayRef({3, 8, 6, 6}));
  // The file's SHA-256 (the baseline key's name for the architecture), as sha256sum computes it.
  const auto g = qo::import_file(dir() + "/good.onnx", opt);
  std::string cmd = "sha256sum " + dir() + "/good.onnx";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65] = {0};
  REQUIRE(std::fread(buf, 1, 64, p) == 64);
  pclose(p);
  CHECK(g.sha256 == std::string(buf));
  // and is an OnnxError a ConfigError (exit code 2 in qbench's main)
  CHECK_THROWS_AS(qo::import_file(dir() + "/missing.onnx"), qbench::ConfigError);
}

TEST_CASE("missing, empty, truncated and corrupt files", "[onnx][errors]") {
  CHECK_THAT(error_of("missing.onnx"), StartsWith("missing.onnx: cannot open the file") && Contains("No such file"));
  CHECK_THAT(error_of("bad_empty.onnx"), StartsWith("bad_empty.onnx: the file is empty"));
  CHECK_THAT(error_of("bad_truncated.onnx"), StartsWith("bad_truncated.onnx: not an ONNX model") &&
                                                 Contains("truncated or corrupt"));
  const auto corrupt = error_of("bad_corrupt.onnx");
  CHECK_THAT(corrupt, StartsWith("bad_corrupt.onnx: not an ONNX model"));
  CHECK_THAT(error_of("bad_text.onnx"), StartsWith("bad_text.onnx: not an ONNX model"));
}

TEST_CASE("a model the ONNX checker rejects", "[onnx][errors]") {
  CHECK_THAT(error_of("bad_checker.onnx"),
             StartsWith("bad_checker.onnx: the ONNX checker rejects the model: ") && Contains("nowhere"));
}

TEST_CASE("unsupported operators: every offending node is listed", "[onnx][errors]") {
  const auto e = error_of("bad_unsupported.onnx");
  CHECK_THAT(e, StartsWith("bad_unsupported.onnx: 3 problems:"));
  CHECK_THAT(e, Contains("bad_unsupported.onnx: node 'lrn_1' (LRN): operator not supported"));
  CHECK_THAT(e, Contains("bad_unsupported.onnx: node 'erf_2' (Erf): operator not supported"));
  CHECK_THAT(e, Contains("bad_unsupported.onnx: node 'inorm_3' (InstanceNormalization): operator not supported"));
  CHECK_THAT(e, Contains("(supported: Add, AveragePool, BatchNormalization, Cast, Clip, Concat, Constant, Conv,"));
  CHECK_THAT(e, !Contains("conv_ok") && !Contains("relu_ok"));
}

TEST_CASE("non-float32 graphs and opsets outside 9..17", "[onnx][errors]") {
  CHECK_THAT(error_of("bad_double.onnx"), Contains("input 'x' is float64: only float32 graphs are supported"));
  CHECK_THAT(error_of("bad_opset8.onnx"), StartsWith("bad_opset8.onnx: opset 8 is not supported (opsets 9..17 are)"));
}

TEST_CASE("dynamic shapes: resolved by the input shape, or refused", "[onnx][errors]") {
  CHECK_THAT(error_of("dyn_spatial.onnx"),
             StartsWith("dyn_spatial.onnx: unresolvable dynamic shape: input 'x' dimension 2 ('H') is dynamic"));
  qo::ImportOptions opt;
  opt.input_shape = {4, 10, 12};
  auto m = qo::make_model(qo::import_file(dir() + "/dyn_spatial.onnx", opt), true);
  CHECK(m->forward(at::ones({2, 4, 10, 12})).sizes() == at::IntArrayRef({2, 8, 10, 12}));
  opt.input_shape = {3, 10, 12};  // the file says 4 channels
  CHECK_THAT(error_of("dyn_spatial.onnx", opt), Contains("the dataset gives samples of shape [3,10,12]"));
  opt.input_shape = {4, 10};
  CHECK_THAT(error_of("dyn_spatial.onnx", opt), Contains("has rank 4, the dataset gives samples of shape [4,10]"));

  CHECK_THAT(error_of("bad_dyn_reshape.onnx"),
             Contains("unresolvable dynamic shape: the shape arithmetic multiplies the batch size by itself"));
  const auto data = error_of("bad_data_reshape.onnx");
  CHECK_THAT(data, Contains("node 'ReduceMax_1' (ReduceMax): operator not supported"));
  // A constant reshape target written for batch 1 cannot run other batches: caught at make_model.
  opt.input_shape = {4, 6, 6};
  CHECK_THAT(error_of("bad_static_batch.onnx", opt), Contains("fails on a batch of 2") && Contains("dynamic batch axis"));
}

TEST_CASE("forms the executor cannot honour exactly are refused, all of them", "[onnx][errors]") {
  const auto e = error_of("bad_forms.onnx");
  CHECK_THAT(e, StartsWith("bad_forms.onnx: 2 problems:"));
  CHECK_THAT(e, Contains("node 'conv_dilated' (Conv): kernel 3x3, strides 1x1, dilations 2x2"));
  CHECK_THAT(e, Contains("node 'bn_train' (BatchNormalization): training_mode=1"));
}
