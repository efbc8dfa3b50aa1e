// Requantization of int32 accumulators to int8/uint8 bytes shared by the AVX-512 VNNI GEMM and depthwise kernels
// (include only from translation units compiled with the avx512vnni flags).
//
// The rule is csrc/megq/requantize.h's. With lo' = lo - z and hi' = hi - z (integers in [-255, 255]: lo, hi and z
// are output values):
//   v = float32(acc) * M                      (requantize16)
//   q = round_half_away(v), as int32          (requantize16; see below)
//   y = clamp(q + z, lo, hi), as bytes        (int16, then bytes: pack4_in_lanes)
// This equals requantize.h's clamp-then-round: rounding is monotone and lo', hi' are integers. q is exact only
// where it matters: when |v| <= 256 (the rounding below), and in sign and in being >= 256 in magnitude otherwise,
// which is all the clamp needs (|lo'|, |hi'| <= 255): every saturation on the way (int32 -> int16 pack, + z in
// int16, int16 -> int8 pack) moves a value that is beyond the bounds further out or to the bound, never across
// it. |float32(acc)| <= 2^31, so when every multiplier is < 1 (the largest float below 1 is 1 - 2^-24)
// |v| <= 2^31 - 2^7 and the conversion cannot overflow; otherwise (clamp_float) v is first clamped to hi' in
// float. A negative overflow converts to INT32_MIN, which clamps to lo.
// Rounding: for |v| <= 256, truncating v + copysign(h, v) with h = 0.49999997f (the float just below 0.5) is
// round half away from zero: the float sum is rounded to nearest even, and an exact 0.5 fraction sums to
// 1 - 2^-25 above the floor, a tie of the two floats around it that goes to the even one, floor + 1; any smaller
// fraction stays below floor + 1 after rounding (tests/cpp/test_gemm_kernels.cc checks the identity for every
// float with |v| <= 256; adding 0.5 instead is wrong for 0.49999997f). When lo' >= 0 (ReLU-style bounds) every
// v < 0 ends at lo whatever it rounds to, and truncating v + h (< 1) keeps it <= 0, so the copysign is skipped.
#ifndef MEGQ_KERNELS_AVX512VNNI_BYTE_EPILOGUE_H_
#define MEGQ_KERNELS_AVX512VNNI_BYTE_EPILOGUE_H_

#include <immintrin.h>

#include <cstdint>

namespace megq {
namespace avx512vnni {

// The epilogue's constants, built once per call in registers.
struct ByteEpilogue {
  __m512 hi;      // hi' as a float
  __m512 half;    // the largest float below 0.5
  __m512i sign;   // float sign bit
  __m512i zp16;   // z in every int16 lane (minus 128 for uint8 output)
  __m512i lo8;    // lo, hi in every byte (minus 128 for uint8 output)
  __m512i hi8;
  __m512i flip;   // 0x80 in every byte
  bool rounds_negative;  // lo' < 0: negative v must round half away from zero
  bool add_zero_point;
  bool unsigned_out;
};

inline ByteEpilogue make_byte_epilogue(int32_t lo, int32_t hi, int32_t zero_point, bool unsigned_out) {
  ByteEpilogue e;
  const int bias8 = unsigned_out ? 128 : 0;
  e.hi = _mm512_set1_ps(static_cast<float>(hi - zero_point));
  e.half = _mm512_set1_ps(0.49999997f);
  e.sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  e.zp16 = _mm512_set1_epi16(static_cast<int16_t>(zero_point - bias8));
  e.lo8 = _mm512_set1_epi8(static_cast<char>(lo - bias8));
  e.hi8 = _mm512_set1_epi8(static_cast<char>(hi - bias8));
  e.flip = _mm512_set1_epi8(static_cast<char>(0x80));
  e.rounds_negative = lo < zero_point;
  e.add_zero_point = zero_point != bias8;
  e.unsigned_out = unsigned_out;
  return e;
}

// q = round_half_away(float32(acc) * mult) as int32 (see the header comment for the range in which it is exact).
inline __m512i requantize16(const ByteEpilogue& e, __m512i acc, __m512 mult, bool clamp_float) {
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult);
  if (clamp_float) v = _mm512_min_ps(v, e.hi);
  __m512 h = e.half;
  if (e.rounds_negative) {
    // copysign(half, v) = (v & sign) | half  (ternary-logic truth table 0xEA: (A & B) | C)
    h = _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(_mm512_castps_si512(v), e.sign, _mm512_castps_si512(e.half), 0xEA));
  }
  return _mm512_cvttps_epi32(_mm512_add_ps(v, h));
}

// Four vectors of rounded values -> 64 clamped output bytes. The packs work within 128-bit lanes: lane L of the
// result holds q0's, q1's, q2's and q3's dwords 4 L .. 4 L + 3 in that order (a caller either permutes dwords
// back or has arranged its channels so that this order is already the output's). Uint8 outputs are computed as
// y - 128 in signed bytes (zp16, lo8, hi8 carry the -128) and flipped back at the end.
inline __m512i pack4_in_lanes(const ByteEpilogue& e, __m512i q0, __m512i q1, __m512i q2, __m512i q3) {
  __m512i w01 = _mm512_packs_epi32(q0, q1), w23 = _mm512_packs_epi32(q2, q3);
  if (e.add_zero_point) {
    w01 = _mm512_adds_epi16(w01, e.zp16);
    w23 = _mm512_adds_epi16(w23, e.zp16);
  }
  __m512i b = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(w01, w23), e.lo8), e.hi8);
  if (e.unsigned_out) b = _mm512_xor_si512(b, e.flip);
  return b;
}

// The first `valid` (<= 64) bytes of b to dst; nothing beyond them is touched.
inline void store_bytes64(uint8_t* dst, __m512i b, int valid) {
  if (valid >= 64) {
    _mm512_storeu_si512(dst, b);
  } else if (valid > 0) {
    _mm512_mask_storeu_epi8(dst, (~0ull) >> (64 - valid), b);
  }
}

}  // namespace avx512vnni
}  // namespace megq

#endif  // MEGQ_KERNELS_AVX512VNNI_BYTE_EPILOGUE_H_
