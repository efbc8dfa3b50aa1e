// Helpers shared by megq's AVX2 operator kernels (quantize, elementwise,
// pooling, depthwise). Included only by translation units compiled with
// -mavx2; every function is `static inline` so no AVX2 body can leak into
// baseline code through the linker (the ODR hazard of per-ISA flags).
#ifndef MEGQ_KERNELS_AVX2_OPS_AVX2_UTIL_H_
#define MEGQ_KERNELS_AVX2_OPS_AVX2_UTIL_H_

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace megq {
namespace avx2 {
namespace util {

// Round half away from zero: truncate, then step away from zero where the
// dropped fraction (exact in float32) is at least one half. Not "add 0.5 and
// truncate", which rounds 0.49999997f up.
static inline __m256 round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
  const __m256 down = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one);
  return _mm256_sub_ps(_mm256_add_ps(t, up), down);
}

// round_half_away(v) as int32, for |v| < 2^31: t = trunc(v), f = v - t (exact),
// and trunc(2 f) is -1, 0 or +1 exactly when |f| >= 0.5 (2 f is exact too).
static inline __m256i round_half_away_epi32(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(v, t);
  return _mm256_add_epi32(_mm256_cvttps_epi32(t), _mm256_cvttps_epi32(_mm256_add_ps(f, f)));
}

// round_half_away(v) as int32 for |v| <= 1024 (4 instructions):
// trunc(v + copysign(0.49999997f, v)). Adding the largest float below 0.5
// instead of 0.5 avoids the one failure of "add 0.5 and truncate"
// (0.49999997f + 0.5f rounds up to 1.0f); checked against exact rounding for
// every float32 in [0, 1024] (the operation is symmetric in sign). Above 2^22
// the sum itself can round, hence the domain limit: callers clamp first.
static inline __m256i round_half_away_small_epi32(__m256 v) {
  const __m256 sign = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))));
  const __m256 half = _mm256_or_ps(sign, _mm256_set1_ps(0.49999997f));
  return _mm256_cvttps_epi32(_mm256_add_ps(v, half));
}

// clamp(v, lo, hi) in float (NaN becomes lo: maxps returns its second operand
// on NaN), round half away, convert, add z. |lo|, |hi| <= 1024.
static inline __m256i clamp_round_add(__m256 v, __m256 lo, __m256 hi, __m256i z) {
  v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  return _mm256_add_epi32(round_half_away_small_epi32(v), z);
}

// Scalar twin of clamp_round_add (identical results for non-NaN v).
static inline int32_t clamp_round_add_1(float v, float lo, float hi, int32_t z) {
  v = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<int32_t>(std::round(v)) + z;
}

// Eight int32 within the byte dtype's range -> eight bytes (low 64 bits).
static inline __m128i pack8(__m256i q, bool is_signed) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  return is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
}

// Four groups of eight int32 (in range) -> 32 bytes in order.
static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d, bool is_signed) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i bytes = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Eight bytes -> eight int32 (sign- or zero-extended).
static inline __m256i widen8(__m128i bytes, bool is_signed) {
  return is_signed ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes);
}

static inline __m128i load8(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
static inline void store8(uint8_t* p, __m128i v) { _mm_storel_epi64(reinterpret_cast<__m128i*>(p), v); }
// The high 8 bytes of v to p (any alignment: _mm_storeh_pd dereferences a
// double*, undefined behaviour for a misaligned p in C++ even though movhpd
// itself accepts it).
static inline void store8_high(uint8_t* p, __m128i v) { store8(p, _mm_unpackhi_epi64(v, v)); }

// dst[j * ds + i] = src[i * ss + j] for an 8 x 8 block of bytes.
static inline void transpose8x8(const uint8_t* src, ptrdiff_t ss, uint8_t* dst, ptrdiff_t ds) {
  const __m128i a0 = _mm_unpacklo_epi8(load8(src), load8(src + ss));
  const __m128i a1 = _mm_unpacklo_epi8(load8(src + 2 * ss), load8(src + 3 * ss));
  const __m128i a2 = _mm_unpacklo_epi8(load8(src + 4 * ss), load8(src + 5 * ss));
  const __m128i a3 = _mm_unpacklo_epi8(load8(src + 6 * ss), load8(src + 7 * ss));
  const __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
  const __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
  const __m128i c0 = _mm_unpacklo_epi32(b0, b2), c1 = _mm_unpackhi_epi32(b0, b2);
  const __m128i c2 = _mm_unpacklo_epi32(b1, b3), c3 = _mm_unpackhi_epi32(b1, b3);
  store8(dst, c0);
  store8_high(dst + ds, c0);
  store8(dst + 2 * ds, c1);
  store8_high(dst + 3 * ds, c1);
  store8(dst + 4 * ds, c2);
  store8_high(dst + 5 * ds, c2);
  store8(dst + 6 * ds, c3);
  store8_high(dst + 7 * ds, c3);
}

// dst[j * ds + i] = src[i * ss + j] for i < rows, j < cols; touches exactly
// those bytes.
static inline void transpose_bytes(const uint8_t* src, ptrdiff_t ss, int rows, int cols, uint8_t* dst,
                                   ptrdiff_t ds) {
  const int r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int i = 0; i < r8; i += 8) {
    for (int j = 0; j < c8; j += 8) transpose8x8(src + i * ss + j, ss, dst + j * ds + i, ds);
    for (int j = c8; j < cols; ++j) {
      for (int k = i; k < i + 8; ++k) dst[j * ds + k] = src[k * ss + j];
    }
  }
  for (int i = r8; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
  }
}

}  // namespace util
}  // namespace avx2
}  // namespace megq

#endif  // MEGQ_KERNELS_AVX2_OPS_AVX2_UTIL_H_
