// Every supported operator against its cases in Debian's libonnx-testdata (the ONNX 1.12 operator
// conformance data: model.onnx + test_data_set_*/input_*.pb, output_*.pb), through the executor.
// A case whose tensors are not all float32 (after its shape-like parameters are bound as
// constants) must be refused at import; so must the few float cases whose form the executor does
// not implement (listed below with the reason). Every other case must match its expected outputs.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>

#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"

// Not `using namespace qbench`: LibTorch and libonnx both declare a global ::onnx.
namespace qo = qbench::onnx;
using qbench::DataError;

namespace {

const std::string kData = QBENCH_ONNX_TESTDATA;

std::vector<std::string> list_dir(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool exists(const std::string& p) { return std::fopen(p.c_str(), "rb") ? true : false; }

// Operators whose non-data inputs (weights, shape-like parameters, clip bounds, ratios) must be
// constants for the executor: the conformance models feed them as graph inputs, so they are bound.
const std::set<std::string> kBindParams{"Conv", "Gemm", "BatchNormalization", "PRelu", "Clip", "Dropout", "Pad",
                                        "Reshape", "Slice", "Split", "Squeeze", "Unsqueeze"};

// Float cases the executor refuses by design (the reason is the expectation).
const std::map<std::string, std::string> kRefusedFloat{
    {"test_batchnorm_epsilon_training_mode", "training_mode"},
    {"test_batchnorm_example_training_mode", "training_mode"},
};

bool is_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat; }

/// Cases older than opset 9 (the importer's floor) whose operator ONNX has not changed since their
/// opset, by libonnx's own schema registry, are checked as the same model declared at opset 9: a
/// copy of the model under QBENCH_TEST_TMP. Returns the model path to use.
std::string model_path(const std::string& dir, const std::string& name, int64_t opset, const std::string& op) {
  const std::string orig = dir + "/model.onnx";
  if (opset >= 9 || op.empty()) return orig;
  const auto* schema = ::onnx::OpSchemaRegistry::Schema(op, 9, "");
  if (!schema || schema->since_version() > opset) return orig;  // changed since: stays refused
  std::ifstream f(orig, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  ::onnx::ModelProto m;
  if (!m.ParseFromString(ss.str())) return orig;
  for (auto& o : *m.mutable_opset_import())
    if (o.domain().empty()) o.set_version(9);
  const std::string tmp = std::string(QBENCH_TEST_TMP);
  ::mkdir(std::string(QBENCH_TEST_TMP).substr(0, tmp.rfind('/')).c_str(), 0755);
  ::mkdir(tmp.c_str(), 0755);
  ::mkdir((tmp + "/" + name).c_str(), 0755);
  const std::string out = tmp + "/" + name + "/model.onnx";
  std::ofstream o(out, std::ios::binary);
  o << m.SerializeAsString();
  return out;
}

/// Runs one case; returns "matched", "refused" or fails the test.
std::string run_case(const std::string& name, std::map<std::string, int>* opsets, std::vector<std::string>* refusals) {
  const std::string dir = kData + "/" + name;
  auto summary = qo::peek_file(dir + "/model.onnx");
  const int64_t file_opset = summary.opset;
  const std::string model = model_path(dir, name, summary.opset, summary.ops.empty() ? "" : summary.ops[0]);
  if (model != dir + "/model.onnx") summary.opset = 9;
  const bool single = summary.ops.size() == 1;
  const std::string op = summary.ops.empty() ? "" : summary.ops[0];
  auto sets = list_dir(dir, "test_data_set_");
  REQUIRE(!sets.empty());
  bool expect_refusal = summary.opset < 9 || kRefusedFloat.count(name);
  std::string matched_how;
  for (const auto& set : sets) {
    std::vector<at::Tensor> inputs, expected;
    bool readable = true;
    try {
      for (size_t k = 0; k < summary.inputs.size(); ++k)
        inputs.push_back(qo::read_tensor_pb(dir + "/" + set + "/input_" + std::to_string(k) + ".pb"));
      for (size_t k = 0;; ++k) {
        const std::string p = dir + "/" + set + "/output_" + std::to_string(k) + ".pb";
        if (!exists(p)) break;
        expected.push_back(qo::read_tensor_pb(p));
      }
    } catch (const DataError&) {
      readable = false;  // float16, strings, sequences, optionals: not float32
    }
    qo::ImportOptions opt;
    opt.dynamic_batch = false;
    std::vector<at::Tensor> runtime;
    if (readable) {
      const bool bind = single && kBindParams.count(op);
      for (size_t k = 0; k < inputs.size(); ++k) {
        if (bind && k > 0)
          opt.bind[summary.inputs[k]] = inputs[k];
        else
          runtime.push_back(inputs[k]);
      }
      for (const auto& t : runtime) expect_refusal = expect_refusal || !is_float(t);
      for (const auto& t : expected) expect_refusal = expect_refusal || !is_float(t);
    } else {
      expect_refusal = true;
    }
    const std::string where = name + " (opset " + std::to_string(file_opset) + ", " + set + ")";
    if (expect_refusal) {
      try {
        auto g = qo::import_file(model, opt);
        qo::OnnxModel m(g, true);
      } catch (const qo::OnnxError& e) {
        std::string msg = e.what();
        if (msg.find("model.onnx: ") != 0) throw std::runtime_error(where + ": refusal without the file name");
        refusals->push_back(where + ": " + msg.substr(0, msg.find('\n', msg.find('\n') + 1)));
        return "refused";
      }
      throw std::runtime_error(where + ": expected a refusal, it imported");
    }
    auto g = qo::import_file(model, opt);
    // The constructor executes any graph (make_model also wants a classifier with a layer).
    qo::OnnxModel m(g, true);
    m.eval();
    at::NoGradGuard ng;
    const auto out = m.run(runtime);
    if (out.size() < expected.size()) throw std::runtime_error(where + ": too few outputs");
    for (size_t k = 0; k < expected.size(); ++k) {
      if (out[k].sizes() != expected[k].sizes())
        throw std::runtime_error(where + ": output " + std::to_string(k) + " has shape " + c10::str(out[k].sizes()) +
                                 ", expected " + c10::str(expected[k].sizes()));
      const auto err = (out[k] - expected[k]).abs();
      const auto tol = expected[k].abs() * 1e-4 + 1e-5;
      if (!(err <= tol).all().item<bool>())
        throw std::runtime_error(where + ": output " + std::to_string(k) + " differs by up to " +
                                 std::to_string(err.max().item<double>()));
    }
  }
  (*opsets)[op] = std::max((*opsets)[op], static_cast<int>(summary.opset));
  return "matched";
}

const char* kPrefixes[] = {
    "test_conv_", "test_basic_conv_", "test_gemm_", "test_matmul_", "test_batchnorm_", "test_relu", "test_clip",
    "test_leakyrelu", "test_prelu_", "test_sigmoid", "test_hardsigmoid", "test_hardswish", "test_tanh",
    "test_softmax_", "test_add", "test_sub", "test_mul", "test_div", "test_pow", "test_sqrt", "test_maxpool_",
    "test_averagepool_", "test_globalaveragepool", "test_reduce_mean_", "test_flatten_", "test_reshape_",
    "test_transpose_", "test_squeeze", "test_unsqueeze_", "test_concat_", "test_split_", "test_slice",
    "test_constant_pad", "test_edge_pad", "test_reflect_pad", "test_cast_", "test_identity", "test_dropout_",
    "test_constant"};

}  // namespace

TEST_CASE("every supported operator matches the ONNX conformance data", "[onnx][conformance]") {
  std::vector<std::string> cases;
  for (const char* p : kPrefixes)
    for (const auto& c : list_dir(kData, p))
      if (c.find("_expanded") == std::string::npos && c.find("constantofshape") == std::string::npos &&
          c.find("_mul_") == std::string::npos)  // test_mul_* yes; names like test_matmulinteger are others
        cases.push_back(c);
  std::sort(cases.begin(), cases.end());
  cases.erase(std::unique(cases.begin(), cases.end()), cases.end());
  REQUIRE(cases.size() > 150);  // the package is installed and complete
  std::map<std::string, int> opsets;
  int matched = 0, refused = 0;
  std::vector<std::string> failures, refusals;
  for (const auto& c : cases) {
    if (c == "test_matmulinteger" || c.rfind("test_convinteger", 0) == 0) continue;  // other operators
    try {
      const auto how = run_case(c, &opsets, &refusals);
      (how == "matched" ? matched : refused)++;
    } catch (const std::exception& e) {
      failures.push_back(c + ": " + e.what());
    }
  }
  std::printf("conformance: %d cases matched, %d refused as expected, %zu failed\n", matched, refused, failures.size());
  for (const auto& f : failures) std::printf("  FAILED %s\n", f.c_str());
  for (const auto& r : refusals) std::printf("  refused %s\n", r.c_str());
  CHECK(failures.empty());
  for (const auto& [op, v] : opsets) std::printf("  %-20s newest opset checked %d\n", op.c_str(), v);
  // Every supported operator is exercised by at least one matching case, but Cast: every Cast case
  // of the data changes the type (refused); float-to-float Cast is checked on generated fixtures.
  for (const auto& op : qo::supported_ops()) {
    if (op == "Cast") continue;
    INFO(op);
    CHECK(opsets.count(op) == 1);
  }
}
