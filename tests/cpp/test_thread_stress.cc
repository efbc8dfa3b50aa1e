// Thread-pool stress test for megq's kernels, meant to run under
// ThreadSanitizer (tests/cpp/run_sanitizer_tests.sh) but useful anywhere.
//
// Several application threads call GEMM, conv2d and depthwise at the same
// time, while one more thread keeps changing the pool's thread count
// (megq::set_num_threads). One pool serves the whole process: a call that
// finds it busy runs serially on its own thread, and results never depend on
// the thread count. So every result must equal the one computed up front on
// one thread, byte for byte. Then parallel_for itself: a worker stalled in
// the middle of a task (shorter and far longer than the caller polls) is
// waited for, and with every thread pinned to one CPU (a child process) jobs
// still finish with the right results.
//
// Usage: test_thread_stress [--rounds=N]   (default 30 calls per thread and op)
// The last line is "N passed, M failed"; the exit code is 1 on any failure.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "megq/conv2d.h"
#include "megq/depthwise.h"
#include "megq/gemm.h"
#include "megq/isa.h"
#include "megq/thread_pool.h"
#include "test_support.h"

namespace {

struct Problem {
  std::vector<uint8_t> x;
  std::unique_ptr<megq::PackedGemmWeights> gemm;
  std::unique_ptr<megq::PackedConv2dWeights> conv;
  std::unique_ptr<megq::PackedDepthwiseWeights> dw;
  std::vector<uint8_t> expect_gemm, expect_conv, expect_dw;
};

constexpr int kM = 96, kK = 200, kN = 70;                // GEMM
// conv 3x3 pad 1, depthwise 3x3 pad 1; large enough that both split work
// between threads.
constexpr int kH = 36, kW = 37, kCin = 24, kCout = 40;
constexpr size_t kXBytes = static_cast<size_t>(kH) * kW * kCin;  // >= kM * kK

megq::GemmOutput int8_output() {
  megq::GemmOutput o;
  o.type = megq::OutputType::kInt8;
  return o;
}

std::vector<uint8_t> run_gemm(const Problem& p) {
  std::vector<uint8_t> y(static_cast<size_t>(kM) * kN);
  megq::gemm(*p.gemm, p.x.data(), kM, kK, int8_output(), y.data(), kN);
  return y;
}

std::vector<uint8_t> run_conv(const Problem& p) {
  std::vector<uint8_t> y(static_cast<size_t>(kH) * kW * kCout);
  megq::Conv2dInput in{p.x.data(), 1, kH, kW, kCin, static_cast<ptrdiff_t>(kH) * kW * kCin, kW * kCin, kCin};
  megq::Conv2dParams c;
  c.pad_h = c.pad_w = 1;
  megq::conv2d(*p.conv, in, c, int8_output(), y.data());
  return y;
}

std::vector<uint8_t> run_dw(const Problem& p) {
  std::vector<uint8_t> y(static_cast<size_t>(kH) * kW * kCin);
  megq::DepthwiseParams dp;
  dp.pad_h = dp.pad_w = 1;
  megq::depthwise_conv2d(*p.dw, p.x.data(), 1, kH, kW, static_cast<ptrdiff_t>(kH) * kW * kCin, kW * kCin, kCin, dp,
                         y.data());
  return y;
}

// The problems and their one-thread results.
Problem make_problem() {
  megq_test::Rng rng(0x5757ull);
  Problem p;
  p.x.resize(kXBytes);
  for (auto& v : p.x) v = static_cast<uint8_t>(rng.next());
  const float mult = 1.0f / 2048.0f;
  std::vector<int8_t> w(static_cast<size_t>(kK) * kN);
  for (auto& v : w) v = static_cast<int8_t>(rng.range(-127, 127));
  megq::PackGemmOptions o;
  o.multiplier = &mult;
  o.multiplier_count = 1;
  const megq::Isa isa = megq::active_isa();
  p.gemm = megq::pack_gemm_weights(w.data(), kK, kN, kN, o, isa);
  std::vector<int8_t> wc(static_cast<size_t>(kCout) * kCin * 9);
  for (auto& v : wc) v = static_cast<int8_t>(rng.range(-127, 127));
  p.conv = megq::pack_conv2d_weights(wc.data(), kCout, kCin, 3, 3, 1, o, isa);
  std::vector<int8_t> wd(static_cast<size_t>(kCin) * 9);
  for (auto& v : wd) v = static_cast<int8_t>(rng.range(-127, 127));
  megq::PackDepthwiseOptions od;
  const float dmult = 1.0f / 64.0f;
  od.multiplier = &dmult;
  od.multiplier_count = 1;
  p.dw = megq::pack_depthwise_weights(wd.data(), kCin, 1, 3, 3, od, isa);

  megq::set_num_threads(1);
  p.expect_gemm = run_gemm(p);
  p.expect_conv = run_conv(p);
  p.expect_dw = run_dw(p);
  return p;
}

// A worker that stalls in the middle of a task (as when the OS takes its core
// away) must be waited for, whether it comes back within the caller's short
// poll or long after it (the caller then sleeps until the worker wakes it):
// every task runs exactly once and has finished when parallel_for returns.
// The caller's first task holds the job open until a worker has started a
// task, so the stalled-worker path is taken every time.
bool stalled_worker_round(int delay_us, int n) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
  for (auto& r : runs) r.store(0);
  std::atomic<bool> worker_started{false}, stalled{false};
  const std::thread::id caller = std::this_thread::get_id();
  megq::parallel_for(n, [&](int i) {
    if (std::this_thread::get_id() == caller) {
      while (!worker_started.load()) std::this_thread::sleep_for(std::chrono::microseconds(20));
    } else {
      worker_started.store(true);
      if (!stalled.exchange(true)) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    }
    runs[static_cast<size_t>(i)].fetch_add(1);
  });
  for (auto& r : runs) {
    if (r.load() != 1) return false;
  }
  return true;
}

