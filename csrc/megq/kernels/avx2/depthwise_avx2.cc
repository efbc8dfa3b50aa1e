// AVX2 depthwise conv kernels (contract: depthwise.h; layouts:
// depthwise_kernels.h). Vectorized across 16 output channels: two taps' int16
// (x - z_x) vectors are interleaved (vpunpcklwd / vpunpckhwd) and multiplied by
// pre-interleaved int16 weight pairs with vpmaddwd, exact for every int8
// weight including -128 (|pair sum| <= 2 * 255 * 128). Two output pixels per
// step share the weight loads. 3x3 and 5x5 get fully unrolled tap loops.
#include <cstring>

#include "megq/kernels/avx2/ops_avx2_util.h"
#include "megq/kernels/depthwise_kernels.h"

namespace megq {
namespace avx2 {
namespace {

using namespace util;

inline __m256i load16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

struct Epilogue {
  __m256i bias_lo, bias_hi;
  __m256 m_lo, m_hi, lo, hi;
  __m256i zo;
};

// 16 channels of accumulators -> 16 bytes in channel order.
template <bool kSigned>
inline __m128i finish(const Epilogue& ep, __m256i acc_lo, __m256i acc_hi) {
  const __m256i q_lo = clamp_round_add(_mm256_mul_ps(_mm256_cvtepi32_ps(acc_lo), ep.m_lo), ep.lo, ep.hi, ep.zo);
  const __m256i q_hi = clamp_round_add(_mm256_mul_ps(_mm256_cvtepi32_ps(acc_hi), ep.m_hi), ep.lo, ep.hi, ep.zo);
  const __m256i w16 = _mm256_packs_epi32(q_lo, q_hi);  // lane 0: ch 0-7, lane 1: ch 8-15
  const __m256i b8 = kSigned ? _mm256_packs_epi16(w16, w16) : _mm256_packus_epi16(w16, w16);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(b8, _MM_SHUFFLE(3, 1, 2, 0)));
}

inline void store_tile(uint8_t* dst, __m128i v, int valid) {
  if (valid >= kDwTile) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
    std::memcpy(dst, tmp, valid);
  }
}

// One 16-channel tile of one output row. kPairs > 0: compile-time tap-pair
// count (unrolled); 0: runtime `pairs`.
template <int kPairs, bool kSigned>
void tile_row(const DwRowArgs& a, const int16_t* const* taps, int pairs_rt, const __m256i* w, const Epilogue& ep,
              uint8_t* out, int valid) {
  const int pairs = kPairs > 0 ? kPairs : pairs_rt;
  const ptrdiff_t step = static_cast<ptrdiff_t>(a.stride_w) * a.Cs;
  const ptrdiff_t out_step = a.C;
  int ow = 0;
  // Four pixels per step: each weight pair is loaded once for four
  // multiplies (loads, not arithmetic, bound this loop).
  for (; ow + 4 <= a.OW; ow += 4) {
    const ptrdiff_t o0 = ow * step;
    __m256i l0 = ep.bias_lo, h0 = ep.bias_hi, l1 = ep.bias_lo, h1 = ep.bias_hi;
    __m256i l2 = ep.bias_lo, h2 = ep.bias_hi, l3 = ep.bias_lo, h3 = ep.bias_hi;
    for (int p = 0; p < pairs; ++p) {
      const __m256i wl = _mm256_load_si256(w + 2 * p), wh = _mm256_load_si256(w + 2 * p + 1);
      const int16_t* ta = taps[2 * p] + o0;
      const int16_t* tb = taps[2 * p + 1] + o0;
      __m256i x, y;
      x = load16(ta), y = load16(tb);
      l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), wl));
      h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), wh));
      x = load16(ta + step), y = load16(tb + step);
      l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), wl));
      h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), wh));
      x = load16(ta + 2 * step), y = load16(tb + 2 * step);
      l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), wl));
      h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), wh));
      x = load16(ta + 3 * step), y = load16(tb + 3 * step);
      l3 = _mm256_add_epi32(l3, _mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), wl));
      h3 = _mm256_add_epi32(h3, _mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), wh));
      // As below: keeps the accumulator chains in registers.
      asm("" : "+x"(l0), "+x"(h0), "+x"(l1), "+x"(h1), "+x"(l2), "+x"(h2), "+x"(l3), "+x"(h3));
    }
    store_tile(out + ow * out_step, finish<kSigned>(ep, l0, h0), valid);
    store_tile(out + (ow + 1) * out_step, finish<kSigned>(ep, l1, h1), valid);
    store_tile(out + (ow + 2) * out_step, finish<kSigned>(ep, l2, h2), valid);
    store_tile(out + (ow + 3) * out_step, finish<kSigned>(ep, l3, h3), valid);
  }
  for (; ow + 2 <= a.OW; ow += 2) {
    const ptrdiff_t o0 = ow * step, o1 = o0 + step;
    __m256i l0 = ep.bias_lo, h0 = ep.bias_hi, l1 = ep.bias_lo, h1 = ep.bias_hi;
    for (int p = 0; p < pairs; ++p) {
      const __m256i wl = _mm256_load_si256(w + 2 * p), wh = _mm256_load_si256(w + 2 * p + 1);
      const int16_t* ta = taps[2 * p];
      const int16_t* tb = taps[2 * p + 1];
      const __m256i a0 = load16(ta + o0), b0 = load16(tb + o0);
      const __m256i a1 = load16(ta + o1), b1 = load16(tb + o1);
      l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, b0), wl));
      h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, b0), wh));
      l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(_mm256_unpacklo_epi16(a1, b1), wl));
      h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(_mm256_unpackhi_epi16(a1, b1), wh));
      // Keeps the four accumulator chains in registers: without it GCC
      // reassociates the unrolled sums into trees and spills partial sums.
      asm("" : "+x"(l0), "+x"(h0), "+x"(l1), "+x"(h1));
    }
    store_tile(out + ow * out_step, finish<kSigned>(ep, l0, h0), valid);
    store_tile(out + (ow + 1) * out_step, finish<kSigned>(ep, l1, h1), valid);
  }
  if (ow < a.OW) {
    const ptrdiff_t o0 = ow * step;
    __m256i l0 = ep.bias_lo, h0 = ep.bias_hi;
    for (int p = 0; p < pairs; ++p) {
      const __m256i a0 = load16(taps[2 * p] + o0), b0 = load16(taps[2 * p + 1] + o0);
      l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, b0), _mm256_load_si256(w + 2 * p)));
      h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, b0), _mm256_load_si256(w + 2 * p + 1)));
    }
    store_tile(out + ow * out_step, finish<kSigned>(ep, l0, h0), valid);
  }
}

