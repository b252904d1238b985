// Exactness: torchvision 0.14 classifiers exported by PyTorch 1.13 (opset 13), in the default
// export (BN folded into the convs) and with BatchNormalization kept, run through the executor and
// match PyTorch's FP32 logits on a fixed batch: max|qbench - torch| / max|torch| <= 1e-4.
// The fixtures are made at test time by tests/onnx/make_torchvision_fixtures.py (ctest fixture
// onnx.torchvision_fixtures); QBENCH_ONNX_FIXTURES names their folder.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "npy.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"

using namespace qbench;

namespace {

std::string fixture_dir() {
  const char* d = std::getenv("QBENCH_ONNX_FIXTURES");
  return d ? d : QBENCH_ONNX_FIXTURES_DEFAULT;
}

int count_op(const onnx::ImportedGraph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

/// `blocks`: the architecture's residual blocks (adds with a skip) or multi-branch modules that
/// concatenate (Inception, Fire, ShuffleNet's stride-2 units), from torchvision's definitions.
void check_model(const std::string& name, size_t blocks) {
  const std::string dir = fixture_dir();
  const auto x = test::read_npy(dir + "/" + name + ".input.npy");
  const auto ref = test::read_npy(dir + "/" + name + ".logits.npy");
  for (const char* form : {"folded", "bn"}) {
    INFO(name << " " << form);
    onnx::ImportOptions opt;
    opt.input_shape = {x.size(1), x.size(2), x.size(3)};
    const auto g = onnx::import_file(dir + "/" + name + "." + form + ".onnx", opt);
    auto m = onnx::make_model(g, /*use_initializers=*/true);
    m->eval();
    at::NoGradGuard ng;
    const auto y = m->forward(x);
    REQUIRE(y.sizes() == ref.sizes());
    const double rel = (y - ref).abs().max().item<double>() / ref.abs().max().item<double>();
    std::printf("exactness %-20s %-6s max|qbench - torch| / max|torch| = %.3g  (%zu steps, %zu layers)\n", name.c_str(),
                form, rel, m->steps().size(), m->quant_layers().size());
    CHECK(rel <= 1e-4);
    // BN partners: every BatchNormalization of the kept form follows a conv and becomes its
    // partner; the folded form has none.
    const int bn_nodes = count_op(g, "BatchNormalization");
    int partners = 0;
    for (const auto& l : m->quant_layers()) partners += l.bn != nullptr;
    CHECK(partners == bn_nodes);
    CHECK(m->has_bn() == (bn_nodes > 0));
    // The first and last quantizable layers are the stem conv and the classifier.
    const auto layers = m->quant_layers();
    REQUIRE(layers.size() >= 2);
    CHECK(std::string(layers.front().layer->layer_type()) == "conv2d");
    CHECK(layers.front().is_first);
    CHECK(layers.back().is_last);
    const auto bl = m->blocks();
    CHECK(bl.size() == blocks);
    for (const auto& b : bl) CHECK(!b.layers.empty());
    // Another batch size runs too (the batch is dynamic), and each sample's logits do not depend on
    // the others in the batch (eval-mode BN).
    const auto y1 = m->forward(x.narrow(0, 1, 1));
    CHECK((y1 - y.narrow(0, 1, 1)).abs().max().item<double>() <= 1e-5 * ref.abs().max().item<double>() + 1e-6);
  }
}

}  // namespace

TEST_CASE("torchvision resnet18 matches PyTorch", "[onnx][torchvision]") { check_model("resnet18", 8); }
TEST_CASE("torchvision mobilenet_v2 matches PyTorch", "[onnx][torchvision]") { check_model("mobilenet_v2", 10); }
TEST_CASE("torchvision mobilenet_v3_small matches PyTorch", "[onnx][torchvision]") { check_model("mobilenet_v3_small", 6); }
TEST_CASE("torchvision shufflenet_v2_x0_5 matches PyTorch", "[onnx][torchvision]") { check_model("shufflenet_v2_x0_5", 3); }
TEST_CASE("torchvision squeezenet1_1 matches PyTorch", "[onnx][torchvision]") { check_model("squeezenet1_1", 8); }
TEST_CASE("torchvision efficientnet_b0 matches PyTorch", "[onnx][torchvision]") { check_model("efficientnet_b0", 9); }
TEST_CASE("torchvision regnet_x_400mf matches PyTorch", "[onnx][torchvision]") { check_model("regnet_x_400mf", 22); }
TEST_CASE("torchvision googlenet matches PyTorch", "[onnx][torchvision]") { check_model("googlenet", 9); }
