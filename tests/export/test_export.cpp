// Deployable artifacts (lib/export): the QDQ graph of a calibrated network (node counts, axes,
// dtypes, the int32 bias at s_in * s_w), what the formats refuse, the saved cell's round trip,
// and the exported files run by ONNX Runtime against the simulation they came from.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>
#include <string>

#include "qbench/common/errors.h"
#include "qbench/export/cell_state.h"
#include "qbench/export/onnx_export.h"
#include "qbench/export/ort.h"
#include "qbench/models/models.h"
#include "qbench/onnx/import.h"
#include "qbench/onnx/model.h"
#include "qbench/qat/method.h"
#include "qbench/quant/fake_quant.h"
#include "qbench/quant/prepare.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/quantizer.h"

using namespace qbench;
namespace fs = std::filesystem;
using exporter::Format;

namespace {

std::string tmp(const std::string& name) {
  fs::path d = fs::path(QBENCH_TEST_TMP) / "export";
  fs::create_directories(d);
  return (d / name).string();
}

at::Tensor images(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = at::rand({n, 1, 28, 28}, gen);
  return ((x * x * 3.0) - 0.8).contiguous();
}

/// `arch` at 1x28x28 with 10 classes, the same random weights on every call.
std::shared_ptr<quant::QuantModel> fresh(const std::string& arch) { return models::random_model(arch, {}, 11); }

/// `arch` with BN folded as the profile says and min/max quantizers calibrated, eval mode.
std::shared_ptr<quant::QuantModel> calibrated(const std::string& arch, const std::string& profile, int w, int a) {
  auto m = fresh(arch);
  const auto& p = quant::profile_registry().get(profile);
  if (p.bn_fold >= 0) quant::apply_bn_fold(*m, p.bn_fold);
  quant::PrepareOptions o;
  o.w_bits = w;
  o.a_bits = a;
  quant::prepare_model(*m, p, o);
  quant::calibrate(*m, images(64, 1), 32);
  m->eval();
  return m;
}

exporter::ExportOptions opts(Format f) {
  exporter::ExportOptions o;
  o.format = f;
  o.sample_shape = {1, 28, 28};
  return o;
}

at::Tensor logits(quant::QuantModel& m, const at::Tensor& x) {
  at::NoGradGuard ng;
  m.eval();
  return m.forward(x);
}

double agreement(const at::Tensor& a, const at::Tensor& b) {
  return 100.0 * a.argmax(1).eq(b.argmax(1)).to(at::kDouble).mean().item<double>();
}

/// ORT must be installed wherever the tests run (scripts/install-deps.sh does it): no skip.
exporter::OrtResult ort(const std::string& model, const at::Tensor& x, const std::string& optimized = "") {
  const std::string why = exporter::ort_unavailable_reason();
  INFO(why);
  REQUIRE(why.empty());
  exporter::OrtRequest r;
  r.model = model;
  r.images = x;
  r.batch_size = 64;
  r.optimized_model = optimized;
  return exporter::run_ort(r);
}

}  // namespace

