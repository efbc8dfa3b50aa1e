// Shared argument checks and helpers for megq's non-GEMM operators
// (quantize, elementwise, pooling, concat, depthwise).
//
// Every quantized tensor is int8 or uint8 with a per-tensor (scale, zero point);
// depthwise weights may have per-output-channel scales. Checks throw
// ArgumentError (gemm.h) whose message starts with the argument's name.
#ifndef MEGQ_QPARAMS_H_
#define MEGQ_QPARAMS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "megq/gemm.h"  // ArgumentError

namespace megq {

inline int32_t qmin_of(bool is_signed) { return is_signed ? -128 : 0; }
inline int32_t qmax_of(bool is_signed) { return is_signed ? 127 : 255; }
inline int ceil_div_int(int a, int b) { return (a + b - 1) / b; }

// Throws unless z lies in the dtype's range.
void check_zero_point(const std::string& name, bool is_signed, int32_t z);
// Throws unless s is finite and > 0.
void check_scale(const std::string& name, float s);
// Throws unless dtype_lo <= lo <= hi <= dtype_hi.
void check_clamp(const std::string& name, bool is_signed, int32_t lo, int32_t hi);
// float32(s_in) / float32(s_out), in float32 (requantize / concat multiplier).
float ratio_multiplier(float s_in, float s_out);

// Splits [0, units) into contiguous chunks and runs fn(begin, end) on the
// thread pool: one chunk when the whole job is below ~64 KiB of traffic
// (bytes_per_unit * units), else about 4 chunks per thread. Each unit's result
// is computed by one call, so results never depend on the thread count.
void parallel_units(int64_t units, double bytes_per_unit, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace megq

#endif  // MEGQ_QPARAMS_H_
