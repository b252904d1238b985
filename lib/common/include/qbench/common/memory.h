// Process-wide allocator settings for training workloads.
#pragma once

#include <string>

namespace qbench {

/// Keeps freed large blocks (activations, gradients) in the heap instead of handing them back
/// to the kernel after every step, so the next step does not page-fault its tensors in again.
/// glibc's defaults serve blocks of 128 KiB..32 MiB from mmap or trim them off the heap top as
/// soon as a step frees them; a QAT step re-faults every quantizer output and gradient that way
/// (measured: 396k minor faults and +22 ms per ResNet-20 LSQ step at batch 128, see
/// bench/bench_qat.cpp). The price: resident memory stays at the run's peak. Call once, first
/// thing in main(). Does nothing where the allocator is not glibc's, or when QBENCH_MALLOC=system
/// is set in the environment (or any MALLOC_* tunable, which then wins). Returns what it did, for
/// the provenance record ("glibc: ...", "system (...)").
std::string tune_allocator();

/// What tune_allocator() did in this process ("" before it ran).
const std::string& allocator_setting();

}  // namespace qbench