TEST_CASE("export: the QDQ graph of resnet8 under x86-onednn w8a8", "[export]") {
  auto m = calibrated("resnet8", "x86-onednn", 8, 8);
  const auto layers = m->quant_layers();
  const auto g = exporter::build_graph(*m, opts(Format::Qdq));
  int convs = 0;
  for (const auto& l : layers) convs += std::string(l.layer->layer_type()) == "conv2d";
  CHECK(g.count("Conv") == convs);
  CHECK(g.count("Gemm") == 1);
  // x86-onednn: every conv/linear input quantized, add operands and outputs too.
  const auto adds = m->adds();
  const int act_q = static_cast<int>(layers.size() + 3 * adds.size());
  CHECK(static_cast<int>(g.quants.size()) == act_q + static_cast<int>(layers.size()));  // every site, weights too
  // Quantizers of one tensor with one grid share their QuantizeLinear/DequantizeLinear pair (the
  // stem's output feeds layer1's first conv and its shortcut add, observed alike).
  std::set<std::string> pairs;
  for (const auto& q : g.quants)
    if (q.site.find(":weight") == std::string::npos && q.site.find(".weight") == std::string::npos)
      pairs.insert(q.quantized);
  CHECK(static_cast<int>(pairs.size()) < act_q);
  CHECK(g.count("QuantizeLinear") == static_cast<int>(pairs.size()));
  // Dequantize: one per activation pair, one per weight, one per int32 bias.
  CHECK(g.count("DequantizeLinear") == static_cast<int>(pairs.size()) + 2 * static_cast<int>(layers.size()));
  CHECK(g.count("Clip") == 0);  // 8-bit grids fill their containers
  for (const auto& l : layers) {
    const std::string w = l.name + ".weight";
    const at::Tensor* codes = g.initializer(w + "_quantized");
    REQUIRE(codes);
    CHECK(codes->scalar_type() == at::kChar);
    const auto wqp = *l.layer->weight_quantizer()->affine_qparams();
    const auto xqp = *l.layer->input_quantizer()->affine_qparams();
    // Per-channel weights: DequantizeLinear on axis 0 with one scale per output channel.
    const exporter::XNode* dq = g.find(w + "/DequantizeLinear");
    REQUIRE(dq);
    REQUIRE(dq->attrs.count("axis"));
    CHECK(dq->attrs.at("axis").i == 0);
    CHECK(g.initializer(w + ".scale")->numel() == codes->size(0));
    // Unsigned activations: uint8 zero points.
    const exporter::XQuant* in = nullptr;
    for (const auto& q : g.quants)
      if (q.site == l.name + ":input") in = &q;
    REQUIRE(in);
    CHECK(g.initializer(in->zero_point)->scalar_type() == at::kByte);
    // The bias: int32 at s_in * s_w per channel, equal to the float bias to half a step.
    const at::Tensor* bq = g.initializer(l.name + ".bias_quantized");
    const at::Tensor* bs = g.initializer(l.name + ".bias.scale");
    REQUIRE(bq);
    REQUIRE(bs);
    CHECK(bq->scalar_type() == at::kInt);
    CHECK(at::allclose(*bs, xqp.scale * wqp.scale, 0, 0));
    at::Tensor b;
    if (auto* conv = dynamic_cast<quant::QConv2dImpl*>(l.layer))
      b = conv->folded_weight_bias().second;
    else
      b = dynamic_cast<quant::QLinearImpl*>(l.layer)->bias;
    CHECK((bq->to(at::kDouble) * bs->to(at::kDouble) - b.to(at::kDouble)).abs().le(bs->to(at::kDouble) * 0.5 + 1e-9)
              .all()
              .item<bool>());
    // The weight codes are the quantizer's own grid.
    at::Tensor wf = dynamic_cast<quant::QConv2dImpl*>(l.layer) ? dynamic_cast<quant::QConv2dImpl*>(l.layer)->folded_weight_bias().first
                                                                 : l.layer->weight_tensor();
    auto ref = quant::fake_quantize(wf, wqp);
    std::vector<int64_t> view(static_cast<size_t>(wf.dim()), 1);
    view[0] = -1;
    CHECK(at::allclose(codes->to(at::kFloat) * wqp.scale.reshape(view), ref, 1e-6, 1e-7));
  }
  const std::string path = tmp("resnet8_onednn_w8a8.onnx");
  REQUIRE_NOTHROW(exporter::write_onnx(g, path));
  CHECK(fs::file_size(path) > 0);
}

