// Test-only <immintrin.h> for the emulated AVX-512 VNNI build
// (tests/cpp/run_vnni_emulated_tests.sh, CMake option MEGQ_EMULATE_AVX512VNNI).
//
// csrc/megq/kernels/avx512vnni/*.cc is compiled WITHOUT -mavx512* and with
// this directory first on the include path. The real <immintrin.h> is still
// included (for the native SSE/AVX2 parts and the __m512 types), then SIMDe
// (Debian: libsimde-dev) maps every _mm512_* name it implements to portable
// code through its native aliases. The few intrinsics the kernel uses that
// SIMDe 0.7.4 lacks are written below, after the Intel definitions; each one
// reads and writes exactly the bytes the instruction would (masked loads and
// stores touch no masked-off byte), so the guard-page test keeps its meaning.
#ifndef MEGQ_TEST_SIMDE_SHIM_IMMINTRIN_H_
#define MEGQ_TEST_SIMDE_SHIM_IMMINTRIN_H_

#include_next <immintrin.h>

#ifndef SIMDE_ENABLE_NATIVE_ALIASES
#define SIMDE_ENABLE_NATIVE_ALIASES
#endif
#include <simde/x86/avx512.h>

#include <stdint.h>
#include <string.h>

#ifdef __AVX512F__
#error "the SIMDe shim is meant for builds without -mavx512f"
#endif

// Lane access through SIMDe's private representation.
static inline simde__m512i_private megq_shim_i(simde__m512i v) { return simde__m512i_to_private(v); }
static inline simde__m512_private megq_shim_f(simde__m512 v) { return simde__m512_to_private(v); }

// vcvtdq2ps: int32 -> float32, rounding to nearest even (the C conversion).
static inline simde__m512 megq_shim_mm512_cvtepi32_ps(simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  simde__m512_private r_;
  for (int i = 0; i < 16; ++i) r_.f32[i] = (float)a_.i32[i];
  return simde__m512_from_private(r_);
}

// vcvtps2dq with MXCSR at its default (round to nearest even); NaN and
// out-of-range lanes give the "integer indefinite" value INT32_MIN.
static inline simde__m512i megq_shim_mm512_cvtps_epi32(simde__m512 a) {
  simde__m512_private a_ = megq_shim_f(a);
  simde__m512i_private r_;
  for (int i = 0; i < 16; ++i) {
    const float x = a_.f32[i];
    r_.i32[i] = (x >= -2147483648.0f && x < 2147483648.0f) ? (int32_t)__builtin_nearbyintf(x) : INT32_MIN;
  }
  return simde__m512i_from_private(r_);
}

// vcvttps2dq: float32 -> int32 rounding toward zero; NaN and out-of-range
// lanes give the "integer indefinite" value INT32_MIN.
static inline simde__m512i megq_shim_mm512_cvttps_epi32(simde__m512 a) {
  simde__m512_private a_ = megq_shim_f(a);
  simde__m512i_private r_;
  for (int i = 0; i < 16; ++i) {
    const float x = a_.f32[i];
    r_.i32[i] = (x > -2147483904.0f && x < 2147483648.0f) ? (int32_t)x : INT32_MIN;
  }
  return simde__m512i_from_private(r_);
}

// vpmovdb xmm, zmm: each dword truncated to its low byte (no saturation).
static inline simde__m128i megq_shim_mm512_cvtepi32_epi8(simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  uint8_t b[16];
  for (int i = 0; i < 16; ++i) b[i] = (uint8_t)(uint32_t)a_.i32[i];
  simde__m128i r;
  memcpy(&r, b, 16);
  return r;
}

// Widening moves: the n lanes of `a` (C++ type src_t) zero- or sign-extended,
// by that type, into the dst lanes of a zmm.
#define MEGQ_SHIM_WIDEN(name, in_t, src_t, n, dst)      \
  static inline simde__m512i name(in_t a) {             \
    src_t b[n];                                         \
    memcpy(b, &a, sizeof(b));                           \
    simde__m512i_private r_;                            \
    for (int i = 0; i < n; ++i) r_.dst[i] = b[i];       \
    return simde__m512i_from_private(r_);               \
  }
MEGQ_SHIM_WIDEN(megq_shim_mm512_cvtepu8_epi32, simde__m128i, uint8_t, 16, i32)  // vpmovzxbd zmm, xmm
MEGQ_SHIM_WIDEN(megq_shim_mm512_cvtepi8_epi32, simde__m128i, int8_t, 16, i32)   // vpmovsxbd zmm, xmm
MEGQ_SHIM_WIDEN(megq_shim_mm512_cvtepu8_epi16, __m256i, uint8_t, 32, i16)       // vpmovzxbw zmm, ymm
MEGQ_SHIM_WIDEN(megq_shim_mm512_cvtepi16_epi32, __m256i, int16_t, 16, i32)      // vpmovsxwd zmm, ymm
#undef MEGQ_SHIM_WIDEN

// vmovdqu8 zmm{k}{z}, m512: masked-off bytes are zero and are not read.
static inline simde__m512i megq_shim_mm512_maskz_loadu_epi8(simde__mmask64 k, const void* p) {
  const uint8_t* src = (const uint8_t*)p;
  simde__m512i_private r_;
  for (int i = 0; i < 64; ++i) r_.u8[i] = ((k >> i) & 1) ? src[i] : 0;
  return simde__m512i_from_private(r_);
}

