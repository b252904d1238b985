#include "qbench/quant/qat.h"

namespace qbench::quant {
void register_qat_pact_dorefa(Registry<QatMethod>&) {}
}  // namespace qbench::quant
