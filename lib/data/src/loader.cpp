#include "qbench/data/loader.h"

#include <algorithm>

namespace qbench::data {

std::vector<BatchRequest> plan_batches(const std::vector<int64_t>& order, int64_t batch_size, Mode mode,
                                       const std::function<uint64_t(int64_t)>& seed_of) {
  std::vector<BatchRequest> plan;
  const int64_t n = static_cast<int64_t>(order.size()), bs = std::max<int64_t>(1, batch_size);
  for (int64_t start = 0, b = 0; start < n; start += bs, ++b) {
    BatchRequest r;
    r.indices.assign(order.begin() + start, order.begin() + std::min(n, start + bs));
    r.mode = mode;
    r.seed = seed_of ? seed_of(b) : 0;
    plan.push_back(std::move(r));
  }
  return plan;
}

std::vector<BatchRequest> plan_sequential(int64_t n, int64_t batch_size) {
  std::vector<int64_t> order(static_cast<std::size_t>(std::max<int64_t>(0, n)));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  return plan_batches(order, batch_size, Mode::Eval);
}

BatchLoader::BatchLoader(const Dataset& ds, std::vector<BatchRequest> plan, LoaderOptions opt)
    : ds_(ds), plan_(std::move(plan)), opt_(opt) {
  opt_.prefetch = std::max(1, opt_.prefetch);
  const bool bg = opt_.force_background || (opt_.background && !ds_.in_memory());
  if (bg && !plan_.empty()) thread_ = std::thread([this] { produce(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BatchLoader::produce() {
  for (std::size_t k = 0; k < plan_.size(); ++k) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Bounded: at most `prefetch` batches ahead of the one the consumer waits for.
      cv_.wait(lk, [&] { return stop_ || k < next_ + static_cast<std::size_t>(opt_.prefetch); });
      if (stop_) return;
    }
    Batch b;
    std::exception_ptr err;
    try {
      const auto& r = plan_[k];
      b = ds_.load_batch(r.indices, r.mode, r.seed);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (err) {
        failed_at_ = k;
        error_ = err;
      } else {
        ready_[k] = std::move(b);
      }
    }
    cv_.notify_all();
    if (err) return;  // the consumer rethrows it at batch k (and after); nothing later is loaded
  }
}

std::optional<Batch> BatchLoader::next() {
  if (next_ >= plan_.size()) return std::nullopt;
  const std::size_t k = next_;
  if (!thread_.joinable()) {
    ++next_;
    const auto& r = plan_[k];
    return ds_.load_batch(r.indices, r.mode, r.seed);
  }
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return ready_.count(k) || failed_at_ <= k; });
  if (!ready_.count(k)) std::rethrow_exception(error_);
  ++next_;
  Batch b = std::move(ready_[k]);
  ready_.erase(k);
  lk.unlock();
  cv_.notify_all();  // a slot is free: the producer may load the next batch
  return b;
}

}  // namespace qbench::data