// vmovdqu8 m512{k}, zmm: only selected bytes are written.
static inline void megq_shim_mm512_mask_storeu_epi8(void* p, simde__mmask64 k, simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  uint8_t* dst = (uint8_t*)p;
  for (int i = 0; i < 64; ++i)
    if ((k >> i) & 1) dst[i] = a_.u8[i];
}

// vmovdqu8 ymm{k}{z}, m256: masked-off bytes are zero and are not read.
static inline __m256i megq_shim_mm256_maskz_loadu_epi8(uint32_t k, const void* p) {
  const uint8_t* src = (const uint8_t*)p;
  uint8_t bytes[32];
  for (int i = 0; i < 32; ++i) bytes[i] = ((k >> i) & 1) ? src[i] : 0;
  __m256i r;
  memcpy(&r, bytes, 32);
  return r;
}

// vmovdqu8 m256{k}, ymm: only selected bytes are written.
static inline void megq_shim_mm256_mask_storeu_epi8(void* p, uint32_t k, __m256i a) {
  uint8_t bytes[32];
  memcpy(bytes, &a, 32);
  uint8_t* dst = (uint8_t*)p;
  for (int i = 0; i < 32; ++i)
    if ((k >> i) & 1) dst[i] = bytes[i];
}

// vmovdqu32 m512{k}, zmm: only selected dwords are written.
static inline void megq_shim_mm512_mask_storeu_epi32(void* p, simde__mmask16 k, simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  uint8_t* dst = (uint8_t*)p;
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) memcpy(dst + 4 * i, &a_.i32[i], 4);
}

// vpmovdb m128{k}, zmm: truncates each dword to its low byte (no saturation)
// and writes only the selected bytes.
static inline void megq_shim_mm512_mask_cvtepi32_storeu_epi8(void* p, simde__mmask16 k, simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  uint8_t* dst = (uint8_t*)p;
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) dst[i] = (uint8_t)(uint32_t)a_.i32[i];
}

// Sum of the 16 dwords, wrapping modulo 2^32.
static inline int32_t megq_shim_mm512_reduce_add_epi32(simde__m512i a) {
  simde__m512i_private a_ = megq_shim_i(a);
  uint32_t s = 0;
  for (int i = 0; i < 16; ++i) s += (uint32_t)a_.i32[i];
  return (int32_t)s;
}

// SIMDe 0.7.4 bug: its _mm512_roundscale_ps macro hands imm8 on to an inner
// macro that evaluates ((imm8 >> 4) & 15) without parentheses around imm8, so
// _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC (0x0B) is read as scale 3, i.e.
// truncation to multiples of 1/8. Parenthesize the argument once here.
#undef _mm512_roundscale_ps
#define _mm512_roundscale_ps(a, imm8) simde_mm512_roundscale_ps((a), (imm8))

// Route the Intel names to the shim only where SIMDe has not claimed them.
#ifndef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps(a) megq_shim_mm512_cvtepi32_ps(a)
#endif
#ifndef _mm512_cvtps_epi32
#define _mm512_cvtps_epi32(a) megq_shim_mm512_cvtps_epi32(a)
#endif
#ifndef _mm512_cvttps_epi32
#define _mm512_cvttps_epi32(a) megq_shim_mm512_cvttps_epi32(a)
#endif
#ifndef _mm512_cvtepi32_epi8
#define _mm512_cvtepi32_epi8(a) megq_shim_mm512_cvtepi32_epi8(a)
#endif
#ifndef _mm512_cvtepu8_epi32
#define _mm512_cvtepu8_epi32(a) megq_shim_mm512_cvtepu8_epi32(a)
#endif
#ifndef _mm512_cvtepi8_epi32
#define _mm512_cvtepi8_epi32(a) megq_shim_mm512_cvtepi8_epi32(a)
#endif
#ifndef _mm512_cvtepu8_epi16
#define _mm512_cvtepu8_epi16(a) megq_shim_mm512_cvtepu8_epi16(a)
#endif
#ifndef _mm512_cvtepi16_epi32
#define _mm512_cvtepi16_epi32(a) megq_shim_mm512_cvtepi16_epi32(a)
#endif
#ifndef _mm512_maskz_loadu_epi8
#define _mm512_maskz_loadu_epi8(k, p) megq_shim_mm512_maskz_loadu_epi8(k, p)
#endif
#ifndef _mm512_mask_storeu_epi8
#define _mm512_mask_storeu_epi8(p, k, a) megq_shim_mm512_mask_storeu_epi8(p, k, a)
#endif
#ifndef _mm256_maskz_loadu_epi8
#define _mm256_maskz_loadu_epi8(k, p) megq_shim_mm256_maskz_loadu_epi8(k, p)
#endif
#ifndef _mm256_mask_storeu_epi8
#define _mm256_mask_storeu_epi8(p, k, a) megq_shim_mm256_mask_storeu_epi8(p, k, a)
#endif
#ifndef _mm512_mask_storeu_epi32
#define _mm512_mask_storeu_epi32(p, k, a) megq_shim_mm512_mask_storeu_epi32(p, k, a)
#endif
#ifndef _mm512_mask_cvtepi32_storeu_epi8
#define _mm512_mask_cvtepi32_storeu_epi8(p, k, a) megq_shim_mm512_mask_cvtepi32_storeu_epi8(p, k, a)
#endif
#ifndef _mm512_reduce_add_epi32
#define _mm512_reduce_add_epi32(a) megq_shim_mm512_reduce_add_epi32(a)
#endif

#endif  // MEGQ_TEST_SIMDE_SHIM_IMMINTRIN_H_
