#include "qbench/quant/observer.h"

namespace qbench::quant {
void register_extra_observers(Registry<ObserverEntry>&) {}
}  // namespace qbench::quant
