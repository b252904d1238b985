#pragma once
// The batch loader: yields the batches of a plan in plan order while the next ones are loaded in
// a background thread (a bounded queue of `prefetch` batches). Each batch is
// Dataset::load_batch(request), so the sequence is identical to loading synchronously, whatever
// the timing; a loading error surfaces at the batch that caused it.
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <cstdint>
#include <limits>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "qbench/data/dataset.h"

namespace qbench::data {

struct BatchRequest {
  std::vector<int64_t> indices;
  Mode mode = Mode::Eval;
  uint64_t seed = 0;
};

/// Consecutive batches of `batch_size` over `order` (the last one shorter), all in `mode`; batch b
/// gets seed seed_of(b) (nullptr: 0).
std::vector<BatchRequest> plan_batches(const std::vector<int64_t>& order, int64_t batch_size, Mode mode,
                                       const std::function<uint64_t(int64_t)>& seed_of = nullptr);

/// Batches over 0..n-1 in index order, eval mode (evaluation).
std::vector<BatchRequest> plan_sequential(int64_t n, int64_t batch_size);

struct LoaderOptions {
  int prefetch = 2;  ///< batches loaded ahead of the consumer (the queue bound)
  /// Background loading; in-memory datasets load synchronously unless `force_background`.
  bool background = true;
  bool force_background = false;
};

class BatchLoader {
 public:
  /// `ds` must outlive the loader.
  BatchLoader(const Dataset& ds, std::vector<BatchRequest> plan, LoaderOptions opt = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t size() const { return static_cast<int64_t>(plan_.size()); }
  bool background() const { return thread_.joinable(); }
  /// The next batch of the plan (nullopt after the last); rethrows that batch's loading error.
  std::optional<Batch> next();

 private:
  void produce();

  const Dataset& ds_;
  std::vector<BatchRequest> plan_;
  LoaderOptions opt_;
  std::size_t next_ = 0;  ///< consumer position
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::size_t, Batch> ready_;
  std::size_t failed_at_ = SIZE_MAX;  ///< the batch whose loading threw (error_)
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace qbench::data
