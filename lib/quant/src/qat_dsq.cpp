#include "qbench/quant/qat.h"

namespace qbench::quant {
void register_qat_dsq(Registry<QatMethod>&) {}
}  // namespace qbench::quant
