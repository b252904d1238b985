#pragma once
// What the QAT method tests share: a method's registry entry, checked for its citation, and the
// weight and activation quantizers it makes.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "qbench/qat/method.h"
#include "scheme_util.h"

namespace qbench::test {

struct MethodQuantizers {
  std::shared_ptr<quant::FakeQuantizer> weight, activation;
};

/// The QAT method `name`: registered (lib/qat's generated table), its citation naming `paper` (an
/// arXiv id); returns what it makes for a 4-bit signed weight and a 4-bit activation (Auto).
inline MethodQuantizers registered_qat_method(const std::string& name, const std::string& paper) {
  const auto& reg = qat::qat_method_registry();
  REQUIRE(reg.contains(name));
  const auto& m = reg.get(name);
  CHECK(m.paper.find(paper) != std::string::npos);
  return {m.make_weight(test_scheme(4, quant::Signedness::Signed)),
          m.make_activation(test_scheme(4, quant::Signedness::Auto))};
}

}  // namespace qbench::test
