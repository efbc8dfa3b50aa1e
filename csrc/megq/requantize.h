// The requantization rule, written once (MegEngine's optimized CPU converters,
// dnn/src/{fallback,x86,arm_common}/quantized_converter.h, round half away from zero):
//
//   y = clamp(round_half_away(float32(acc) * M) + z_y, lo, hi)
//
// * float32(acc): the int32 accumulator (bias included) converted to float32
//   with round-to-nearest-even; exact up to 2^24, and done the same way by
//   numpy's astype(float32) and by vcvtdq2ps.
// * M: one float32 multiplier per output channel (or per tensor), computed
//   once as float32(s_x) * float32(s_w) / float32(s_y) in float32 arithmetic.
// * the product is one float32 multiply (no FMA: megq compiles with
//   -ffp-contract=off), rounded half away from zero, as C's roundf and
//   MegEngine's quantized kernels do.
// * clamping in float to [lo - z_y, hi - z_y] before rounding gives the same
//   result as clamping after (the bounds are integers and rounding is monotone)
//   and keeps out-of-range values away from float->int conversion.
// Fused ReLU raises lo to z_y; ReLU6 lowers hi to round(6 / s_y) + z_y.
//
// `static inline`: every translation unit, including ISA-flagged ones, gets
// its own private copy, so no AVX-512 body can be picked by the linker for
// baseline code (the ODR hazard of per-ISA flags).
#ifndef MEGQ_REQUANTIZE_H_
#define MEGQ_REQUANTIZE_H_

#include <cmath>
#include <cstdint>

namespace megq {

static inline int32_t requantize_rha(int32_t acc, float multiplier, int32_t zero_point,
                                     int32_t lo, int32_t hi) {
  float v = static_cast<float>(acc) * multiplier;
  const float vlo = static_cast<float>(lo - zero_point);
  const float vhi = static_cast<float>(hi - zero_point);
  v = v < vlo ? vlo : (v > vhi ? vhi : v);
  return static_cast<int32_t>(std::round(v)) + zero_point;
}

}  // namespace megq

#endif  // MEGQ_REQUANTIZE_H_
