// Instruction-set selection for megq's kernels.
//
// Every kernel family has a scalar path that is always built and one path per
// ISA, compiled in its own translation units (csrc/megq/kernels/<isa>/) with that
// ISA's flags only. At run time megq uses the best ISA that was built *and* that
// the CPU and OS support. The environment variable MEGQ_ISA (read once, at first
// use) or set_active_isa() may lower that choice, never raise it: forcing a path
// the CPU lacks would die with SIGILL. An unknown MEGQ_ISA name makes
// active_isa() throw ArgumentError; a known but unusable one falls back to
// best_isa() with a message on stderr.
#ifndef MEGQ_ISA_H_
#define MEGQ_ISA_H_

#include <string>
#include <vector>

namespace megq {

// Ordered from weakest to strongest within an architecture.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512Vnni = 2, kNeon = 3, kNeonDot = 4 };

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512vnni", "neon", "neondot"; false if unknown.
bool parse_isa(const std::string& name, Isa* out);

// CPU features as detected (cpuid + xgetbv on x86, getauxval on Linux/ARM).
struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA, with YMM state enabled by the OS
  bool avx512vnni = false;   // AVX-512 F/BW/DQ/VL + VNNI, with ZMM/opmask state enabled
  bool neon = false;         // AArch64 Advanced SIMD
  bool neondot = false;      // ARMv8.2 dot product (sdot/udot)
};
const CpuFeatures& cpu_features();

// True if megq was compiled with kernels for `isa`.
bool isa_built(Isa isa);
// True if `isa` was built and this CPU can run it.
bool isa_usable(Isa isa);
// Every usable ISA, scalar first.
std::vector<Isa> usable_isas();
// The best usable ISA, ignoring MEGQ_ISA.
Isa best_isa();

// The ISA new kernels calls and weight packs use.
Isa active_isa();
// Forces `isa`; returns false (and changes nothing) if it is not usable here.
bool set_active_isa(Isa isa);

}  // namespace megq

#endif  // MEGQ_ISA_H_
