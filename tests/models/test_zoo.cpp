// The ImageNet model zoo: published sizes, torchvision / timm state-dict names, declared structure
// (BN partners, blocks, residual adds), small-input stems, and safetensors import/export.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qbench/common/errors.h"
#include "qbench/models/models.h"
#include "qbench/models/safetensors.h"
#include "test_util.h"

using namespace qbench;

namespace {

struct Expect {
  const char* arch;
  int64_t params;        // published: torchvision / timm model cards, papers
  double gmacs;          // published multiply-accumulates at 224x224
  size_t layers, with_bn, blocks, adds;
  const char* block_kind;
  std::vector<const char*> names;  // state-dict keys the published checkpoints have
};

const std::vector<Expect>& expectations() {
  static const std::vector<Expect> e = {
      {"resnet18", 11689512, 1.82, 21, 20, 8, 8, "basic",
       {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias",
        "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"}},
      {"resnet50", 25557032, 4.09, 54, 53, 16, 16, "bottleneck",
       {"layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_mean", "fc.weight"}},
      {"mobilenetv2", 3504872, 0.30, 53, 52, 17, 10, "inverted_residual",
       {"features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
        "features.1.conv.2.weight", "features.2.conv.0.0.weight", "features.2.conv.1.0.weight",
        "features.2.conv.2.weight", "features.2.conv.3.running_var", "features.18.0.weight", "classifier.1.weight"}},
      {"efficientnet-lite0", 4652008, 0.39, 50, 49, 16, 9, "mbconv",
       {"conv_stem.weight", "bn1.weight", "blocks.0.0.conv_dw.weight", "blocks.0.0.conv_pw.weight",
        "blocks.1.0.conv_pw.weight", "blocks.1.0.conv_dw.weight", "blocks.1.0.conv_pwl.weight", "blocks.6.0.bn3.bias",
        "conv_head.weight", "bn2.running_var", "classifier.weight"}},
      {"regnetx-600mf", 6196040, 0.60, 54, 53, 16, 16, "regnet_x",
       {"stem.conv.weight", "stem.bn.weight", "s1.b1.conv1.conv.weight", "s1.b1.conv2.bn.running_mean",
        "s1.b1.downsample.conv.weight", "s4.b7.conv3.bn.weight", "head.fc.weight"}},
  };
  return e;
}

bool has_name(const models::NamedTensors& state, const std::string& n) {
  for (const auto& [k, t] : state)
    if (k == n) return true;
  return false;
}

}  // namespace

TEST_CASE("ImageNet zoo: published parameter counts and MACs at 224x224", "[models][zoo]") {
  for (const auto& e : expectations()) {
    INFO(e.arch);
    at::manual_seed(0);
    const auto spec = models::reference_spec(e.arch);
    REQUIRE(spec.image_size == 224);
    auto m = models::make_model(e.arch, spec);
    CHECK(models::parameter_count(*m) == e.params);
    CHECK(models::arch_registry().get(e.arch).published_params == e.params);
    const double gmacs = models::count_macs(*m, spec) / 1e9;
    CHECK(gmacs == Approx(e.gmacs).epsilon(0.02));
  }
}

TEST_CASE("ImageNet zoo: torchvision and timm state-dict names", "[models][zoo]") {
  for (const auto& e : expectations()) {
    INFO(e.arch);
    auto m = models::make_model(e.arch, models::reference_spec(e.arch));
    const auto state = models::model_state(*m);
    for (const char* n : e.names) {
      INFO(n);
      CHECK(has_name(state, n));
    }
  }
}

