// The small catalog the config tests validate against, in place of the app's real registries.
#include "qbench/common/options.h"
#include "qbench/config/matrix.h"

namespace qbench::config::test {

namespace {

/// A settings table shaped like reconstruction's (lib/ptq declares the real one): integers, open
/// and closed bounds, and an option that stays out of the key.
struct FakeRecon {
  int64_t iters;
  int batch_size;
  double lambda, drop_prob;
  int64_t cache_mb;
  std::string mode;
};

SettingsSection fake_recon_section() {
  static const auto t =
      OptionTable<FakeRecon>("ptq", "reconstruction")
          .integer("iters", &FakeRecon::iters, 20000, 1, OptionTable<FakeRecon>::kInf, "steps per unit", "20000")
          .integer("batch_size", &FakeRecon::batch_size, 32, 1, 2147483647, "batch", "32")
          .number("lambda", &FakeRecon::lambda, 0.01, 0, false, OptionTable<FakeRecon>::kInf, false,
                  "regulariser weight", "0.01")
          .number("drop_prob", &FakeRecon::drop_prob, 0.5, 0, false, 1, false, "drop", "0.5")
          .integer("cache_mb", &FakeRecon::cache_mb, 1024, 1, OptionTable<FakeRecon>::kInf, "cache size", "",
                   /*in_key=*/false)
          .choice("mode", &FakeRecon::mode, "block", {"block", "layer"}, "unit", "block");
  return t.section();
}

}  // namespace

Catalog fake_catalog() {
  Catalog c;
  c.algorithms = {
      {"fp32", CellKind::Fp32}, {"minmax", CellKind::Ptq}, {"lsq", CellKind::Qat}, {"pact", CellKind::Qat},
      {"brecq", CellKind::Ptq, fake_recon_section()}};
  c.archs = {"resnet20", "resnet8"};
  c.datasets = {"fashion-mnist", "mnist"};
  c.profiles = {"academic", "tensorrt"};
  c.profile_bn_fold = {{"academic", -1}, {"tensorrt", 4}};
  c.observers = {"minmax", "mse"};
  c.refused_algorithms = {{"adaround", {Refusal::Why::NotImplemented, "planned"}}};
  c.noises = {{"none", "none", "the reference"},
              {"decode-ifast", "decode", "JDCT_IFAST"},
              {"decode-float", "decode", "JDCT_FLOAT"},
              {"yuv-bt601-limited", "colour", "YUV round trip"},
              {"bf16", "precision", "bfloat16"},
              {"fp16", "precision", "half, emulated"},
              {"align-corners", "mode", "upsampling"}};
  c.unimplemented_noises = {{"align-corners", "no upsampling layers"}};
  return c;
}

}  // namespace qbench::config::test
