#include "qbench/quant/qat.h"

namespace qbench::quant {
void register_qat_apot(Registry<QatMethod>&) {}
}  // namespace qbench::quant