TEST_CASE("export: ONNX Runtime runs the QDQ file as the simulation, in int8 kernels", "[export][ort]") {
  auto x = images(256, 5);
  for (const auto* prof : {"x86-onednn", "ort-cpu", "tensorrt", "academic"}) {
    for (int bits : {8, 4}) {
      DYNAMIC_SECTION(prof << " w" << bits << "a" << bits) {
        auto m = calibrated("resnet8", prof, bits, bits);
        const std::string path = tmp(std::string("resnet8_") + prof + "_w" + std::to_string(bits) + ".onnx");
        const auto g = exporter::export_onnx(*m, path, opts(Format::Qdq));
        if (bits < 8) CHECK(g.count("Clip") > 0);  // the 4-bit grids saturate on their codes
        // x86-onednn quantizes every ReLU's consumers: each ReLU folds into their integer codes.
        if (std::string(prof) == "x86-onednn") CHECK(g.count("Relu") == 0);
        auto sim = logits(*m, x);
        auto r = ort(path, x, tmp(std::string("resnet8_") + prof + "_w" + std::to_string(bits) + ".opt.onnx"));
        const double agree = agreement(sim, r.logits);
        const double cos = at::cosine_similarity(sim, r.logits, 1).mean().item<double>();
        INFO("agreement " << agree << "% cosine " << cos << " int8 " << r.census.int8_compute << " float "
                          << r.census.float_compute);
        CHECK(agree >= (bits == 8 ? 99.5 : 99.0));
        CHECK(cos > (bits == 8 ? 0.9999 : 0.998));
        // academic leaves conv outputs and residual adds in float: no conv meets a QuantizeLinear, so
        // ORT runs them in float (what the int8-coverage figure on the row reports).
        if (std::string(prof) == "academic")
          CHECK(r.census.int8_compute <= 1);
        else
          CHECK(r.census.float_compute == 0);
      }
    }
  }
}

TEST_CASE("export: the fp32 format is the float network", "[export][ort]") {
  auto m = fresh("resnet8");
  quant::apply_bn_fold(*m, 0);
  const std::string path = tmp("resnet8_fp32.onnx");
  const auto g = exporter::export_onnx(*m, path, opts(Format::Fp32));
  CHECK(g.count("QuantizeLinear") == 0);
  CHECK(g.count("DequantizeLinear") == 0);
  auto x = images(64, 9);
  auto r = ort(path, x);
  CHECK(at::allclose(r.logits, logits(*m, x), 1e-4, 1e-4));
}

TEST_CASE("export: tensorrt is symmetric int8 with a dynamic-range JSON, and refuses what TensorRT cannot run",
          "[export]") {
  auto m = calibrated("resnet8", "tensorrt", 8, 8);
  const std::string path = tmp("resnet8_trt.onnx");
  const auto g = exporter::export_onnx(*m, path, opts(Format::TensorRT));
  for (const auto& [name, t] : g.initializers)
    if (name.find("zero_point") != std::string::npos && t.scalar_type() != at::kInt) {
      CHECK(t.scalar_type() == at::kChar);
      CHECK(t.eq(0).all().item<bool>());
    }
  for (const auto& [name, t] : g.initializers)
    if (name.size() > 17 && name.substr(name.size() - 17) == ".weight_quantized")
      CHECK(t.to(at::kInt).abs().max().item<int>() <= 127);
  std::ifstream f(tmp("resnet8_trt.ranges.json"));
  REQUIRE(f);
  auto j = nlohmann::json::parse(f);
  std::set<std::string> tensors;
  for (const auto& q : g.quants) {
    tensors.insert(q.tensor);
    REQUIRE(j.contains(q.tensor));
    CHECK(j[q.tensor].get<double>() >= q.amax);
    CHECK(q.amax > 0);
  }
  CHECK(j.size() == tensors.size());
  // Unsigned activations (x86-onednn) and 4-bit grids are not TensorRT's int8.
  auto onednn = calibrated("resnet8", "x86-onednn", 8, 8);
  CHECK_THROWS_WITH(exporter::build_graph(*onednn, opts(Format::TensorRT)), Catch::Contains("TensorRT's int8 is signed"));
  auto w4 = calibrated("resnet8", "tensorrt", 4, 4);
  CHECK_THROWS_WITH(exporter::build_graph(*w4, opts(Format::TensorRT)), Catch::Contains("sub-8-bit grid would be lost"));
}

