// AVX-512 VNNI depthwise conv kernels (contract: depthwise.h; tap-quad layout
// and the bias compensation: depthwise_kernels.h).
//
// Why bytes and vpdpbusd rather than int16 and vpdpwssd / vpmaddwd: one
// vpdpbusd lane multiplies 4 unsigned bytes by 4 signed bytes and adds them
// to an int32, so a 3-tap kernel row costs one instruction per 16 channels
// (3 for a 3x3 window), against 5 tap pairs (plus their interleaving
// shuffles) with int16 pairs. Each product is at most 255 * 128 in magnitude
// and the instruction wraps (vpdpbusds, the saturating form, is never used),
// so the int32 accumulator is exact modulo 2^32, and exact because the packed
// weights proved that the true value fits.
//
// The widening writes, per output column, the KW taps of one kernel row side
// by side (stride and dilation resolved there), so the kernel reads one
// aligned 64-byte vector per (16 channels, kernel row) and never shuffles.
// Kernel: per 16-channel tile the KH x Q weight vectors stay in registers and
// four output columns are computed at once (independent accumulator chains).
// Epilogue: requantization exactly as csrc/megq/requantize.h, then vpmovdb.
#include <immintrin.h>

#include <cstring>

// GCC 12 reports the _mm512_undefined_* operands inside its own zero-extend
// and down-convert intrinsics as "maybe uninitialized" (GCC bug 105593, fixed
// in GCC 13); the warning says nothing about this file.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "megq/kernels/depthwise_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

constexpr int kQuadBytes = 64;  // 16 channels x 4 taps

struct Epilogue {
  __m512i bias, zo;
  __m512 mult, lo, hi;
};

// float32(acc) * M, clamped to [lo - z, hi - z], rounded half away from zero,
// + z: requantize.h's rule. After the clamp |v| <= 255, where
// trunc(v + copysign(0.49999997f, v)) is round-half-away exactly (the largest
// float below 0.5 avoids rounding 0.49999997f up; the same identity is proved
// for the AVX2 kernels in kernels/avx2/ops_avx2_util.h). The result is in the
// output dtype's range, so vpmovdb (truncating int32 -> byte) is exact for
// int8 and uint8 alike.
inline __m128i requantize16(const Epilogue& e, __m512i acc) {
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), e.mult);
  v = _mm512_min_ps(_mm512_max_ps(v, e.lo), e.hi);
  // (sign of v) | 0.49999997f  (ternary-logic truth table 0xEA: (A & B) | C)
  const __m512i half = _mm512_ternarylogic_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                                 _mm512_set1_epi32(0x3EFFFFFF), 0xEA);
  const __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_castsi512_ps(half)));
  return _mm512_cvtepi32_epi8(_mm512_add_epi32(q, e.zo));
}

inline void store16(uint8_t* dst, __m128i v, int valid) {
  if (valid >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
    std::memcpy(dst, tmp, static_cast<size_t>(valid));
  }
}

inline __m512i load_quad(const uint8_t* p) { return _mm512_load_si512(p); }

// One 16-channel tile of one output row. kKH, kQ > 0: compile-time window
// (weights in registers); 0: taken from `a`.
template <int kKH, int kQ>
void tile_row(const DwRowArgs& a, int ct, const __m512i* w, const Epilogue& ep, uint8_t* out, int valid) {
  const int KH = kKH > 0 ? kKH : a.KH;
  const int Q = kQ > 0 ? kQ : a.Q;
  const int n = KH * Q;
  constexpr int kMaxRegs = kKH > 0 && kQ > 0 ? kKH * kQ : 1;
  __m512i wr[kMaxRegs];
  if (kKH > 0 && kQ > 0) {
    for (int j = 0; j < n; ++j) wr[j] = _mm512_load_si512(w + j);
  }
  auto weight = [&](int j) { return kKH > 0 && kQ > 0 ? wr[j] : _mm512_load_si512(w + j); };
  // Row i's quads of this tile: qrows[i] + ((ct * OW + ow) * Q + q) * 64.
  const ptrdiff_t tile_off = static_cast<ptrdiff_t>(ct) * a.OW * Q * kQuadBytes;
  const ptrdiff_t step = static_cast<ptrdiff_t>(Q) * kQuadBytes;
  const ptrdiff_t out_step = a.C;
  int ow = 0;
  for (; ow + 4 <= a.OW; ow += 4) {
    __m512i c0 = ep.bias, c1 = ep.bias, c2 = ep.bias, c3 = ep.bias;
    for (int i = 0; i < KH; ++i) {
      const uint8_t* r = a.qrows[i] + tile_off + ow * step;
      for (int q = 0; q < Q; ++q) {
        const __m512i wv = weight(i * Q + q);
        const uint8_t* p = r + q * kQuadBytes;
        c0 = _mm512_dpbusd_epi32(c0, load_quad(p), wv);
        c1 = _mm512_dpbusd_epi32(c1, load_quad(p + step), wv);
        c2 = _mm512_dpbusd_epi32(c2, load_quad(p + 2 * step), wv);
        c3 = _mm512_dpbusd_epi32(c3, load_quad(p + 3 * step), wv);
      }
    }
    store16(out + ow * out_step, requantize16(ep, c0), valid);
    store16(out + (ow + 1) * out_step, requantize16(ep, c1), valid);
    store16(out + (ow + 2) * out_step, requantize16(ep, c2), valid);
    store16(out + (ow + 3) * out_step, requantize16(ep, c3), valid);
  }
  for (; ow < a.OW; ++ow) {
    __m512i c0 = ep.bias;
    for (int i = 0; i < KH; ++i) {
      const uint8_t* r = a.qrows[i] + tile_off + ow * step;
      for (int q = 0; q < Q; ++q) c0 = _mm512_dpbusd_epi32(c0, load_quad(r + q * kQuadBytes), weight(i * Q + q));
    }
    store16(out + ow * out_step, requantize16(ep, c0), valid);
  }
}

