#include "megq/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

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

using Clock = std::chrono::steady_clock;

// Polling versus sleeping. A thread woken through a futex starts tens of
// microseconds later (an interrupt to its core, which may first have to leave
// a low-power state), while the kernel calls of a network come 10-100 us
// apart: on idle cores, a worker that polls for the next job is what lets
// two threads beat one on layers of a few hundred microseconds. On contended
// cores polling does harm in two places, and both are avoided:
// - A worker polling on the core the caller runs on (the scheduler often
//   puts a woken thread on its waker's core once every core is busy) keeps
//   the caller from running until the poll ends: the next layer starts up to
//   a whole poll late, so two threads end up slower than one. Such a worker
//   sleeps at once; the next job wakes it and the scheduler places it anew.
// - A caller waiting for a worker that lost its core in the middle of a
//   task may wait milliseconds; polling or yielding all that time takes CPU
//   time from that worker and everyone else. The caller polls briefly (a
//   worker with a core finishes its last task within microseconds), then
//   sleeps until the last worker wakes it.
// kWorkerPoll: how long a worker polls for the next job after finishing one.
// kCallerPoll: how long the caller polls for workers still in their last task.
constexpr Clock::duration kWorkerPoll = std::chrono::microseconds(200);
constexpr Clock::duration kCallerPoll = std::chrono::microseconds(50);

// Tells the core this is a polling loop (lower power, yields the pipeline to
// a hyperthread sibling). Baseline instructions on both architectures.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// The CPU the calling thread runs on, or -1 where unknown.
inline int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Polls until done() or for `budget` (wall time: a poller that loses its
// core comes back past the deadline and stops); returns done().
template <class Done>
bool poll_for(Clock::duration budget, Done done) {
  const Clock::time_point until = Clock::now() + budget;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= until) return done();
    cpu_relax();
  }
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
    caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
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
    wait_for_workers();
    // Where the next job's caller most likely runs: workers finishing now
    // check it before polling.
    caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
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

  void wait_for_workers() {
    if (poll_for(kCallerPoll, [&] { return active_workers_.load(std::memory_order_acquire) == 0; })) return;
    // The flag and the counter are sequentially consistent: either the last
    // worker's decrement comes first and the predicate sees zero, or that
    // worker sees the flag and notifies under done_mutex_, which the
    // predicate is checked under.
    caller_waiting_.store(true);
    {
      std::unique_lock<std::mutex> lock(done_mutex_);
      done_.wait(lock, [&] { return active_workers_.load() == 0; });
    }
    caller_waiting_.store(false, std::memory_order_relaxed);
  }

  // `seen` is the generation at creation: a worker that starts running only
  // after the first job was posted must still take that job.
  void worker_loop(int index, unsigned long long seen) {
    for (;;) {
      const int cpu = current_cpu();
      if (cpu < 0 || cpu != caller_cpu_.load(std::memory_order_relaxed)) {
        poll_for(kWorkerPoll, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (!job_open_ || index >= participating_) continue;  // finished already, or fewer threads
        active_workers_.fetch_add(1, std::memory_order_relaxed);
      }
      work();
      if (active_workers_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        std::lock_guard<std::mutex> lock(done_mutex_);
        done_.notify_one();
      }
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
  int participating_ = 0;  // guarded by mutex_
  bool job_open_ = false;  // guarded by mutex_
  const std::function<void(int)>* job_ = nullptr;
  int job_size_ = 0;
  std::atomic<int> next_task_{0};
  std::atomic<int> active_workers_{0};
  // The caller's CPU at its last job post or return (-1: unknown).
  std::atomic<int> caller_cpu_{-1};
  // Sleeping caller: see wait_for_workers().
  std::mutex done_mutex_;
  std::condition_variable done_;
  std::atomic<bool> caller_waiting_{false};
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