// Every thread on one CPU: workers never poll there (they would keep the
// caller from running), so every job goes through the sleeping paths. Runs
// in a child process pinned to one CPU; returns the number of failures, or
// -1 if this platform cannot pin.
int one_cpu_checks() {
#if defined(__linux__)
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof(one), &one) != 0) _exit(100);
    Problem p = make_problem();
    int failures = 0;
    megq::set_num_threads(2);
    for (int r = 0; r < 20; ++r) {
      if (run_gemm(p) != p.expect_gemm || run_conv(p) != p.expect_conv || run_dw(p) != p.expect_dw) ++failures;
      if (!stalled_worker_round(r % 2 == 0 ? 10 : 300, 8)) ++failures;
    }
    _exit(failures > 99 ? 99 : failures);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
  const int code = WEXITSTATUS(status);
  return code == 100 ? -1 : code;
#else
  return -1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--rounds=", 9) == 0) {
      rounds = std::atoi(argv[i] + 9);
    } else {
      std::fprintf(stderr, "usage: %s [--rounds=N]\n", argv[0]);
      return 2;
    }
  }
  // First, while this process has no threads yet (it forks).
  const int one_cpu_failures = one_cpu_checks();
  Problem p = make_problem();
  const megq::Isa isa = megq::active_isa();
  std::printf("megq thread-pool stress test (isa %s, %d rounds)\n", megq::isa_name(isa), rounds);

  std::atomic<long> passed{0}, failed{0};
  if (one_cpu_failures < 0) {
    std::printf("(one-CPU checks skipped: cannot pin a process to one CPU here)\n");
  } else if (one_cpu_failures == 0) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL one CPU: %d wrong results or unfinished tasks\n", one_cpu_failures);
  }
  std::atomic<bool> done{false};
  // Changes the pool size while the others compute.
  std::thread changer([&] {
    const int counts[] = {1, 2, 3, 4, 8, 2};
    for (int i = 0; !done.load(); ++i) {
      megq::set_num_threads(counts[i % 6]);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int r = 0; r < rounds; ++r) {
        const int op = (t + r) % 3;
        const std::vector<uint8_t> got = op == 0 ? run_gemm(p) : op == 1 ? run_conv(p) : run_dw(p);
        const std::vector<uint8_t>& want = op == 0 ? p.expect_gemm : op == 1 ? p.expect_conv : p.expect_dw;
        if (got == want) {
          ++passed;
        } else if (++failed <= 10) {
          std::printf("FAIL thread %d round %d: %s result differs from the single-thread one\n", t, r,
                      op == 0 ? "gemm" : op == 1 ? "conv2d" : "depthwise");
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  done.store(true);
  changer.join();
  // The pool itself at several sizes, from this thread only.
  for (int threads : {1, 2, 4, 7}) {
    megq::set_num_threads(threads);
    for (int r = 0; r < 3; ++r) {
      const bool ok = run_gemm(p) == p.expect_gemm && run_conv(p) == p.expect_conv && run_dw(p) == p.expect_dw;
      ok ? ++passed : ++failed;
      if (!ok) std::printf("FAIL %d threads: a result differs from the single-thread one\n", threads);
    }
  }
  // A worker stalled mid-task, for less and for much longer than the
  // caller's poll.
  for (int threads : {2, 3}) {
    megq::set_num_threads(threads);
    for (int delay_us : {0, 10, 200, 3000, 20000}) {
      for (int r = 0; r < 3; ++r) {
        const bool ok = stalled_worker_round(delay_us, 16);
        ok ? ++passed : ++failed;
        if (!ok) std::printf("FAIL %d threads, worker stalled %d us: a task ran != 1 times\n", threads, delay_us);
      }
    }
  }
  std::printf("%ld passed, %ld failed\n", passed.load(), failed.load());
  return failed.load() == 0 ? 0 : 1;
}
