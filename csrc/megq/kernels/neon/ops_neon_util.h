// Byte <-> int32 lane helpers shared by the AArch64 NEON op kernels (elementwise, quantize, pooling, depthwise
// epilogues; included by the neon and neondot translation units).
//
// Functions are `static inline` in every including translation unit (each compiled with its own -march): no body
// can be shared across ISA flags.
#ifndef MEGQ_KERNELS_NEON_OPS_NEON_UTIL_H_
#define MEGQ_KERNELS_NEON_OPS_NEON_UTIL_H_

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace megq {
namespace neon_util {

// 16 bytes -> two int16x8 (sign- or zero-extended).
template <bool kSigned>
static inline void widen16_s16(uint8x16_t v, int16x8_t* lo, int16x8_t* hi) {
  if (kSigned) {
    *lo = vmovl_s8(vget_low_s8(vreinterpretq_s8_u8(v)));
    *hi = vmovl_high_s8(vreinterpretq_s8_u8(v));
  } else {
    *lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
    *hi = vreinterpretq_s16_u16(vmovl_high_u8(v));
  }
}

// 16 bytes -> four int32x4 minus z.
template <bool kSigned>
static inline void widen16(uint8x16_t v, int32x4_t z, int32x4_t (&out)[4]) {
  int16x8_t lo, hi;
  widen16_s16<kSigned>(v, &lo, &hi);
  out[0] = vsubq_s32(vmovl_s16(vget_low_s16(lo)), z);
  out[1] = vsubq_s32(vmovl_high_s16(lo), z);
  out[2] = vsubq_s32(vmovl_s16(vget_low_s16(hi)), z);
  out[3] = vsubq_s32(vmovl_high_s16(hi), z);
}

// Four int32x4 -> 16 bytes with saturating narrows (exact for values already in the byte dtype's range).
template <bool kSigned>
static inline uint8x16_t narrow16(const int32x4_t (&q)[4]) {
  const int16x8_t a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
  const int16x8_t b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
  return kSigned ? vreinterpretq_u8_s8(vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)))
                 : vcombine_u8(vqmovun_s16(a), vqmovun_s16(b));
}

// clamp(v, lo, hi) in float, round half away from zero (fcvtas), + z.
static inline int32x4_t clamp_round_add(float32x4_t v, float32x4_t lo, float32x4_t hi, int32x4_t z) {
  return vaddq_s32(vcvtaq_s32_f32(vminq_f32(vmaxq_f32(v, lo), hi)), z);
}

// The depthwise kernels' per-tile epilogue: 16 channels' bias, multipliers and clamp bounds (lo - z, hi - z).
struct DwEpilogue {
  int32x4_t bias[4];
  float32x4_t mult[4];
  float32x4_t lo, hi;
  int32x4_t zo;
};

// Requantizes 16 accumulators (channels 4k .. 4k + 3 in acc[k], bias included: the callers start them at e.bias)
// and writes the first min(valid, 16) bytes.
template <bool kSigned>
static inline void finish_dw_tile(const DwEpilogue& e, const int32x4_t (&acc)[4], uint8_t* dst, int valid) {
  int32x4_t q[4];
  for (int k = 0; k < 4; ++k) q[k] = clamp_round_add(vmulq_f32(vcvtq_f32_s32(acc[k]), e.mult[k]), e.lo, e.hi, e.zo);
  const uint8x16_t bytes = narrow16<kSigned>(q);
  if (valid >= 16) {
    vst1q_u8(dst, bytes);
  } else {
    uint8_t tmp[16];
    vst1q_u8(tmp, bytes);
    std::memcpy(dst, tmp, static_cast<size_t>(valid));
  }
}

}  // namespace neon_util
}  // namespace megq

#endif  // MEGQ_KERNELS_NEON_OPS_NEON_UTIL_H_
