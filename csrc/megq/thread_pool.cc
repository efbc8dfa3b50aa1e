#include "megq/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "megq/gemm.h"  // ArgumentError
#include "megq/limits.h"

namespace megq {
namespace {

// MEGQ_NUM_THREADS: unset or empty means "the CPU count" (capped at
// kMaxThreads); anything else must be a plain decimal integer in
// [1, kMaxThreads]. No sign, no spaces, no suffix: "8x", "-1", "1e3" and
// values that overflow are errors, not silently something else.
int default_num_threads() {
  const char* env = std::getenv("MEGQ_NUM_THREADS");
  if (env != nullptr && env[0] != '\0') {
    long long n = 0;
    bool ok = true;
    for (const char* c = env; *c != '\0'; ++c) {
      if (*c < '0' || *c > '9' || n > kMaxThreads) {
        ok = false;
        break;
      }
      n = n * 10 + (*c - '0');
    }
    if (!ok || n < 1 || n > kMaxThreads) {
      throw ArgumentError("MEGQ_NUM_THREADS: expected an integer in [1, " + std::to_string(kMaxThreads) +
                          "] (or unset for the CPU count), got '" + std::string(env) + "'");
    }
    return static_cast<int>(n);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw == 0) return 1;
  return hw > static_cast<unsigned>(kMaxThreads) ? kMaxThreads : static_cast<int>(hw);
}

thread_local bool t_inside_task = false;

class Pool {
 public:
  int num_threads() const { return num_threads_.load(); }
  void set_num_threads(int n) { num_threads_.store(n); }

  void run(int n, const std::function<void(int)>& fn) {
    const int threads = std::min(num_threads_.load(), n);
    if (threads <= 1 || t_inside_task) {
      run_serial(n, fn);
      return;
    }
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) {  // another Python thread is using the pool
      run_serial(n, fn);
      return;
    }
    grow_workers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_size_ = n;
      next_task_.store(0);
      job_open_ = true;
      participating_ = threads - 1;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    work();  // the caller takes tasks too
    // Every task is claimed. Close the job so that a worker that wakes up
    // late (its core busy with another process) does not join, and wait
    // only for the workers that joined and may still run their last task:
    // never for one the OS has not scheduled yet.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_open_ = false;
    }
    while (active_workers_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    job_ = nullptr;
  }

 private:
  static void run_serial(int n, const std::function<void(int)>& fn) {
    const bool was_inside = t_inside_task;
    t_inside_task = true;
    for (int i = 0; i < n; ++i) fn(i);
    t_inside_task = was_inside;
  }

  void work() {
    t_inside_task = true;
    for (;;) {
      const int i = next_task_.fetch_add(1);
      if (i >= job_size_) break;
      (*job_)(i);
    }
    t_inside_task = false;
  }

  // `seen` is the generation at creation: a worker that starts running only
  // after the first job was posted must still take that job.
  void worker_loop(int index, unsigned long long seen) {
    for (;;) {
      // Spin for a short while before sleeping: back-to-back layer calls then
      // start without a futex wake-up.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until) {
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (!job_open_ || index >= participating_) continue;  // finished already, or fewer threads
        active_workers_.fetch_add(1, std::memory_order_relaxed);
      }
      work();
      active_workers_.fetch_sub(1, std::memory_order_release);
    }
  }

  // Workers are created on demand and live until the process exits.
  void grow_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int index = static_cast<int>(workers_.size());
      const unsigned long long seen = generation_.load();
      workers_.emplace_back([this, index, seen] { worker_loop(index, seen); });
    }
  }

  std::atomic<int> num_threads_{default_num_threads()};
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  std::atomic<unsigned long long> generation_{0};
  int participating_ = 0;
  bool job_open_ = false;  // guarded by mutex_
  const std::function<void(int)>* job_ = nullptr;
  int job_size_ = 0;
  std::atomic<int> next_task_{0};
  std::atomic<int> active_workers_{0};
};

Pool& pool() {
  // Leaked on purpose: joining threads during interpreter shutdown (static
  // destruction order) can deadlock; the OS reclaims them at exit.
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int get_num_threads() { return pool().num_threads(); }
void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) {
    throw ArgumentError("n: expected a thread count >= 1 and <= " + std::to_string(kMaxThreads) + ", got " +
                        std::to_string(n));
  }
  pool().set_num_threads(n);
}
void parallel_for(int n, const std::function<void(int)>& fn) { pool().run(n, fn); }

}  // namespace megq
