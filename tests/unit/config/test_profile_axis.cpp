// The profile axis: a profile whose file loads but cannot run yet (nnie's log domain) is refused
// when the matrix is validated, with the reason, instead of failing every cell at run time.
#include <catch2/catch.hpp>

#include "qbench/common/errors.h"
#include "qbench/config/matrix.h"
#include "unit/config/config_util.h"

using namespace qbench;

TEST_CASE("an unrunnable profile is rejected at validation with its reason", "[config][profiles]") {
  auto cat = config::test::fake_catalog();
  cat.profiles.push_back("nnie");
  cat.unrunnable_profiles["nnie"] = "log-domain quantization is not implemented";
  const std::string text = "name: t\ndataset: mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n"
                           "  arch: [resnet8]\n  profile: [tensorrt, nnie]\n";
  CHECK(config::test::config_error([&] { config::parse_matrix(text, "m.yaml", cat); }) ==
        "m.yaml:7:23: matrix.profile[1]: profile 'nnie' is not implemented yet: log-domain quantization is not "
        "implemented");
  auto m = config::parse_matrix(text.substr(0, text.find(", nnie")) + "]\n", "m.yaml", cat);
  CHECK(m.profiles == std::vector<std::string>{"tensorrt"});
  // In an include entry too.
  const std::string inc = "name: t\ndataset: mnist\nmatrix:\n  algorithm: [minmax]\n  bits: [w8a8]\n"
                          "  arch: [resnet8]\n  include: [{profile: nnie}]\n";
  CHECK_THROWS_WITH(config::parse_matrix(inc, "m.yaml", cat), Catch::Contains("profile 'nnie' is not implemented yet"));
}
