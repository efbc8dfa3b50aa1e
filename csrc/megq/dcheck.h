// MEGQ_DCHECK(cond): a kernel precondition (pointer alignment, tile bounds,
// K / N ranges, non-null pointers) that the drivers already guarantee.
// Compiled out unless MEGQ_ENABLE_DCHECK is defined (the C++ test builds in
// tests/cpp define it); then a failure prints the condition and its place and
// aborts, so a driver bug surfaces where it happens instead of as a wrong
// number or a stray write much later. Public argument errors are never
// DCHECKs: they throw ArgumentError in every build.
#ifndef MEGQ_DCHECK_H_
#define MEGQ_DCHECK_H_

#include <cstdint>

namespace megq {
[[noreturn]] void dcheck_failed(const char* condition, const char* file, int line);
}  // namespace megq

#ifdef MEGQ_ENABLE_DCHECK
#define MEGQ_DCHECK(cond) ((cond) ? static_cast<void>(0) : ::megq::dcheck_failed(#cond, __FILE__, __LINE__))
#else
#define MEGQ_DCHECK(cond) static_cast<void>(0)
#endif

// True if `p` is a multiple of `alignment` bytes (a power of two).
#define MEGQ_ALIGNED(p, alignment) ((reinterpret_cast<std::uintptr_t>(p) & ((alignment) - 1)) == 0)

#endif  // MEGQ_DCHECK_H_
