// AVX-512 NHWC pooling kernels (contract: pooling.h). Built with the
// avx512vnni flag set (AVX-512 F/BW/DQ/VL; no VNNI instruction is used).
//
// Vectorized across channels as the AVX2 kernels (kernels/avx2/
// pooling_avx2.cc), twice as wide: max over 64 channels per instruction;
// averages sum 32 channels per vector in int16 when the window cannot
// overflow it (kh * kw <= 128: 128 * 255 < 2^15), else 16 channels in int32,
// then round_half_away(float32(sum) / float32(count)) through the same
// division-free reciprocal form for counts <= 1024 (proved beside mean8 in
// the AVX2 file) and vdivps above. Channel tails use masked loads and stores,
// so no byte outside the window's taps or the output pixel is touched
// (masked-off lanes of an AVX-512 load are not accessed and do not fault).
#include <immintrin.h>

#include <cstdint>

#include "megq/kernels/avx512vnni/gcc12_intrinsics_warning.h"

#include "megq/kernels/pooling_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

inline __mmask64 mask64(int n) { return static_cast<__mmask64>(~0ull >> (64 - n)); }  // 1 <= n <= 64
inline __mmask32 mask32(int n) { return static_cast<__mmask32>(~0u >> (32 - n)); }    // 1 <= n <= 32
inline __mmask16 mask16(int n) { return static_cast<__mmask16>(0xFFFFu >> (16 - n)); }  // 1 <= n <= 16

template <bool kSigned>
inline __m512i max64(__m512i a, __m512i b) {
  return kSigned ? _mm512_max_epi8(a, b) : _mm512_max_epu8(a, b);
}

// The taps of one window: a pointer list (windows cut by the image border)
// or one pointer plus the row's fixed offsets (windows inside the image).
struct PtrTaps {
  const uint8_t* const* p;
  const uint8_t* operator[](int k) const { return p[k]; }
};
struct OffsetTaps {
  const uint8_t* base;
  const ptrdiff_t* off;
  const uint8_t* operator[](int k) const { return base + off[k]; }
};

template <bool kSigned, class Taps>
void max_pixel(const Taps& taps, int t, int C, uint8_t* out) {
  int c = 0;
  for (; c + 64 <= C; c += 64) {
    __m512i m = _mm512_loadu_si512(taps[0] + c);
    for (int k = 1; k < t; ++k) m = max64<kSigned>(m, _mm512_loadu_si512(taps[k] + c));
    _mm512_storeu_si512(out + c, m);
  }
  if (c < C) {
    const __mmask64 mk = mask64(C - c);
    __m512i m = _mm512_maskz_loadu_epi8(mk, taps[0] + c);
    for (int k = 1; k < t; ++k) m = max64<kSigned>(m, _mm512_maskz_loadu_epi8(mk, taps[k] + c));
    _mm512_mask_storeu_epi8(out + c, mk, m);
  }
}

// round_half_away(float32(sum) / float32(count)); see the header comment.
struct Mean {
  bool fast;
  __m512 scale;  // float32(1 / count) if fast, else float32(count)
};

inline Mean make_mean(int32_t count) {
  Mean m;
  m.fast = count <= 1024;
  const float fc = static_cast<float>(count);
  m.scale = _mm512_set1_ps(m.fast ? 1.0f / fc : fc);
  return m;
}

// (sign of v) | c, for a positive float constant c given by its bits
// (ternary-logic truth table 0xEA: (A & B) | C).
inline __m512 signed_const(__m512 v, int bits) {
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(v),
                                                       _mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                                       _mm512_set1_epi32(bits), 0xEA));
}

// 16 int32 sums (|sum| <= 255 count) -> 16 int32 means, in the dtype's range.
inline __m512i mean16(__m512i sum, const Mean& m) {
  const __m512 v = _mm512_cvtepi32_ps(sum);
  if (m.fast) {
    // trunc(sum * float32(1 / count) + copysign(0.5 + 2^-12, .)); 0x3F001000 = 0.5 + 2^-12
    const __m512 p = _mm512_mul_ps(v, m.scale);
    return _mm512_cvttps_epi32(_mm512_add_ps(p, signed_const(p, 0x3F001000)));
  }
  // The quotient lies within [-128, 255], where trunc(q + copysign(0.49999997f, q))
  // rounds half away exactly (kernels/avx2/ops_avx2_util.h); 0x3EFFFFFF = 0.49999997f.
  const __m512 q = _mm512_div_ps(v, m.scale);
  return _mm512_cvttps_epi32(_mm512_add_ps(q, signed_const(q, 0x3EFFFFFF)));
}

