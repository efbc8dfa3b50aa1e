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
//
// Fewer instructions than a straight port of the AVX2 kernel (the operation
// is bound by its arithmetic, not by memory):
// - bytes -> float32(q - z) without vpmovsxbd / vpsubd / vcvtdq2ps: two
//   in-lane unpacks put each byte u under the high half 0x4B00, i.e. the
//   float 2^23 + u, and one vsubps of 2^23 + z' leaves u - z' exactly (both
//   are integers in [2^23, 2^24), where float32 is exact). int8 bytes are
//   first biased to u = q + 128 (xor 0x80), with z' = z + 128.
// - the unpacks' lane order is undone by the packs at the end (vpackssdw and
//   vpacks[su]wb are in-lane too), so no cross-lane permute is needed.
// - the clamp to [lo - zo, hi - zo] moves after the rounding: rounding is
//   monotone and the bounds are integers, so clamp-then-round equals
//   round-then-clamp. The saturating packs clamp to the dtype's range, with
//   zo added to the int16 values between the two packs (vpaddsw) and, for a
//   fused ReLU, vpmaxsw with lo. A value saturated to int16 stays beyond
//   +-(32767 - 255) after adding zo (|zo| <= 255), so beyond the dtype's
//   range, on the right side. Only the int32 conversion needs |v| bounded:
//   known from the multipliers in practice, else capped first (Mode below).
//   A NaN sum gives lo, as in the AVX2 kernel.
#include <immintrin.h>

#include <cstdint>

#include "megq/kernels/avx512vnni/gcc12_intrinsics_warning.h"

#include "megq/kernels/elementwise_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

struct Consts {
  __m512 oa, ob;   // float32(2^23 + za'), float32(2^23 + zb')
  __m512 ma, mb;
  __m512i zo, lo, hi;  // int16; lo, hi: used only when narrower than the dtype (a fused ReLU raises lo)
};

// 64 bytes -> four float32 vectors q - z (lane order of the in-lane unpacks:
// group g holds bytes 4g .. 4g + 3 of each 128-bit lane; see pack64).
template <bool kSigned>
inline void to_float(__m512i bytes, __m512 off, __m512 f[4]) {
  if (kSigned) bytes = _mm512_xor_si512(bytes, _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m512i zero = _mm512_setzero_si512(), magic = _mm512_set1_epi16(0x4B00);
  const __m512i w0 = _mm512_unpacklo_epi8(bytes, zero), w1 = _mm512_unpackhi_epi8(bytes, zero);
  f[0] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(w0, magic)), off);
  f[1] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(w0, magic)), off);
  f[2] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(w1, magic)), off);
  f[3] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(w1, magic)), off);
}

// How the clamp to [lo - zo, hi - zo] is done (see the header comment):
//   kBounded:   |v| < 2^29 is known from the multipliers (bounded_sum); the
//               saturating packs alone clamp to [qmin, qmax].
//   kBoundedLo: as kBounded, plus vpmaxsw with lo (a fused ReLU).
//   kGeneral:   any multipliers: |v| capped at 1024 by vrangeps (imm 0x02: the
//               operand of smaller magnitude, with the sign of the first; a
//               NaN v stays NaN and converts to INT32_MIN, which the max with
//               lo turns into lo), then vpmaxsw / vpminsw with lo / hi.
enum Mode { kBounded = 0, kBoundedLo = 1, kGeneral = 2 };

// Whether every |v| is below 2^29: |q - z| <= 255 for both inputs (zero
// points lie in their dtype's range), so |v| <= 255 (ma + mb) for add and
// 255^2 ma for mul, up to float32 rounding (a relative 2^-23, covered by the
// margin below 2^30).
inline bool bounded_sum(const EltParams& p) {
  const double bound = p.op == EltOp::kAdd ? 255.0 * (static_cast<double>(p.ma) + static_cast<double>(p.mb))
                                           : 65025.0 * static_cast<double>(p.ma);
  return bound <= 536870912.0;  // 2^29
}

// round_half_away(v) as int32 (the cap of kGeneral first).
// Rounding: trunc(v + copysign(0.49999997f, v)) equals round-half-away for
// every |v| < 2^31 (beside round_half_away_small_epi32 in
// kernels/avx2/ops_avx2_util.h it is checked exhaustively for |v| <= 1024).
// Above 1024 the spacing u of float32 is >= 2^-13: with frac(v) <= 0.5 - u
// the exact sum lies 2^-25 below an integer minus u, so it rounds to that
// float, not up; with frac(v) = 0.5 it lies 2^-25 below the next integer and
// rounds up to it (u > 2^-24); above 2^23 v is an integer and 0.49999997f is
// below half its spacing. So the cap at 1024 of kGeneral is only for the
// int32 conversion's range, not for the rounding.
template <int kMode>
inline __m512i round_q(__m512 v) {
  if (kMode == kGeneral) v = _mm512_range_ps(v, _mm512_set1_ps(1024.0f), 0x02);
  // (sign of v) | 0.49999997f  (ternary-logic truth table 0xEA: (A & B) | C)
  const __m512i half = _mm512_ternarylogic_epi32(_mm512_castps_si512(v),
                                                 _mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                                 _mm512_set1_epi32(0x3EFFFFFF), 0xEA);
  return _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_castsi512_ps(half)));
}