TEST_CASE("ImageNet zoo: declared structure (BN partners, blocks, adds, first and last layer)", "[models][zoo]") {
  for (const auto& e : expectations()) {
    INFO(e.arch);
    auto m = models::make_model(e.arch, models::reference_spec(e.arch));
    const auto layers = m->quant_layers();
    CHECK(layers.size() == e.layers);
    size_t with_bn = 0;
    for (const auto& l : layers) {
      if (!l.bn) continue;
      ++with_bn;
      // The partner normalises exactly the conv's output channels.
      CHECK(l.bn->options.num_features() == l.layer->weight_tensor().size(0));
    }
    CHECK(with_bn == e.with_bn);
    CHECK(layers.front().is_first);
    CHECK(std::string(layers.front().layer->layer_type()) == "conv2d");
    CHECK(layers.back().is_last);
    CHECK(std::string(layers.back().layer->layer_type()) == "linear");
    CHECK_FALSE(layers.back().bn);
    const auto blocks = m->blocks();
    CHECK(blocks.size() == e.blocks);
    size_t of_kind = 0;
    for (const auto& b : blocks) {
      of_kind += b.kind == e.block_kind;
      CHECK(b.layers.size() >= 2);
    }
    CHECK(of_kind >= e.blocks - 1);  // EfficientNet's first block is a depthwise-separable conv
    CHECK(m->adds().size() == e.adds);
  }
  // Spot checks of the declared pairs and activations.
  auto r = models::make_model("resnet18", models::reference_spec("resnet18"));
  for (const auto& l : r->quant_layers()) {
    if (l.name == "layer2.0.conv1") {
      CHECK(l.bn_name == "layer2.0.bn1");
      CHECK(l.act == quant::Act::ReLU);
      CHECK(l.block == "layer2.0");
    }
    if (l.name == "layer2.0.conv2") CHECK(l.act == quant::Act::None);  // ReLU comes after the add
    if (l.name == "layer2.0.downsample.0") CHECK(l.bn_name == "layer2.0.downsample.1");
  }
  CHECK(r->adds().front().name == "layer1.0.add");
  CHECK(r->adds().front().add->relu_after());
  auto mb = models::make_model("mobilenetv2", models::reference_spec("mobilenetv2"));
  for (const auto& l : mb->quant_layers()) {
    if (l.name == "features.2.conv.1.0") {
      CHECK(l.bn_name == "features.2.conv.1.1");
      CHECK(l.act == quant::Act::ReLU6);
    }
    if (l.name == "features.2.conv.2") CHECK(l.bn_name == "features.2.conv.3");
  }
  CHECK_FALSE(mb->adds().front().add->relu_after());
}

TEST_CASE("ImageNet zoo: blocks run on their own and compose to the model", "[models][zoo]") {
  at::manual_seed(1);
  models::ModelSpec s{3, 10, 32, 0.25, models::Stem::Small};
  auto m = models::make_model("resnet18", s);
  m->eval();
  c10::NoGradGuard ng;
  auto blocks = m->blocks();
  REQUIRE(blocks.front().name == "layer1.0");
  auto x = at::randn({2, 16, 32, 32});  // 64 * 0.25 channels after the small stem
  auto y = blocks.front().block->forward_block(x);
  CHECK(y.sizes() == x.sizes());
  CHECK((y >= 0).all().item<bool>());  // the basic block ends in add + ReLU
}

TEST_CASE("ImageNet zoo: small-input stems and width multipliers run at 28x28 and 32x32", "[models][zoo]") {
  for (const auto& e : expectations()) {
    INFO(e.arch);
    at::manual_seed(0);
    for (int64_t size : {28, 32}) {
      models::ModelSpec s{1, 10, size, 0.25, models::resolve_stem("auto", size)};
      CHECK(s.stem == models::Stem::Small);
      auto m = models::make_model(e.arch, s);
      auto y = m->forward(at::randn({2, 1, size, size}));
      CHECK(y.sizes() == at::IntArrayRef({2, 10}));
      CHECK(at::isfinite(y).all().item<bool>());
      // A quarter of the width has far fewer parameters than the reference network.
      CHECK(models::parameter_count(*m) < e.params / 4);
    }
  }
  CHECK(models::resolve_stem("auto", 224) == models::Stem::ImageNet);
  CHECK_THROWS_AS(models::resolve_stem("tiny", 28), UnknownNameError);
  // The ImageNet stem at 28x28 still runs (down to 1x1), it is just a poor fit.
  auto m = models::make_model("resnet18", {1, 10, 28, 0.25, models::Stem::ImageNet});
  m->eval();
  CHECK(m->forward(at::randn({1, 1, 28, 28})).sizes() == at::IntArrayRef({1, 10}));
}