template <bool kSigned>
inline __m512i widen16x8(__m256i bytes) {  // 32 bytes -> 32 int16
  return kSigned ? _mm512_cvtepi8_epi16(bytes) : _mm512_cvtepu8_epi16(bytes);
}

template <bool kSigned>
inline __m512i widen32x8(__m128i bytes) {  // 16 bytes -> 16 int32
  return kSigned ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes);
}

// Means of 32 int16 sums -> out[0, n), n <= 32 (the means are in the dtype's
// range, so vpmovdb's truncation is exact).
inline void store_mean32(uint8_t* out, __m512i s16, const Mean& m, int n) {
  const __m512i lo = mean16(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(s16)), m);
  const __m512i hi = mean16(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(s16, 1)), m);
  if (n == 32) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtepi32_epi8(hi));
    return;
  }
  _mm512_mask_cvtepi32_storeu_epi8(out, mask16(n < 16 ? n : 16), lo);
  if (n > 16) _mm512_mask_cvtepi32_storeu_epi8(out + 16, mask16(n - 16), hi);
}

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

template <bool kSigned, class Taps>
void avg_pixel(const Taps& taps, int t, int C, int32_t pad_sum, int32_t count, bool int16_ok,
               uint8_t* out) {
  const Mean m = make_mean(count);
  int c = 0;
  if (int16_ok) {  // kh * kw <= 128: |sum| <= 128 * 255 fits int16
    const __m512i pad16 = _mm512_set1_epi16(static_cast<int16_t>(pad_sum));
    for (; c + 64 <= C; c += 64) {
      __m512i s0 = pad16, s1 = pad16;
      for (int k = 0; k < t; ++k) {
        s0 = _mm512_add_epi16(s0, widen16x8<kSigned>(load32(taps[k] + c)));
        s1 = _mm512_add_epi16(s1, widen16x8<kSigned>(load32(taps[k] + c + 32)));
      }
      store_mean32(out + c, s0, m, 32);
      store_mean32(out + c + 32, s1, m, 32);
    }
    for (; c < C; c += 32) {
      const int n = C - c < 32 ? C - c : 32;
      const __mmask32 mk = mask32(n);
      __m512i s = pad16;
      for (int k = 0; k < t; ++k) s = _mm512_add_epi16(s, widen16x8<kSigned>(_mm256_maskz_loadu_epi8(mk, taps[k] + c)));
      store_mean32(out + c, s, m, n);
    }
    return;
  }
  const __m512i pad32 = _mm512_set1_epi32(pad_sum);
  for (; c < C; c += 16) {
    const int n = C - c < 16 ? C - c : 16;
    const __mmask32 mk = mask32(n);
    __m512i s = pad32;
    for (int k = 0; k < t; ++k) {
      s = _mm512_add_epi32(s, widen32x8<kSigned>(_mm256_castsi256_si128(_mm256_maskz_loadu_epi8(mk, taps[k] + c))));
    }
    _mm512_mask_cvtepi32_storeu_epi8(out + c, mask16(n), mean16(s, m));
  }
}

