#include "qbench/data/thread_pool.h"

#include <atomic>
#include <exception>

namespace qbench::data {

struct ThreadPool::Job {
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mu;
  std::condition_variable finished;
  int64_t error_index = -1;
  std::exception_ptr error;
};

int resolve_workers(int requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

ThreadPool::ThreadPool(int threads) {
  const int n = resolve_workers(threads);
  workers_.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_items(Job& job) {
  for (int64_t i; (i = job.next.fetch_add(1)) < job.n;) {
    try {
      (*job.fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(job.mu);
      if (job.error_index < 0 || i < job.error_index) {
        job.error_index = i;
        job.error = std::current_exception();
      }
    }
    if (job.done.fetch_add(1) + 1 == job.n) {
      std::lock_guard<std::mutex> lk(job.mu);
      job.finished.notify_all();
    }
  }
}

void ThreadPool::worker() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = jobs_.front();
      // Every index of the front job is handed out: later arrivals go to the next job.
      if (job->next.load() >= job->n) {
        jobs_.pop_front();
        continue;
      }
    }
    run_items(*job);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  if (n > 1 && !workers_.empty()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      jobs_.push_back(job);
    }
    cv_.notify_all();
  }
  run_items(*job);
  {
    std::unique_lock<std::mutex> lk(job->mu);
    job->finished.wait(lk, [&] { return job->done.load() == job->n; });
  }
  {
    // Drop the job from the queue if no worker did (it must not outlive `fn`).
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it)
      if (*it == job) {
        jobs_.erase(it);
        break;
      }
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace qbench::data
