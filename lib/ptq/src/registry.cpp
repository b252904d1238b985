// The PTQ algorithms of this component, from the table generated out of the
// qbench_registry_entry(ptq_algorithms ...) lines of lib/ptq/CMakeLists.txt.
#include "qbench/ptq/ptq.h"

namespace qbench::ptq {

#define QBENCH_REGISTRY_ENTRY(fn) void fn(Registry<quant::AlgorithmEntry>&);
#include "qbench/registry/ptq_algorithms.inc"
#undef QBENCH_REGISTRY_ENTRY

void register_algorithms(Registry<quant::AlgorithmEntry>& r) {
#define QBENCH_REGISTRY_ENTRY(fn) fn(r);
#include "qbench/registry/ptq_algorithms.inc"
#undef QBENCH_REGISTRY_ENTRY
}

}  // namespace qbench::ptq
