#include "qbench/quant/qat.h"

namespace qbench::quant {
void register_qat_lsq(Registry<QatMethod>&) {}
}  // namespace qbench::quant
