// Quantized elementwise add, fuse_add_relu and mul (MegEngine ElemwiseMultiType
// QADD / QFUSE_ADD_RELU / QMUL, optimized-CPU form: MegEngine's
// dnn/src/fallback/elemwise_helper/kimpl/*.h). Every input and the output have their own (scale, zero point,
// dtype int8/uint8); a and b have the same shape (elementwise on n values).
//
//   add:  M_a = float32(s_a) / float32(s_o),  M_b = float32(s_b) / float32(s_o)
//         v = float32(a - z_a) * M_a + float32(b - z_b) * M_b
//             (two float32 multiplies, then one float32 add; no FMA)
//         y = clamp(round_half_away(v) + z_o, qmin, qmax)
//   fuse_add_relu: the same with the lower clamp raised to z_o (max(v, 0)).
//   mul:  M = (float32(s_a) * float32(s_b)) / float32(s_o)   (float32, in that order)
//         v = (float32(a - z_a) * float32(b - z_b)) * M       (the first product is exact)
//         y = clamp(round_half_away(v) + z_o, qmin, qmax)
//
// The multipliers are computed once per call; the numpy twin
// (megq.reference.elementwise) performs the same float32 operations.
#ifndef MEGQ_ELEMENTWISE_H_
#define MEGQ_ELEMENTWISE_H_

#include <cstdint>

#include "megq/kernels/elementwise_kernels.h"

namespace megq {

struct TensorQParams {
  float scale;
  int32_t zero_point;
  bool is_signed;  // int8 (true) or uint8
};

// n values of a -> y (contiguous; y may alias a). b holds b_period values
// repeated along a (broadcast): b_period == n for same-shape operands, the
// channel count for a per-channel (last-axis) operand, 1 for a scalar;
// n must be a multiple of b_period.
void quantized_add(const uint8_t* a, const TensorQParams& qa, const uint8_t* b, const TensorQParams& qb,
                   uint8_t* y, const TensorQParams& qy, int64_t n, bool relu, int64_t b_period);
void quantized_mul(const uint8_t* a, const TensorQParams& qa, const uint8_t* b, const TensorQParams& qb,
                   uint8_t* y, const TensorQParams& qy, int64_t n, int64_t b_period);

}  // namespace megq

#endif  // MEGQ_ELEMENTWISE_H_