// The four int32 groups of rounded values back to 64 bytes in memory order:
// + zo and the clamp of kMode on int16, then saturation to the output dtype
// (the clamp to [qmin, qmax]). The in-lane packs invert the in-lane unpacks
// of to_float.
template <bool kSo, int kMode>
inline __m512i pack64(__m512i r0, __m512i r1, __m512i r2, __m512i r3, const Consts& k) {
  __m512i w01 = _mm512_adds_epi16(_mm512_packs_epi32(r0, r1), k.zo);
  __m512i w23 = _mm512_adds_epi16(_mm512_packs_epi32(r2, r3), k.zo);
  if (kMode != kBounded) {
    w01 = _mm512_max_epi16(w01, k.lo);
    w23 = _mm512_max_epi16(w23, k.lo);
  }
  if (kMode == kGeneral) {
    w01 = _mm512_min_epi16(w01, k.hi);
    w23 = _mm512_min_epi16(w23, k.hi);
  }
  return kSo ? _mm512_packs_epi16(w01, w23) : _mm512_packus_epi16(w01, w23);
}

template <bool kAdd, bool kSa, bool kSb, bool kSo, int kMode>
inline __m512i sixty_four(__m512i va, __m512i vb, const Consts& k) {
  __m512 fa[4], fb[4];
  to_float<kSa>(va, k.oa, fa);
  to_float<kSb>(vb, k.ob, fb);
  __m512i r[4];
  for (int g = 0; g < 4; ++g) {
    const __m512 v = kAdd ? _mm512_add_ps(_mm512_mul_ps(fa[g], k.ma), _mm512_mul_ps(fb[g], k.mb))
                          : _mm512_mul_ps(_mm512_mul_ps(fa[g], fb[g]), k.ma);
    r[g] = round_q<kMode>(v);
  }
  return pack64<kSo, kMode>(r[0], r[1], r[2], r[3], k);
}

template <bool kAdd, bool kSa, bool kSb, bool kSo, int kMode>
void run(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  Consts k;
  k.oa = _mm512_set1_ps(8388608.0f + static_cast<float>(p.za + (kSa ? 128 : 0)));
  k.ob = _mm512_set1_ps(8388608.0f + static_cast<float>(p.zb + (kSb ? 128 : 0)));
  k.ma = _mm512_set1_ps(p.ma);
  k.mb = _mm512_set1_ps(p.mb);
  k.zo = _mm512_set1_epi16(static_cast<int16_t>(p.zo));
  k.lo = _mm512_set1_epi16(static_cast<int16_t>(p.lo));
  k.hi = _mm512_set1_epi16(static_cast<int16_t>(p.hi));
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i r = sixty_four<kAdd, kSa, kSb, kSo, kMode>(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i), k);
    _mm512_storeu_si512(y + i, r);
  }
  if (i < n) {
    // 1..63 values: masked loads (zeros elsewhere; their results are
    // computed and discarded by the masked store).
    const __mmask64 m = static_cast<__mmask64>(~0ull >> (64 - (n - i)));
    const __m512i r = sixty_four<kAdd, kSa, kSb, kSo, kMode>(_mm512_maskz_loadu_epi8(m, a + i),
                                                             _mm512_maskz_loadu_epi8(m, b + i), k);
    _mm512_mask_storeu_epi8(y + i, m, r);
  }
}

template <bool kAdd, bool kSa, bool kSb, bool kSo>
void clamp_dispatch(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  const int32_t qmin = kSo ? -128 : 0, qmax = kSo ? 127 : 255;
  if (!bounded_sum(p) || p.hi < qmax) {
    run<kAdd, kSa, kSb, kSo, kGeneral>(a, b, y, n, p);
  } else if (p.lo > qmin) {
    run<kAdd, kSa, kSb, kSo, kBoundedLo>(a, b, y, n, p);
  } else {
    run<kAdd, kSa, kSb, kSo, kBounded>(a, b, y, n, p);
  }
}

}  // namespace

void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  with_elementwise_variant(p, [&](auto add, auto sa, auto sb, auto so) {
    clamp_dispatch<decltype(add)::value, decltype(sa)::value, decltype(sb)::value, decltype(so)::value>(a, b, y, n, p);
  });
}

}  // namespace avx512vnni
}  // namespace megq
