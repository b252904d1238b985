#include "qbench/quant/qat.h"

namespace qbench::quant {
void register_qat_qil(Registry<QatMethod>&) {}
}  // namespace qbench::quant
