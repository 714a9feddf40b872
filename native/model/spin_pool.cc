#include "spin_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace spin {

namespace {

// How long a helper keeps polling for the next job: the serial ops between two products of a
// layer (norms, rotary embedding, attention, residual adds) take tens of microseconds.
constexpr auto kSpin = std::chrono::microseconds(300);

class SpinPool {
 public:
  bool For(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& body) {
    std::unique_lock<std::mutex> owner(use_, std::try_to_lock);
    if (!owner.owns_lock()) return false;
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, (n + grain - 1) / grain));
    if (parts == 1) {
      body(0, n);
      return true;
    }
    Grow(static_cast<int>(parts) - 1);
    const Job job{&body, n, parts};
    {
      std::lock_guard<std::mutex> lock(state_);
      job_ = job;
      remaining_.store(parts - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    std::exception_ptr failure;
    try {
      job.Run(0);
    } catch (...) {
      failure = std::current_exception();
    }
    // The helpers' parts: wait for them even after a failure, since they use `body` (they are
    // already running, so spin).
    while (remaining_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
    {
      std::lock_guard<std::mutex> lock(state_);
      std::exception_ptr helper = std::exchange(helper_failure_, nullptr);
      if (!failure) failure = helper;
    }
    if (failure) std::rethrow_exception(failure);
    return true;
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* body = nullptr;
    int64_t n = 0, parts = 0;
    void Run(int64_t part) const {
      const int64_t chunk = (n + parts - 1) / parts;
      const int64_t begin = part * chunk, end = std::min(n, begin + chunk);
      if (begin < end) (*body)(begin, end);
    }
  };

  void Grow(int helpers) {
    while (static_cast<int>(helpers_.size()) < helpers) {
      const int index = static_cast<int>(helpers_.size()) + 1;  // part 0 is the caller's
      // Before the job is posted: the new helper waits for the next generation, this job's.
      const uint64_t current = generation_.load(std::memory_order_acquire);
      helpers_.emplace_back([this, index, current] { Serve(index, current); });
      helpers_.back().detach();
    }
  }

  void Serve(int index, uint64_t seen) {
    for (;;) {
      // Poll for a new job for a while, then sleep until one is posted.
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until) sched_yield();
      Job job;
      {
        // The job is read with its generation, under the lock it was posted under: a helper
        // that sat out earlier jobs never pairs one job's generation with another's fields.
        std::unique_lock<std::mutex> lock(state_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      if (index < job.parts) {
        try {
          job.Run(index);
        } catch (...) {
          // Handed to the caller, which rethrows it (an exception escaping a thread would end the process).
          std::lock_guard<std::mutex> lock(state_);
          if (!helper_failure_) helper_failure_ = std::current_exception();
        }
        remaining_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::mutex use_;    // one caller at a time
  std::mutex state_;  // guards posting a job against a helper going to sleep
  std::condition_variable wake_;
  std::vector<std::thread> helpers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> remaining_{0};
  Job job_;                          // the latest job, guarded by state_
  std::exception_ptr helper_failure_;  // the first helper's exception of the latest job, guarded by state_
};

}  // namespace

bool SpinPoolFor(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& body) {
  // Never destroyed: its detached helpers outlive static destruction at exit.
  static SpinPool* pool = new SpinPool();
  return pool->For(n, grain, threads, body);
}

}  // namespace spin
