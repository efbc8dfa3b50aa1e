// Interface between the quantize / dequantize / requantize drivers
// (csrc/megq/quantize.cc, concat.cc) and their per-ISA kernels
// (kernels/<isa>/quantize_*.cc). The numeric contract is in quantize.h.
//
// Kernels see one "block": C channels x P positions of one image row (or of a
// whole image when H and W are contiguous), and do the NCHW <-> NHWC layout
// change through megq-owned scratch of C * P bytes (+64 slack). They never
// read or write past the caller's ranges given here.
#ifndef MEGQ_KERNELS_QUANTIZE_KERNELS_H_
#define MEGQ_KERNELS_QUANTIZE_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace megq {

struct QuantizeParams {
  float scale;        // true float32 division x / scale
  int32_t zero_point;
  int32_t qmin, qmax; // output dtype range
};

struct RequantizeParams {
  bool in_signed;
  int32_t in_zero_point;
  float multiplier;   // float32(s_in) / float32(s_out)
  int32_t out_zero_point;
  int32_t lo, hi;     // output clamp (dtype range)
};

// Each ISA namespace provides:
//   quantize_block: channel c's P floats at src + c * src_c_stride (floats,
//     contiguous along P) -> dst[p * C + c] (bytes). Returns true if any input
//     was NaN (the bytes written for it are then unspecified).
//   dequantize_block: byte (p, c) at src[p * src_p_stride + c] -> float at
//     dst[c * dst_c_stride + p].
//   requantize_rows: rows x cols bytes, row r at src + r * src_stride, to dst +
//     r * dst_stride.
#define MEGQ_DECLARE_QUANTIZE_ISA(ns)                                                              \
  namespace ns {                                                                                   \
  bool quantize_block(const float* src, ptrdiff_t src_c_stride, int C, int P,                      \
                      const QuantizeParams& q, uint8_t* dst, uint8_t* scratch);                    \
  void dequantize_block(const uint8_t* src, ptrdiff_t src_p_stride, int C, int P, bool is_signed,  \
                        float scale, int32_t zero_point, float* dst, ptrdiff_t dst_c_stride,       \
                        uint8_t* scratch);                                                         \
  void requantize_rows(const uint8_t* src, ptrdiff_t src_stride, uint8_t* dst, ptrdiff_t dst_stride, \
                       int rows, int64_t cols, const RequantizeParams& r);                         \
  }

MEGQ_DECLARE_QUANTIZE_ISA(scalar)
MEGQ_DECLARE_QUANTIZE_ISA(avx2)
MEGQ_DECLARE_QUANTIZE_ISA(neon)

#undef MEGQ_DECLARE_QUANTIZE_ISA

}  // namespace megq

#endif  // MEGQ_KERNELS_QUANTIZE_KERNELS_H_