// 16 bytes of channels [c0, c0 + valid) of one pixel, zero beyond; reads
// exactly those bytes.
inline __m128i load_channels(const uint8_t* p, int valid) {
  if (valid >= 16) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  alignas(16) uint8_t tmp[16] = {};
  std::memcpy(tmp, p, static_cast<size_t>(valid));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
}

// Quad q of output column ow for one tile (multiplier 1): up to 4 taps, each
// zero-extended to int32 lanes and shifted into its byte.
inline __m512i gather_quad(const DwQuadWidenArgs& g, int ow, int q, int c0, int valid, __m512i pad) {
  __m512i acc = _mm512_setzero_si512();
  const int base = ow * g.stride_w - g.pad_w;
  for (int k = 0; k < 4 && 4 * q + k < g.KW; ++k) {
    const int pos = base + (4 * q + k) * g.dil_w;
    __m512i v;
    if (pos >= 0 && pos < g.W) {
      v = _mm512_cvtepu8_epi32(load_channels(g.src + pos * g.sw + c0, valid));
    } else {
      v = pad;
    }
    acc = _mm512_or_si512(acc, _mm512_slli_epi32(v, 8 * k));
  }
  return acc;
}

// A 3-wide window, dilation 1, stride 1 or 2: `cols` quads for the columns
// whose first tap is at position pos0, pos0 + stride, ... Each pixel is
// zero-extended once and shifted into the byte of every column that reads it;
// positions outside [0, W) give the raw zero point `pad`.
template <bool kSigned>
void row3(const uint8_t* src, ptrdiff_t sw, int W, int valid, __m512i pad, int stride, int pos0, int cols,
          uint8_t* d) {
  const __m512i flip = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  auto pixel = [&](int pos) {
    if (pos < 0 || pos >= W) return pad;
    return _mm512_cvtepu8_epi32(load_channels(src + static_cast<ptrdiff_t>(pos) * sw, valid));
  };
  auto put = [&](int j, __m512i v0, __m512i v1_8, __m512i v2_16) {
    // The three bytes do not overlap, so xor acts as or (0x96: A ^ B ^ C).
    __m512i v = _mm512_ternarylogic_epi32(v0, v1_8, v2_16, 0x96);
    if (kSigned) v = _mm512_xor_si512(v, flip);
    _mm512_store_si512(d + static_cast<ptrdiff_t>(j) * kQuadBytes, v);
  };
  if (stride == 1) {
    __m512i u = pixel(pos0), n1 = pixel(pos0 + 1);
    __m512i t = _mm512_slli_epi32(n1, 8);
    for (int j = 0; j < cols; ++j) {
      const __m512i n = pixel(pos0 + j + 2);
      put(j, u, t, _mm512_slli_epi32(n, 16));
      u = n1;
      n1 = n;
      t = _mm512_slli_epi32(n, 8);
    }
  } else {
    __m512i e = pixel(pos0);
    for (int j = 0; j < cols; ++j) {
      const __m512i o = pixel(pos0 + 2 * j + 1), n = pixel(pos0 + 2 * j + 2);
      put(j, e, _mm512_slli_epi32(o, 8), _mm512_slli_epi32(n, 16));
      e = n;
    }
  }
}

}  // namespace

