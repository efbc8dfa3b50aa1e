// Quantize, dequantize and requantize (MegEngine TypeCvt semantics, its
// dnn/src/naive/type_cvt/opr_impl.cpp; requantization rule in requantize.h).
//
//   quantize:   q = clamp(round_half_away(x / s) + z, qmin, qmax)
//               float32 NCHW in, int8/uint8 NHWC out (layout change fused).
//               x / s is a true float32 division (not x * (1/s)); the clamp is
//               applied in float before rounding (same result, no overflow);
//               +-inf clamp to qmin/qmax; NaN input is an error (ArgumentError
//               "x: ... NaN"), checked by the kernels at no extra pass.
//   dequantize: x = float32(q - z) * s   (q - z exact in int32, one multiply)
//               int8/uint8 NHWC in, float32 NCHW out.
//   requantize: y = clamp(round_half_away(float32(q - z_in) * M) + z_out, qmin, qmax)
//               with M = float32(s_in) / float32(s_out) (one float32 division,
//               done once), any layout (elementwise on bytes).
#ifndef MEGQ_QUANTIZE_H_
#define MEGQ_QUANTIZE_H_

#include <cstddef>
#include <cstdint>

#include "megq/isa.h"
#include "megq/kernels/quantize_kernels.h"

namespace megq {

// x: N x C x H x W floats, element (n, c, h, w) at x[n*sn + c*sc + h*sh + w]
// (strides in floats; W contiguous). y: contiguous N x H x W x C bytes.
void quantize_nchw_to_nhwc(const float* x, int N, int C, int H, int W, ptrdiff_t sn, ptrdiff_t sc,
                           ptrdiff_t sh, float scale, int32_t zero_point, bool out_signed, uint8_t* y);

// q: N x H x W x C bytes, (n, h, w, c) at q[n*sn + h*sh + w*sw + c] (strides in
// bytes; C contiguous). y: contiguous N x C x H x W floats.
void dequantize_nhwc_to_nchw(const uint8_t* q, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh,
                             ptrdiff_t sw, bool is_signed, float scale, int32_t zero_point, float* y);

// count contiguous bytes src -> dst (may be the same buffer).
void requantize(const uint8_t* src, int64_t count, bool in_signed, float in_scale, int32_t in_zero_point,
                bool out_signed, float out_scale, int32_t out_zero_point, uint8_t* dst);

// Kernel selection shared by the drivers of this family (concat uses it).
struct QuantizeIsaEntry {
  bool (*quantize_block)(const float*, ptrdiff_t, int, int, const QuantizeParams&, uint8_t*, uint8_t*);
  void (*dequantize_block)(const uint8_t*, ptrdiff_t, int, int, bool, float, int32_t, float*, ptrdiff_t,
                           uint8_t*);
  void (*requantize_rows)(const uint8_t*, ptrdiff_t, uint8_t*, ptrdiff_t, int, int64_t,
                          const RequantizeParams&);
};
QuantizeIsaEntry quantize_entry(Isa isa);

}  // namespace megq

#endif  // MEGQ_QUANTIZE_H_
