#pragma once
// A small fixed pool of threads for decoding items in parallel. Torch-free: the tasks it runs
// must not call ATen (they write into buffers the caller allocated).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace qbench::data {

class ThreadPool {
 public:
  /// `threads` workers (0: one per core). The thread that calls parallel_for works too.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()); }

  /// Runs fn(0..n-1), spread over the pool and the calling thread; returns when all are done.
  /// Safe to call from several threads at once. When items throw, every item still runs and the
  /// exception of the lowest failing index is rethrown (the same error whatever the timing).
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  struct Job;
  void worker();
  static void run_items(Job& job);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

/// Threads for `requested` workers: requested itself, or the core count when it is 0.
int resolve_workers(int requested);

}  // namespace qbench::data
