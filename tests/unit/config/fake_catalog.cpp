// The small catalog the config tests validate against, in place of the app's real registries.
#include "qbench/config/matrix.h"

namespace qbench::config::test {

Catalog fake_catalog() {
  Catalog c;
  c.algorithms = {{"fp32", "fp32"}, {"minmax", "ptq"}, {"lsq", "qat"}, {"pact", "qat"}, {"brecq", "ptq", true}};
  c.archs = {"resnet20", "resnet8"};
  c.datasets = {"fashion-mnist", "mnist"};
  c.profiles = {"academic", "tensorrt"};
  c.profile_bn_fold = {{"academic", -1}, {"tensorrt", 4}};
  c.observers = {"minmax", "mse"};
  c.planned_algorithms = {{"adaround", "planned"}};
  return c;
}

}  // namespace qbench::config::test