TEST_CASE("export: non-affine quantizers are refused with the reason", "[export]") {
  auto m = fresh("resnet8");
  const auto& p = quant::profile_registry().get("academic");
  const auto& meth = qat::qat_method_registry().get("apot");
  quant::attach_quantizers(*m, p, 4, 4, {meth.make_weight, meth.make_activation});
  quant::calibrate(*m, images(32, 2), 32);
  CHECK_THROWS_AS(exporter::build_graph(*m, opts(Format::Qdq)), exporter::ExportError);
  CHECK_THROWS_WITH(exporter::build_graph(*m, opts(Format::Qdq)), Catch::Contains("is not affine"));
  // The saved state records them as such, and restoring one is refused the same way.
  auto st = exporter::capture_cell_state(*m, -1, {});
  CHECK_FALSE(st.not_affine().empty());
  auto again = fresh("resnet8");
  CHECK_THROWS_WITH(exporter::restore_cell_state(*again, st), Catch::Contains("cannot be restored"));
}

TEST_CASE("export: a saved cell restores to identical logits", "[export]") {
  auto m = calibrated("resnet8", "x86-onednn", 4, 8);
  auto x = images(32, 4);
  auto before = logits(*m, x);
  const auto st = exporter::capture_cell_state(*m, 0, {{"arch", "resnet8"}, {"cell_key", "abc"}});
  CHECK(st.not_affine().empty());
  const std::string path = exporter::cell_state_path(tmp("cache"), "abc");
  exporter::save_cell_state(path, st);
  const auto loaded = exporter::load_cell_state(path);
  CHECK(loaded.meta.at("arch") == "resnet8");
  CHECK(loaded.quantizers.size() == st.quantizers.size());
  auto again = fresh("resnet8");
  exporter::restore_cell_state(*again, loaded);
  CHECK(at::equal(logits(*again, x), before));
  // A damaged file is refused, not loaded.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-16, std::ios::end);
    f.write("XXXXXXXXXXXXXXXX", 16);
  }
  CHECK_THROWS_AS(exporter::load_cell_state(path), DataError);
}

TEST_CASE("export: an imported ONNX graph re-exports as QDQ that ORT runs like its simulation", "[export][ort]") {
  // A graph qbench did not write by hand: ResNet-8 exported as FP32 ONNX, imported by lib/onnx
  // (its executor's plan of aten ops is what the tracer sees), quantized, exported again as QDQ.
  auto zoo = fresh("resnet8");
  const std::string fp32 = tmp("resnet8_for_import.onnx");
  exporter::export_onnx(*zoo, fp32, opts(Format::Fp32));
  auto graph = onnx::import_file(fp32, {{1, 28, 28}});
  auto m = onnx::make_model(graph, /*use_initializers=*/true);
  auto x = images(128, 8);
  CHECK(at::allclose(logits(*m, x), logits(*zoo, x), 1e-4, 1e-5));  // the import is the model
  const auto& p = quant::profile_registry().get("ort-cpu");
  quant::apply_bn_fold(*m, p.bn_fold);
  quant::PrepareOptions o;
  o.w_bits = 4;
  o.a_bits = 4;
  quant::prepare_model(*m, p, o);
  quant::calibrate(*m, images(64, 1), 32);
  const std::string qdq = tmp("resnet8_imported_w4.onnx");
  exporter::export_onnx(*m, qdq, opts(Format::Qdq));
  auto r = ort(qdq, x, tmp("resnet8_imported_w4.opt.onnx"));
  CHECK(agreement(logits(*m, x), r.logits) >= 99.0);
  CHECK(r.census.float_compute == 0);
}
