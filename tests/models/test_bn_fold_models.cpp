// apply_bn_fold on whole architectures: every conv with a BN partner is folded, and at inference
// the folded network computes what the unfolded one does, for each of MQBench's strategies.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <string>

#include "qbench/models/models.h"
#include "qbench/quant/qmodules.h"

using namespace qbench;

namespace {
/// Gives every BN non-trivial statistics, so a fold that ignored them would show.
void randomise_bns(quant::QuantModel& m) {
  at::NoGradGuard ng;
  for (auto& l : m.quant_layers()) {
    if (!l.bn) continue;
    l.bn->weight.uniform_(0.5, 1.5);
    l.bn->bias.uniform_(-0.2, 0.2);
    l.bn->running_mean.uniform_(-0.2, 0.2);
    l.bn->running_var.uniform_(0.5, 2.0);
  }
}
}  // namespace

TEST_CASE("apply_bn_fold keeps every zoo family's inference output", "[models][bn_fold]") {
  for (const std::string arch : {"resnet8", "resnet18", "mobilenetv2", "efficientnet-lite0", "regnetx-600mf"}) {
    models::ModelSpec spec{1, 10, 28, 0.25, models::Stem::Small};
    at::manual_seed(3);
    auto ref = models::make_model(arch, spec);
    randomise_bns(*ref);
    ref->eval();
    at::manual_seed(11);
    const auto x = at::randn({2, 1, 28, 28});
    at::NoGradGuard ng;
    const auto y_ref = ref->forward(x);
    int with_bn = 0;
    for (auto& l : ref->quant_layers()) with_bn += l.bn != nullptr;
    for (int s : {0, 1, 2, 3, 4}) {
      at::manual_seed(3);
      auto m = models::make_model(arch, spec);
      randomise_bns(*m);
      m->eval();
      INFO(arch << " strategy " << s);
      CHECK(quant::apply_bn_fold(*m, s) == with_bn);
      for (auto& l : m->quant_layers())
        if (l.bn) CHECK(dynamic_cast<quant::QConv2dImpl*>(l.layer)->bn_fold() == s);
      const double rel = ((m->forward(x) - y_ref).abs().max() / y_ref.abs().max()).item<double>();
      CHECK(rel < 1e-4);
    }
  }
}
