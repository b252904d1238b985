#pragma once
// Helpers the built-in dataset formats share (each format registers itself from its own file,
// listed in lib/data/CMakeLists.txt).
#include <memory>

#include "qbench/data/dataset.h"
#include "qbench/data/thread_pool.h"

namespace qbench::data::detail {


/// One decoding pool per worker count, shared by every streaming dataset that asks for it.
std::shared_ptr<ThreadPool> shared_pool(int workers);

/// Reads a whole file; throws DataError naming it when it is missing or unreadable.
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace qbench::data::detail