template <bool kSigned>
void global_avg(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int n, uint8_t* dst) {
  const Mean m = make_mean(H * W);
  // 64 channels at a time in four int32 accumulators (|sum| <= 255 H W <
  // 2^31: the driver caps H W).
  for (int c = 0; c < n; c += 64) {
    const int cn = n - c < 64 ? n - c : 64;
    const __mmask64 mk = mask64(cn);
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (int h = 0; h < H; ++h) {
      for (int w = 0; w < W; ++w) {
        const __m512i v = _mm512_maskz_loadu_epi8(mk, src + h * sh + w * sw + c);
        s0 = _mm512_add_epi32(s0, widen32x8<kSigned>(_mm512_castsi512_si128(v)));
        s1 = _mm512_add_epi32(s1, widen32x8<kSigned>(_mm512_extracti32x4_epi32(v, 1)));
        s2 = _mm512_add_epi32(s2, widen32x8<kSigned>(_mm512_extracti32x4_epi32(v, 2)));
        s3 = _mm512_add_epi32(s3, widen32x8<kSigned>(_mm512_extracti32x4_epi32(v, 3)));
      }
    }
    const __m512i sums[4] = {s0, s1, s2, s3};
    for (int g = 0; g * 16 < cn; ++g) {
      const int gn = cn - g * 16 < 16 ? cn - g * 16 : 16;
      _mm512_mask_cvtepi32_storeu_epi8(dst + c + g * 16, mask16(gn), mean16(sums[g], m));
    }
  }
}

// One output pixel from its t valid taps.
template <class Taps>
void pixel(const PoolRowArgs& a, const Taps& taps, int t, bool int16_ok, uint8_t* out) {
  if (a.mode == PoolMode::kMax) {
    if (a.is_signed) {
      max_pixel<true>(taps, t, a.C, out);
    } else {
      max_pixel<false>(taps, t, a.C, out);
    }
    return;
  }
  const bool include = a.mode == PoolMode::kAvgIncludePadding;
  const int32_t count = include ? a.kh * a.kw : t;
  const int32_t pad_sum = include ? (a.kh * a.kw - t) * a.zero_point : 0;
  if (a.is_signed) {
    avg_pixel<true>(taps, t, a.C, pad_sum, count, int16_ok, out);
  } else {
    avg_pixel<false>(taps, t, a.C, pad_sum, count, int16_ok, out);
  }
}

}  // namespace

void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst) {
  MEGQ_DCHECK_POOL_ROW(a, oh, dst);
  int i0, i1;
  valid_taps(oh, a.kh, a.stride_h, a.pad_h, a.dil_h, a.H, &i0, &i1);
  const int ih0 = oh * a.stride_h - a.pad_h;
  const bool int16_ok = a.kh * a.kw <= 128;
  // Windows wholly inside the image (all rows valid here, and all columns):
  // their taps are one pointer plus fixed offsets, computed once per row.
  constexpr int kMaxOffsets = 16;
  ptrdiff_t off[kMaxOffsets];
  const bool rows_full = i0 == 0 && i1 == a.kh && a.kh * a.kw <= kMaxOffsets;
  if (rows_full) {
    int t = 0;
    for (int i = 0; i < a.kh; ++i) {
      for (int j = 0; j < a.kw; ++j) off[t++] = i * a.dil_h * a.sh + j * a.dil_w * a.sw;
    }
  }
  for (int ow = 0; ow < a.OW; ++ow) {
    int j0, j1;
    valid_taps(ow, a.kw, a.stride_w, a.pad_w, a.dil_w, a.W, &j0, &j1);
    const int iw0 = ow * a.stride_w - a.pad_w;
    uint8_t* out = dst + static_cast<ptrdiff_t>(ow) * a.C;
    if (rows_full && j0 == 0 && j1 == a.kw) {
      pixel(a, OffsetTaps{a.src + ih0 * a.sh + iw0 * a.sw, off}, a.kh * a.kw, int16_ok, out);
    } else {
      int t = 0;
      for (int i = i0; i < i1; ++i) {
        for (int j = j0; j < j1; ++j) a.taps[t++] = a.src + (ih0 + i * a.dil_h) * a.sh + (iw0 + j * a.dil_w) * a.sw;
      }
      pixel(a, PtrTaps{a.taps}, t, int16_ok, out);
    }
  }
}

void global_avg_pool(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, bool is_signed,
                     int32_t* acc, uint8_t* dst) {
  (void)acc;  // the sums live in registers
  if (is_signed) {
    global_avg<true>(src + c0, sh, sw, H, W, c1 - c0, dst);
  } else {
    global_avg<false>(src + c0, sh, sw, H, W, c1 - c0, dst);
  }
}

}  // namespace avx512vnni
}  // namespace megq
