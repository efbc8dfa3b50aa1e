// Size limits every megq operator enforces before it allocates or computes.
//
// kMaxOutputBytes: no operator produces an output larger than this. A 1x1 image
//   with padding 50000 would otherwise ask a conv for 10 GB, and a stride-0
//   numpy view can describe a huge input with no memory behind it. 1 GiB is
//   far above any int8 CNN activation (a batch of 256 112x112x64 maps is
//   205 MB) and keeps every output element count at or below 2^30, so the
//   kernels' int-typed counts, indices and round-ups to whole tiles cannot
//   overflow.
// kMaxThreads: the largest thread count set_num_threads / MEGQ_NUM_THREADS
//   accept (the pool creates its workers on demand and keeps them for the
//   life of the process).
#ifndef MEGQ_LIMITS_H_
#define MEGQ_LIMITS_H_

#include <cstdint>
#include <vector>

namespace megq {

constexpr int64_t kMaxOutputBytes = int64_t{1} << 30;
constexpr int kMaxThreads = 256;

// Throws ArgumentError naming `argument` unless an output of `shape`, with
// `elem_bytes` bytes per element, holds at most kMaxOutputBytes bytes. `op`
// names the operator in the message. Every dimension must be >= 0.
void check_output_size(const char* argument, const char* op, const std::vector<int64_t>& shape,
                       int elem_bytes);

}  // namespace megq

#endif  // MEGQ_LIMITS_H_
