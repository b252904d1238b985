#include "qbench/quant/algorithm.h"

namespace qbench::quant {

Registry<AlgorithmEntry>& algorithm_registry() {
  static Registry<AlgorithmEntry> reg("algorithm");
  return reg;
}

}  // namespace qbench::quant
