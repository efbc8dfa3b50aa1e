// A small thread pool for megq's kernels.
//
// parallel_for(n, fn) runs fn(0..n-1) on the pool's threads plus the calling
// thread, claiming task ids from one atomic counter, and returns when all are
// done. Workers poll briefly after a job (kernel calls in a network come in
// quick succession), unless they run on the caller's core, and then sleep on
// a condition variable, so an idle pool costs no CPU. A job posted while a
// worker has no core does not wait for it: the caller claims the remaining
// tasks, and waits (polling briefly, then asleep) only for workers that
// started a task. Kernels split work over output tiles with full-K
// accumulation, so results never depend on the thread count.
#ifndef MEGQ_THREAD_POOL_H_
#define MEGQ_THREAD_POOL_H_

#include <functional>

namespace megq {

// Threads kernels use, including the caller. Default: MEGQ_NUM_THREADS if set
// (a decimal integer in [1, kMaxThreads], limits.h; anything else throws
// ArgumentError at the first call that reads it), else the number of CPUs
// capped at kMaxThreads.
int get_num_threads();
// 1 <= n <= kMaxThreads, else ArgumentError. Takes effect at the next
// parallel_for.
void set_num_threads(int n);

// Runs fn(i) for i in [0, n). Calls made from inside a task, or while another
// thread's parallel_for is running, run serially on the calling thread.
void parallel_for(int n, const std::function<void(int)>& fn);

}  // namespace megq

#endif  // MEGQ_THREAD_POOL_H_