TEST_CASE("safetensors: a file written byte by byte in the published format loads", "[models][safetensors]") {
  const auto dir = test::scratch_dir("safetensors_bytes");
  // Header written by hand, as the reference implementation would: two tensors, F32 and I64.
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"n":{"dtype":"I64","shape":[],"data_offsets":[16,24]},"__metadata__":{"format":"pt"}})";
  std::ofstream f(dir / "hand.safetensors", std::ios::binary);
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((len >> (8 * i)) & 0xff));
  f << header;
  const float vals[4] = {1.5f, -2.0f, 0.25f, 1e-3f};
  f.write(reinterpret_cast<const char*>(vals), 16);
  const int64_t n = 42;
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.close();
  std::map<std::string, std::string> meta;
  auto t = models::load_safetensors((dir / "hand.safetensors").string(), &meta);
  REQUIRE(t.size() == 2);
  CHECK(meta.at("format") == "pt");
  CHECK(t[0].first == "a");
  CHECK(t[0].second.sizes() == at::IntArrayRef({2, 2}));
  CHECK(t[0].second[1][1].item<float>() == 1e-3f);
  CHECK(t[0].second[0][1].item<float>() == -2.0f);
  CHECK(t[1].second.dim() == 0);
  CHECK(t[1].second.item<int64_t>() == 42);
}

TEST_CASE("safetensors: what we write is laid out as the format says", "[models][safetensors]") {
  const auto dir = test::scratch_dir("safetensors_layout");
  const auto path = (dir / "w.safetensors").string();
  models::save_safetensors(path, {{"z", at::arange(3, at::kFloat)}, {"b", at::ones({2}, at::kDouble)}}, {{"arch", "x"}});
  std::ifstream f(path, std::ios::binary);
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  CHECK((8 + n) % 8 == 0);  // data starts 8-byte aligned
  std::string h(n, ' ');
  f.read(h.data(), n);
  auto j = nlohmann::json::parse(h);
  CHECK(j["__metadata__"]["arch"] == "x");
  CHECK(j["b"]["dtype"] == "F64");
  CHECK(j["b"]["data_offsets"] == nlohmann::json::array({0, 16}));  // sorted by name: b first
  CHECK(j["z"]["data_offsets"] == nlohmann::json::array({16, 28}));
  float z[3];
  f.seekg(8 + n + 16);
  f.read(reinterpret_cast<char*>(z), 12);
  CHECK(z[2] == 2.0f);
}

TEST_CASE("safetensors: weights round-trip through a model and give the same outputs", "[models][safetensors]") {
  const auto dir = test::scratch_dir("safetensors_roundtrip");
  const auto path = (dir / "m.safetensors").string();
  models::ModelSpec s{1, 10, 28, 0.25, models::Stem::Small};
  for (const char* arch : {"resnet20", "mobilenetv2", "efficientnet-lite0", "regnetx-600mf"}) {
    INFO(arch);
    at::manual_seed(1);
    auto a = models::make_model(arch, s);
    a->train();
    a->forward(at::randn({8, 1, 28, 28}));  // moves the BN running statistics away from their init
    a->eval();
    models::export_weights(*a, path, {{"arch", arch}});
    at::manual_seed(2);
    auto b = models::make_model(arch, s);
    b->eval();
    auto res = models::import_weights(*b, path);
    CHECK(res.tensors == static_cast<int64_t>(models::model_state(*a).size()));
    CHECK(res.defaulted.empty());
    auto x = at::randn({3, 1, 28, 28});
    c10::NoGradGuard ng;
    CHECK(at::equal(a->forward(x), b->forward(x)));
  }
}

