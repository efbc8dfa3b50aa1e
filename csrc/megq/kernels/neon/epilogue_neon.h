// The AArch64 GEMM epilogue shared by the neon and neondot kernels: bias add,
// then requantization exactly as csrc/megq/requantize.h:
//   float32(acc) (scvtf, round to nearest even) * multiplier (one fmul),
//   clamp in float to [lo - z, hi - z], round half away from zero (fcvtas,
//   vcvtaq_s32_f32: already the contract's rounding, no fix-up needed),
//   + z, then narrow to bytes (the values are in range, so the saturating
//   narrows keep them).
// Tails: a partial group of columns goes through a stack buffer, so nothing
// past the end of a C row is written.
//
// Functions are `static inline` in every including translation unit (each
// compiled with its own -march): no body can be shared across ISA flags.
#ifndef MEGQ_KERNELS_NEON_EPILOGUE_NEON_H_
#define MEGQ_KERNELS_NEON_EPILOGUE_NEON_H_

#include <arm_neon.h>

#include <cstring>

#include "megq/kernels/gemm_kernels.h"

namespace megq {
namespace neon_epilogue {

// Columns [col, col + min(valid, 8)) of C row `row` from two accumulators of
// four columns each. bias and multiplier are padded, so 8 lanes can be loaded.
static inline void store8(const GemmArgs& g, int32x4_t lo, int32x4_t hi, int row, int col, int valid) {
  if (valid <= 0) return;
  lo = vaddq_s32(lo, vld1q_s32(g.bias + col));
  hi = vaddq_s32(hi, vld1q_s32(g.bias + col + 4));
  uint8_t* c = g.c + row * g.c_stride;
  if (g.out_type == OutputType::kInt32) {
    uint8_t* dst = c + 4 * static_cast<ptrdiff_t>(col);  // byte stores: any alignment
    if (valid >= 8) {
      vst1q_u8(dst, vreinterpretq_u8_s32(lo));
      vst1q_u8(dst + 16, vreinterpretq_u8_s32(hi));
    } else {
      int32_t tmp[8];
      vst1q_s32(tmp, lo);
      vst1q_s32(tmp + 4, hi);
      std::memcpy(dst, tmp, 4 * static_cast<size_t>(valid));
    }
    return;
  }
  const float32x4_t vlo = vdupq_n_f32(static_cast<float>(g.out_min - g.out_zero_point));
  const float32x4_t vhi = vdupq_n_f32(static_cast<float>(g.out_max - g.out_zero_point));
  const int32x4_t zp = vdupq_n_s32(g.out_zero_point);
  float32x4_t f0 = vmulq_f32(vcvtq_f32_s32(lo), vld1q_f32(g.multiplier + col));
  float32x4_t f1 = vmulq_f32(vcvtq_f32_s32(hi), vld1q_f32(g.multiplier + col + 4));
  f0 = vminq_f32(vmaxq_f32(f0, vlo), vhi);
  f1 = vminq_f32(vmaxq_f32(f1, vlo), vhi);
  const int32x4_t q0 = vaddq_s32(vcvtaq_s32_f32(f0), zp);
  const int32x4_t q1 = vaddq_s32(vcvtaq_s32_f32(f1), zp);
  const int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
  const uint8x8_t bytes =
      g.out_type == OutputType::kInt8 ? vreinterpret_u8_s8(vqmovn_s16(q16)) : vqmovun_s16(q16);
  if (valid >= 8) {
    vst1_u8(c + col, bytes);
  } else {
    uint8_t tmp[8];
    vst1_u8(tmp, bytes);
    std::memcpy(c + col, tmp, static_cast<size_t>(valid));
  }
}

}  // namespace neon_epilogue
}  // namespace megq

#endif  // MEGQ_KERNELS_NEON_EPILOGUE_NEON_H_