template <bool kSigned>
void tile_row_any(const DwRowArgs& a, int T, int pairs, const __m256i* w, const Epilogue& ep, uint8_t* out,
                  int valid) {
  if (T == 9) {
    tile_row<5, kSigned>(a, a.taps, pairs, w, ep, out, valid);
  } else if (T == 25) {
    tile_row<13, kSigned>(a, a.taps, pairs, w, ep, out, valid);
  } else {
    tile_row<0, kSigned>(a, a.taps, pairs, w, ep, out, valid);
  }
}

}  // namespace

void widen_row(const uint8_t* src, ptrdiff_t sw, int W, int C_in, int multiplier, bool is_signed,
               int32_t zero_point, int pad_w, int Wp, int Cs, int16_t* dst) {
  MEGQ_DCHECK_WIDEN_ROW(src, W, C_in, multiplier, pad_w, Wp, Cs, dst);
  const int C_out = C_in * multiplier;
  std::memset(dst, 0, static_cast<size_t>(pad_w) * Cs * sizeof(int16_t));
  std::memset(dst + static_cast<ptrdiff_t>(pad_w + W) * Cs, 0, static_cast<size_t>(Wp - pad_w - W) * Cs * sizeof(int16_t));
  const __m256i z = _mm256_set1_epi16(static_cast<int16_t>(zero_point));
  for (int w = 0; w < W; ++w) {
    const uint8_t* s = src + w * sw;
    int16_t* d = dst + static_cast<ptrdiff_t>(pad_w + w) * Cs;
    if (multiplier == 1) {
      int c = 0;
      for (; c + 16 <= C_in; c += 16) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + c));
        const __m256i v = is_signed ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + c), _mm256_sub_epi16(v, z));
      }
      for (; c < C_in; ++c) d[c] = static_cast<int16_t>((is_signed ? static_cast<int8_t>(s[c]) : s[c]) - zero_point);
    } else {
      for (int c = 0; c < C_in; ++c) {
        const int16_t v = static_cast<int16_t>((is_signed ? static_cast<int8_t>(s[c]) : s[c]) - zero_point);
        for (int m = 0; m < multiplier; ++m) d[c * multiplier + m] = v;
      }
    }
    for (int c = C_out; c < Cs; ++c) d[c] = 0;
  }
}

void depthwise_row(const DwRowArgs& a) {
  MEGQ_DCHECK_DEPTHWISE_ROW(a);
  MEGQ_DCHECK(a.packed != nullptr && MEGQ_ALIGNED(a.packed, 32));
  const int T = a.KH * a.KW, pairs = (T + 1) / 2;
  const size_t tile_bytes = static_cast<size_t>(pairs) * 64 + 128;
  const int tiles = a.Cs / kDwTile;
  Epilogue ep;
  ep.lo = _mm256_set1_ps(static_cast<float>(a.lo - a.zo));
  ep.hi = _mm256_set1_ps(static_cast<float>(a.hi - a.zo));
  ep.zo = _mm256_set1_epi32(a.zo);
  for (int ct = 0; ct < tiles; ++ct) {
    const uint8_t* tile = a.packed + ct * tile_bytes;
    const __m256i* w = reinterpret_cast<const __m256i*>(tile);
    const __m256i* b = reinterpret_cast<const __m256i*>(tile + pairs * 64);
    ep.bias_lo = _mm256_load_si256(b);
    ep.bias_hi = _mm256_load_si256(b + 1);
    ep.m_lo = _mm256_load_ps(reinterpret_cast<const float*>(b + 2));
    ep.m_hi = _mm256_load_ps(reinterpret_cast<const float*>(b + 3));
    for (int t = 0; t < T; ++t) {
      a.taps[t] = a.rows[t / a.KW] + static_cast<ptrdiff_t>(t % a.KW) * a.dil_w * a.Cs + ct * kDwTile;
    }
    if (T % 2) a.taps[T] = a.taps[0];  // partner of the last tap; its weight is 0
    const int valid = a.C - ct * kDwTile;
    uint8_t* out = a.out + ct * kDwTile;
    if (a.out_signed) {
      tile_row_any<true>(a, T, pairs, w, ep, out, valid);
    } else {
      tile_row_any<false>(a, T, pairs, w, ep, out, valid);
    }
  }
}

}  // namespace avx2
}  // namespace megq