TEST_CASE("safetensors: clear errors for wrong architecture, shape, dtype and truncation", "[models][safetensors]") {
  const auto dir = test::scratch_dir("safetensors_errors");
  const auto path = (dir / "r.safetensors").string();
  models::ModelSpec s{1, 10, 28, 0.25, models::Stem::Small};
  auto r18 = models::make_model("resnet18", s);
  models::export_weights(*r18, path);

  auto r34 = models::make_model("resnet34", s);
  CHECK_THROWS_WITH(models::import_weights(*r34, path), Catch::Contains("r.safetensors") && Catch::Contains("missing tensor 'layer1.2.conv1.weight'"));
  auto r18_100 = models::make_model("resnet18", {1, 100, 28, 0.25, models::Stem::Small});
  CHECK_THROWS_WITH(models::import_weights(*r18_100, path), Catch::Contains("'fc.weight' has shape [10, 128], the model expects [100, 128]"));
  auto r20 = models::make_model("resnet20", s);
  CHECK_THROWS_AS(models::import_weights(*r20, path), DataError);

  // A DataParallel-style prefix still maps; a missing num_batches_tracked is allowed (timm files).
  models::NamedTensors prefixed;
  for (auto& [n, t] : models::model_state(*r18))
    if (n.find("num_batches_tracked") == std::string::npos) prefixed.emplace_back("module." + n, t);
  models::save_safetensors((dir / "p.safetensors").string(), prefixed);
  auto again = models::make_model("resnet18", s);
  auto res = models::import_weights(*again, (dir / "p.safetensors").string());
  CHECK(res.defaulted.size() == 20);  // one per BatchNorm

  // An extra tensor the model does not have.
  auto extra = models::model_state(*r18);
  extra.emplace_back("aux.weight", at::zeros({2}));
  models::save_safetensors((dir / "x.safetensors").string(), extra);
  CHECK_THROWS_WITH(models::import_weights(*again, (dir / "x.safetensors").string()), Catch::Contains("'aux.weight' is not part of the model"));

  // Truncated: cut the file in the middle of its data.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::copy_file(path, dir / "t.safetensors");
  std::filesystem::resize_file(dir / "t.safetensors", size / 2);
  CHECK_THROWS_WITH(models::load_safetensors((dir / "t.safetensors").string()), Catch::Contains("t.safetensors") && Catch::Contains("truncated"));
  std::filesystem::resize_file(dir / "t.safetensors", 5);
  CHECK_THROWS_WITH(models::load_safetensors((dir / "t.safetensors").string()), Catch::Contains("truncated"));

  auto write_raw = [&](const std::string& name, const std::string& header, size_t data_bytes) {
    std::ofstream f(dir / name, std::ios::binary);
    uint64_t len = header.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>((len >> (8 * i)) & 0xff));
    f << header << std::string(data_bytes, '\0');
    return (dir / name).string();
  };
  CHECK_THROWS_WITH(models::load_safetensors(write_raw("d.safetensors", R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4)),
                    Catch::Contains("dtype F8_E4M3 cannot be handled"));
  CHECK_THROWS_WITH(models::load_safetensors(write_raw("m.safetensors", R"({"a":{"dtype":"F32","shape":[4],)", 16)),
                    Catch::Contains("malformed safetensors header"));
  CHECK_THROWS_WITH(models::load_safetensors(write_raw("o.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16)),
                    Catch::Contains("needs 16"));
  CHECK_THROWS_WITH(models::load_safetensors(write_raw("e.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
                    Catch::Contains("outside the 8 data bytes"));
  CHECK_THROWS_WITH(models::load_safetensors((dir / "absent.safetensors").string()), Catch::Contains("absent.safetensors"));
}
