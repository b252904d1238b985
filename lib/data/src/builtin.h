#pragma once
// Registration functions of the built-in dataset formats, one per source file.
#include <memory>

#include "qbench/data/dataset.h"
#include "qbench/data/thread_pool.h"

namespace qbench::data::detail {

void register_idx_datasets(Registry<DatasetEntry>& r);          // fashion-mnist, mnist (idx_dataset.cpp)
void register_cifar_datasets(Registry<DatasetEntry>& r);        // cifar10, cifar100 (cifar.cpp)
void register_imagefolder_dataset(Registry<DatasetEntry>& r);   // imagefolder (imagefolder.cpp)
void register_synthetic_dataset(Registry<DatasetEntry>& r);     // synthetic (synthetic.cpp)

/// One decoding pool per worker count, shared by every streaming dataset that asks for it.
std::shared_ptr<ThreadPool> shared_pool(int workers);

/// Reads a whole file; throws DataError naming it when it is missing or unreadable.
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace qbench::data::detail
