// AVX-512 quantized add / mul kernel (contract: elementwise.h). Built with
// the avx512vnni flag set (AVX-512 F/BW/DQ/VL; no VNNI instruction is used,
// so any CPU that megq runs on its avx512vnni path runs this).
//
// 64 values per iteration in four groups of 16 float32 lanes, with exactly
// the float32 operations of the scalar kernel in the same order (vmulps,
// vaddps; no FMA: the build passes -ffp-contract=off), so every output byte
// equals the scalar reference's. The tail (< 64 values) runs the same code on
// masked loads and a masked store: no byte outside [0, n) of a, b or y is
// read or written (masked-off lanes of an AVX-512 load are not accessed, and
// do not fault).
#include <immintrin.h>

#include <cstdint>

// GCC 12 reports the _mm512_undefined_* operands inside its own zero-extend
// and down-convert intrinsics as "maybe uninitialized" (GCC bug 105593, fixed
// in GCC 13); the warning says nothing about this file.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "megq/kernels/elementwise_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

struct Consts {
  __m512i za, zb, zo;
  __m512 ma, mb, lo, hi;
};

template <bool kSigned>
inline __m512i widen16(__m128i bytes) {
  return kSigned ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes);
}

// clamp(v, lo, hi) (NaN becomes lo: vmaxps returns its second operand on
// NaN, as the AVX2 kernel), round half away from zero, + zo. After the clamp
// |v| <= 255, where trunc(v + copysign(0.49999997f, v)) is round-half-away
// exactly: the identity is proved beside round_half_away_small_epi32 in
// kernels/avx2/ops_avx2_util.h. The result lies in the output dtype's range.
inline __m512i clamp_round_add(__m512 v, const Consts& k) {
  v = _mm512_min_ps(_mm512_max_ps(v, k.lo), k.hi);
  // (sign of v) | 0.49999997f  (ternary-logic truth table 0xEA: (A & B) | C)
  const __m512i half = _mm512_ternarylogic_epi32(_mm512_castps_si512(v),
                                                 _mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                                 _mm512_set1_epi32(0x3EFFFFFF), 0xEA);
  return _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_castsi512_ps(half))), k.zo);
}

// 16 values: the scalar kernel's formula lane by lane.
template <bool kAdd, bool kSa, bool kSb>
inline __m512i sixteen(__m128i a16, __m128i b16, const Consts& k) {
  const __m512 fa = _mm512_cvtepi32_ps(_mm512_sub_epi32(widen16<kSa>(a16), k.za));
  const __m512 fb = _mm512_cvtepi32_ps(_mm512_sub_epi32(widen16<kSb>(b16), k.zb));
  const __m512 v = kAdd ? _mm512_add_ps(_mm512_mul_ps(fa, k.ma), _mm512_mul_ps(fb, k.mb))
                        : _mm512_mul_ps(_mm512_mul_ps(fa, fb), k.ma);
  return clamp_round_add(v, k);
}

// Four groups of 16 int32 (each within the output dtype's range) -> 64 bytes
// in order. vpackssdw / vpacks[su]wb work within 128-bit lanes: after them,
// lane l holds r0[4l..4l+3], r1[4l..4l+3], r2[4l..4l+3], r3[4l..4l+3], one
// dword each, so dword d of the result comes from dword 4 (d % 4) + d / 4.
template <bool kSo>
inline __m512i pack64(__m512i r0, __m512i r1, __m512i r2, __m512i r3) {
  const __m512i w01 = _mm512_packs_epi32(r0, r1), w23 = _mm512_packs_epi32(r2, r3);
  const __m512i bytes = kSo ? _mm512_packs_epi16(w01, w23) : _mm512_packus_epi16(w01, w23);
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(idx, bytes);
}

inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

template <bool kAdd, bool kSa, bool kSb, bool kSo>
void run(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  Consts k;
  k.za = _mm512_set1_epi32(p.za);
  k.zb = _mm512_set1_epi32(p.zb);
  k.zo = _mm512_set1_epi32(p.zo);
  k.ma = _mm512_set1_ps(p.ma);
  k.mb = _mm512_set1_ps(p.mb);
  k.lo = _mm512_set1_ps(static_cast<float>(p.lo - p.zo));
  k.hi = _mm512_set1_ps(static_cast<float>(p.hi - p.zo));
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i r0 = sixteen<kAdd, kSa, kSb>(load16(a + i), load16(b + i), k);
    const __m512i r1 = sixteen<kAdd, kSa, kSb>(load16(a + i + 16), load16(b + i + 16), k);
    const __m512i r2 = sixteen<kAdd, kSa, kSb>(load16(a + i + 32), load16(b + i + 32), k);
    const __m512i r3 = sixteen<kAdd, kSa, kSb>(load16(a + i + 48), load16(b + i + 48), k);
    _mm512_storeu_si512(reinterpret_cast<void*>(y + i), pack64<kSo>(r0, r1, r2, r3));
  }
  if (i < n) {
    // 1..63 values: masked loads (zeros elsewhere; their results are
    // computed and discarded by the masked store).
    const int rest = static_cast<int>(n - i);
    const __mmask64 m = static_cast<__mmask64>(~0ull >> (64 - rest));
    const __m512i va = _mm512_maskz_loadu_epi8(m, a + i), vb = _mm512_maskz_loadu_epi8(m, b + i);
    __m512i r[4];
    r[0] = sixteen<kAdd, kSa, kSb>(_mm512_castsi512_si128(va), _mm512_castsi512_si128(vb), k);
    r[1] = rest > 16 ? sixteen<kAdd, kSa, kSb>(_mm512_extracti32x4_epi32(va, 1), _mm512_extracti32x4_epi32(vb, 1), k)
                     : r[0];
    r[2] = rest > 32 ? sixteen<kAdd, kSa, kSb>(_mm512_extracti32x4_epi32(va, 2), _mm512_extracti32x4_epi32(vb, 2), k)
                     : r[0];
    r[3] = rest > 48 ? sixteen<kAdd, kSa, kSb>(_mm512_extracti32x4_epi32(va, 3), _mm512_extracti32x4_epi32(vb, 3), k)
                     : r[0];
    _mm512_mask_storeu_epi8(y + i, m, pack64<kSo>(r[0], r[1], r[2], r[3]));
  }
}

// Signedness as template parameters: no per-vector branches in the loop.
template <bool kAdd>
void dispatch(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  const int key = (p.a_signed ? 4 : 0) | (p.b_signed ? 2 : 0) | (p.out_signed ? 1 : 0);
  switch (key) {
    case 0: run<kAdd, false, false, false>(a, b, y, n, p); break;
    case 1: run<kAdd, false, false, true>(a, b, y, n, p); break;
    case 2: run<kAdd, false, true, false>(a, b, y, n, p); break;
    case 3: run<kAdd, false, true, true>(a, b, y, n, p); break;
    case 4: run<kAdd, true, false, false>(a, b, y, n, p); break;
    case 5: run<kAdd, true, false, true>(a, b, y, n, p); break;
    case 6: run<kAdd, true, true, false>(a, b, y, n, p); break;
    default: run<kAdd, true, true, true>(a, b, y, n, p); break;
  }
}

}  // namespace

void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  if (p.op == EltOp::kAdd) {
    dispatch<true>(a, b, y, n, p);
  } else {
    dispatch<false>(a, b, y, n, p);
  }
}

}  // namespace avx512vnni
}  // namespace megq
