// Helpers shared by megq's stand-alone C++ kernel testers (test_gemm_kernels.cc,
// test_conv_kernels.cc, test_thread_stress.cc): a portable random stream,
// guard-page placement of caller buffers, fault reporting, ISA selection from
// the command line.
#ifndef MEGQ_TESTS_CPP_TEST_SUPPORT_H_
#define MEGQ_TESTS_CPP_TEST_SUPPORT_H_

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "megq/isa.h"

namespace megq_test {

// ---------------------------------------------------------------- randomness
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {  // splitmix64: the same stream on every platform
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (inclusive); the modulo bias is irrelevant here.
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(next() % (hi - lo + 1)); }
  int irange(int lo, int hi) { return static_cast<int>(range(lo, hi)); }
  bool coin(int percent = 50) { return static_cast<int>(next() % 100) < percent; }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
};

// ------------------------------------------------------- fault reporting
// A kernel that touches a guard page gets SIGSEGV: report which case and ISA
// did it, with the usual summary line, instead of dying silently.
inline char g_current[512] = "(setup)";
inline long g_passed_so_far = 0, g_failed_so_far = 0;

inline void on_fault(int sig) {
  char buf[800];
  const int n = std::snprintf(buf, sizeof buf,
                              "FAIL %s: signal %d (an access outside the caller's buffers hits a guard page)\n"
                              "%ld passed, %ld failed\n",
                              g_current, sig, g_passed_so_far, g_failed_so_far + 1);
  if (n > 0) {
    ssize_t ignored = write(STDOUT_FILENO, buf, static_cast<size_t>(n));
    (void)ignored;
  }
  _exit(1);
}

inline void install_fault_handlers() {
  std::signal(SIGSEGV, on_fault);
  std::signal(SIGBUS, on_fault);
}

// ------------------------------------------------------ guarded placement
// One mapping of `capacity` bytes with a PROT_NONE page right after it (tail
// mode) or right before it (head mode). place(bytes) returns memory whose end
// (tail) or start (head) touches the guard, so one byte of over-read/-write
// (tail) or under-read/-write (head) faults.
class GuardedArena {
 public:
  GuardedArena(size_t capacity, bool guard_after) : guard_after_(guard_after) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    capacity_ = (capacity + page_ - 1) / page_ * page_;
    total_ = capacity_ + page_;
    void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::exit(2);
    }
    base_ = static_cast<uint8_t*>(p);
    uint8_t* guard = guard_after_ ? base_ + capacity_ : base_;
    if (mprotect(guard, page_, PROT_NONE) != 0) {
      std::perror("mprotect");
      std::exit(2);
    }
  }
  ~GuardedArena() { munmap(base_, total_); }
  GuardedArena(const GuardedArena&) = delete;
  GuardedArena& operator=(const GuardedArena&) = delete;

  uint8_t* place(size_t bytes) {
    if (bytes > capacity_) {
      std::fprintf(stderr, "GuardedArena: %zu bytes requested, capacity %zu\n", bytes, capacity_);
      std::exit(2);
    }
    return guard_after_ ? base_ + capacity_ - bytes : base_ + page_;
  }
  size_t capacity() const { return capacity_; }
  bool guard_after() const { return guard_after_; }

 private:
  bool guard_after_;
  size_t page_ = 0, capacity_ = 0, total_ = 0;
  uint8_t* base_ = nullptr;
};

// ------------------------------------------------------------- reference
// The requantization contract, written independently of csrc/megq/requantize.h:
// one float32 multiply (no FMA), clamp, round half away from zero (std::round).
inline int32_t reference_requant(int32_t acc, float mult, int32_t zp, int32_t lo, int32_t hi) {
  const float v = static_cast<float>(acc) * mult;
  const float flo = static_cast<float>(lo - zp), fhi = static_cast<float>(hi - zp);
  const float clamped = std::fmin(std::fmax(v, flo), fhi);
  return static_cast<int32_t>(std::round(clamped)) + zp;
}

// ------------------------------------------------------ command line
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

inline void print_isas(const char* title) {
  std::printf("%s\n  built:", title);
  for (megq::Isa isa : {megq::Isa::kScalar, megq::Isa::kAvx2, megq::Isa::kAvx512Vnni, megq::Isa::kNeon,
                        megq::Isa::kNeonDot})
    if (megq::isa_built(isa)) std::printf(" %s", megq::isa_name(isa));
  std::printf("\n  usable:");
  for (megq::Isa isa : megq::usable_isas()) std::printf(" %s", megq::isa_name(isa));
  std::printf("\n");
}

// The ISAs to test from --isa= (`only`, empty: every usable one); counts a
// failure for every --require= ISA that is not usable and every unknown name.
inline std::vector<megq::Isa> select_isas(const std::vector<std::string>& only,
                                          const std::vector<std::string>& required, int* setup_failures) {
  for (const std::string& name : required) {
    megq::Isa isa;
    if (!megq::parse_isa(name, &isa) || !megq::isa_usable(isa)) {
      std::printf("FAIL required ISA %s is not usable in this build/CPU\n", name.c_str());
      ++*setup_failures;
    }
  }
  std::vector<megq::Isa> isas;
  if (only.empty()) {
    isas = megq::usable_isas();
  } else {
    for (const std::string& name : only) {
      megq::Isa isa;
      if (!megq::parse_isa(name, &isa)) {
        std::printf("FAIL unknown ISA name %s\n", name.c_str());
        ++*setup_failures;
      } else if (!megq::isa_usable(isa)) {
        std::printf("skip %s: not usable here\n", name.c_str());
      } else {
        isas.push_back(isa);
      }
    }
  }
  std::printf("  testing:");
  for (megq::Isa isa : isas) std::printf(" %s", megq::isa_name(isa));
  std::printf("\n");
  std::fflush(stdout);
  return isas;
}

}  // namespace megq_test

#endif  // MEGQ_TESTS_CPP_TEST_SUPPORT_H_
