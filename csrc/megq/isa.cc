#include "megq/isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "megq/gemm.h"  // ArgumentError

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define MEGQ_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define MEGQ_ARM64_LINUX 1
#endif

namespace megq {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kNeon: return "neon";
    case Isa::kNeonDot: return "neondot";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni, Isa::kNeon, Isa::kNeonDot}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

namespace {

#ifdef MEGQ_X86
// XCR0 tells which register state the OS saves on context switch. A CPU may
// report AVX-512 in cpuid while the OS (or hypervisor) leaves ZMM state off;
// using it then faults, so both checks are required.
unsigned long long read_xcr0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool avx = (ecx >> 28) & 1;
  const bool fma = (ecx >> 12) & 1;
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = ymm_state && (xcr0 & 0xE0) == 0xE0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx2 = (ebx >> 5) & 1;
  const bool avx512f = (ebx >> 16) & 1, avx512dq = (ebx >> 17) & 1;
  const bool avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
  const bool avx512vnni = (ecx >> 11) & 1;
  f.avx2 = ymm_state && avx2 && fma;
  f.avx512vnni = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni;
#ifdef MEGQ_ASSUME_AVX512VNNI_CPU
  // Test builds only (tests/cpp, option MEGQ_EMULATE_AVX512VNNI): the
  // avx512vnni kernels were compiled against SIMDe, without AVX-512
  // instructions, so they run on any x86-64 CPU.
  f.avx512vnni = true;
#endif
  return f;
}
#elif defined(MEGQ_ARM64_LINUX)
CpuFeatures detect() {
  CpuFeatures f;
  f.neon = true;  // Advanced SIMD is mandatory on AArch64.
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
  // getauxval, not the ID_AA64ISAR0_EL1 register: reading that from user
  // space traps on some kernels and cores.
  f.neondot = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
  CpuFeatures f;
  f.neon = true;
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

std::atomic<int> g_active{-1};
std::once_flag g_init_once;

// MEGQ_ISA: unset or empty means the best usable ISA. A name parse_isa does
// not know is an error (a typo must not silently run another path); a known
// ISA that this CPU or build cannot run falls back to the best one with a
// message on stderr, so one script works on machines with different CPUs.
void init_active_isa() {
  Isa chosen = best_isa();
  if (const char* env = std::getenv("MEGQ_ISA")) {
    Isa wanted;
    if (env[0] == '\0') {
      // empty: no override
    } else if (!parse_isa(env, &wanted)) {
      throw ArgumentError(std::string("MEGQ_ISA: expected one of scalar, avx2, avx512vnni, neon, neondot (or unset), "
                                      "got '") + env + "'");
    } else if (!isa_usable(wanted)) {
      std::fprintf(stderr, "megq: MEGQ_ISA=%s is not usable on this CPU/build; using %s\n", env,
                   isa_name(chosen));
    } else {
      chosen = wanted;
    }
  }
  g_active.store(static_cast<int>(chosen));
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_built(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2: return true;
#endif
#ifdef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni: return true;
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon: return true;
#endif
#ifdef MEGQ_BUILT_NEONDOT
    case Isa::kNeonDot: return true;
#endif
    default: return false;
  }
}

bool isa_usable(Isa isa) {
  if (!isa_built(isa)) return false;
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return f.avx2;
    case Isa::kAvx512Vnni: return f.avx512vnni;
    case Isa::kNeon: return f.neon;
    case Isa::kNeonDot: return f.neondot;
  }
  return false;
}

std::vector<Isa> usable_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni, Isa::kNeon, Isa::kNeonDot}) {
    if (isa_usable(isa)) out.push_back(isa);
  }
  return out;
}

Isa best_isa() { return usable_isas().back(); }

Isa active_isa() {
  std::call_once(g_init_once, init_active_isa);
  return static_cast<Isa>(g_active.load());
}

bool set_active_isa(Isa isa) {
  std::call_once(g_init_once, init_active_isa);
  if (!isa_usable(isa)) return false;
  g_active.store(static_cast<int>(isa));
  return true;
}

}  // namespace megq