void widen_quads(const DwQuadWidenArgs& g) {
  MEGQ_DCHECK(g.src != nullptr && g.dst != nullptr && MEGQ_ALIGNED(g.dst, 64));
  MEGQ_DCHECK(g.W >= 1 && g.C_in >= 1 && g.multiplier >= 1 && g.OW >= 1 && g.KW >= 1);
  MEGQ_DCHECK(g.Q == (g.KW + 3) / 4 && g.Cs % kDwTile == 0);
  MEGQ_DCHECK(0 <= g.ct0 && g.ct0 < g.ct1 && g.ct1 <= g.Cs / kDwTile);
  MEGQ_DCHECK(static_cast<int64_t>(g.C_in) * g.multiplier <= g.Cs);
  const int C_out = g.C_in * g.multiplier;
  // Raw zero-point byte at taps outside the image; the flip below turns it
  // (like every loaded byte) into the unsigned domain.
  const uint8_t zraw = static_cast<uint8_t>(g.zero_point);
  const __m512i pad = _mm512_set1_epi32(zraw);
  const __m512i flip = _mm512_set1_epi32(g.is_signed ? static_cast<int>(0x80808080u) : 0);
  if (g.multiplier != 1) {
    // Output channel o reads input channel o / m: byte gathers (rare layers).
    const uint8_t f = g.is_signed ? 0x80 : 0;
    for (int ct = g.ct0; ct < g.ct1; ++ct) {
      for (int ow = 0; ow < g.OW; ++ow) {
        const int base = ow * g.stride_w - g.pad_w;
        for (int q = 0; q < g.Q; ++q) {
          uint8_t* d = g.dst + ((static_cast<ptrdiff_t>(ct) * g.OW + ow) * g.Q + q) * kQuadBytes;
          for (int c = 0; c < kDwTile; ++c) {
            const int o = ct * kDwTile + c;
            for (int k = 0; k < 4; ++k) {
              const int t = 4 * q + k, pos = base + t * g.dil_w;
              uint8_t v = zraw;
              if (o < C_out && t < g.KW && pos >= 0 && pos < g.W) v = g.src[pos * g.sw + o / g.multiplier];
              d[4 * c + k] = static_cast<uint8_t>(v ^ f);
            }
          }
        }
      }
    }
    return;
  }
  const bool row3_path = g.KW == 3 && g.dil_w == 1 && g.stride_w <= 2;
  for (int ct = g.ct0; ct < g.ct1; ++ct) {
    const int c0 = ct * kDwTile;
    const int valid = C_out - c0 < kDwTile ? C_out - c0 : kDwTile;
    uint8_t* d = g.dst + static_cast<ptrdiff_t>(ct) * g.OW * g.Q * kQuadBytes;
    if (row3_path) {
      // The common 3-wide window (MobileNet's 3x3 layers).
      if (g.is_signed) {
        row3<true>(g.src + c0, g.sw, g.W, valid, pad, g.stride_w, -g.pad_w, g.OW, d);
      } else {
        row3<false>(g.src + c0, g.sw, g.W, valid, pad, g.stride_w, -g.pad_w, g.OW, d);
      }
    } else {
      for (int ow = 0; ow < g.OW; ++ow) {
        for (int q = 0; q < g.Q; ++q) {
          _mm512_store_si512(d + (static_cast<ptrdiff_t>(ow) * g.Q + q) * kQuadBytes,
                             _mm512_xor_si512(gather_quad(g, ow, q, c0, valid, pad), flip));
        }
      }
    }
  }
}

void depthwise_row(const DwRowArgs& a) {
  MEGQ_DCHECK_DEPTHWISE_ROW(a);
  MEGQ_DCHECK(a.qrows != nullptr && a.packed != nullptr && MEGQ_ALIGNED(a.packed, 64));
  MEGQ_DCHECK(a.Q == (a.KW + 3) / 4);
  MEGQ_DCHECK(0 <= a.ct0 && a.ct0 < a.ct1 && a.ct1 <= a.Cs / kDwTile);
  const int n = a.KH * a.Q;
  const size_t tile_bytes = static_cast<size_t>(n + 2) * kQuadBytes;
  Epilogue ep;
  ep.lo = _mm512_set1_ps(static_cast<float>(a.lo - a.zo));
  ep.hi = _mm512_set1_ps(static_cast<float>(a.hi - a.zo));
  ep.zo = _mm512_set1_epi32(a.zo);
  for (int ct = a.ct0; ct < a.ct1; ++ct) {
    const __m512i* w = reinterpret_cast<const __m512i*>(a.packed + ct * tile_bytes);
    ep.bias = _mm512_load_si512(w + n);
    ep.mult = _mm512_castsi512_ps(_mm512_load_si512(w + n + 1));
    const int valid = a.C - ct * kDwTile;
    uint8_t* out = a.out + ct * kDwTile;
    if (a.KH == 3 && a.Q == 1) {
      tile_row<3, 1>(a, ct, w, ep, out, valid);
    } else if (a.KH == 5 && a.Q == 2) {
      tile_row<5, 2>(a, ct, w, ep, out, valid);
    } else {
      tile_row<0, 0>(a, ct, w, ep, out, valid);
    }
  }
}

}  // namespace avx512vnni
}  // namespace megq
