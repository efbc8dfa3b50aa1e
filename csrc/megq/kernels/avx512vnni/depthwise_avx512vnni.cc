// AVX-512 VNNI depthwise conv kernels (contract: depthwise.h; tap-quad layout,
// the 64-channel group order and the bias compensation: depthwise_kernels.h).
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
// Two schemes (layouts: depthwise_kernels.h). Vertical quads (channel
// multiplier 1, KH <= 4; depthwise_row_vertical): each pixel column's KH
// kernel-row bytes sit side by side in one lane, built in registers from the
// image rows and reused by every output column whose window covers that
// column, so nothing but the output is written (see unit_row). Tap quads
// (the other windows; widen_quads + depthwise_row): the widening writes, per
// output column, the KW taps of one kernel row side by side (stride and
// dilation resolved there), so the kernel reads one aligned 64-byte vector
// per (16 channels, kernel row) and never shuffles; the driver runs them one
// 64-channel group at a time.
// Both order the channels of a 64-channel group (32, 16 for the vertical
// units) as a byte / word interleave of whole pixels leaves them (the two
// vpunpck stages of a 4 x 4 byte transpose); the epilogue's two packs
// (int32 -> int16 -> int8) of the four accumulator vectors return the bytes
// of one output pixel in channel order, one store per group. Tap-quad tiles
// outside full groups use the tile order (16-byte stores, four output
// columns per step). Epilogue: requantization exactly as
// csrc/megq/requantize.h (groups: byte_epilogue.h; tiles: requantize16 below).
#include <immintrin.h>

#include <cstring>

#include "megq/kernels/avx512vnni/gcc12_intrinsics_warning.h"

#include "megq/kernels/avx512vnni/byte_epilogue.h"
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

// The group epilogue: byte_epilogue.h (the rule and its proof). The four
// rounded vectors of a group (vector k, lane L, dword i = channel
// 16 L + 4 k + i) pack (pack4_in_lanes) into the group's 64 output bytes
// already in channel order: lane L of packs(packs(q0, q1), packs(q2, q3))
// holds channels 16 L + 0..15 in order.

// One full group (tiles ct .. ct + 3) of one output row. Its packed tiles
// follow each other; tile k (tile_bytes each) holds the weights of vector
// k. Row i's quads: qrows[i] + group_off + ((ow * Q + q) * 4 + k) * 64.
// kKH, kQ > 0: compile-time window (weights in registers); 0: from `a`.
template <int kKH, int kQ, bool kClampFloat>
void group_row(const DwRowArgs& a, ptrdiff_t group_off, const uint8_t* tiles, size_t tile_bytes,
               const ByteEpilogue& e, uint8_t* out, int valid) {
  const int KH = kKH > 0 ? kKH : a.KH;
  const int Q = kQ > 0 ? kQ : a.Q;
  const int n = KH * Q;
  constexpr bool kFixed = kKH > 0 && kQ > 0;
  constexpr int kRegs = kFixed ? kKH * kQ : 1;
  __m512i wr[4][kRegs];
  auto wptr = [&](int k, int j) { return reinterpret_cast<const __m512i*>(tiles + k * tile_bytes) + j; };
  if (kFixed) {
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < n; ++j) wr[k][j] = _mm512_load_si512(wptr(k, j));
  }
  auto weight = [&](int k, int j) { return kFixed ? wr[k][j] : _mm512_load_si512(wptr(k, j)); };
  __m512i bias[4];
  __m512 mult[4];
  for (int k = 0; k < 4; ++k) {
    bias[k] = _mm512_load_si512(wptr(k, n));
    mult[k] = _mm512_castsi512_ps(_mm512_load_si512(wptr(k, n + 1)));
  }
  const ptrdiff_t step = static_cast<ptrdiff_t>(Q) * 4 * kQuadBytes;  // per output column
  const ptrdiff_t out_step = a.C;
  // One column at a time: 4 KH Q weights, 4 accumulators, 4 biases and 4
  // multipliers fit the 32 registers (two columns would spill weights, and
  // the loads, not the dependency chains, bound this loop); the rows'
  // pointers are copied so that the byte stores cannot make them reloaded.
  constexpr int kMaxRows = kFixed ? kKH : 1;
  const uint8_t* rows[kMaxRows];
  if (kFixed) {
    for (int i = 0; i < KH; ++i) rows[i] = a.qrows[i] + group_off;
  }
  auto row = [&](int i) { return kFixed ? rows[i] : a.qrows[i] + group_off; };
  for (int ow = 0; ow < a.OW; ++ow) {
    __m512i c0[4];
    for (int k = 0; k < 4; ++k) c0[k] = bias[k];
    for (int i = 0; i < KH; ++i) {
      const uint8_t* r = row(i) + ow * step;
      for (int q = 0; q < Q; ++q) {
        for (int k = 0; k < 4; ++k) {
          c0[k] = _mm512_dpbusd_epi32(c0[k], load_quad(r + (q * 4 + k) * kQuadBytes), weight(k, i * Q + q));
        }
      }
    }
    for (int k = 0; k < 4; ++k) c0[k] = requantize16(e, c0[k], mult[k], kClampFloat);
    store_bytes64(out + ow * out_step, pack4_in_lanes(e, c0[0], c0[1], c0[2], c0[3]), valid);
  }
}

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

// A full group (64 channels from src, `valid` of them real, the others read
// as 0) of one image row, the 3-wide window (dilation 1, stride 1 or 2), in
// group order: column j's four quad vectors. pad: the zero point, flipped.
// The interleave of pixels a, b (vpunpck{l,h}bw) holds in word m of 128-bit
// lane L the pair (a, b) of channel 16 L + m (lo: m < 8, hi: m - 8); the word
// interleave (vpunpck{l,h}wd) of the pairs (a, b) and (c, d) then holds in
// dword i of lane L the bytes (a, b, c, d) of channel 16 L + 4 k + i, for
// k = 0, 1 from lo and 2, 3 from hi: the group order. Column j's quads take
// the pixels at pos0 + s j + (0, 1, 2, 3); the fourth tap's byte has weight 0
// (taps outside [0, W) read pad, so nothing is read past the row).
template <bool kSigned>
void row3_group(const uint8_t* src, ptrdiff_t sw, int W, int valid, __m512i pad, int stride, int pos0, int cols,
                uint8_t* d) {
  const __mmask64 mask = valid >= 64 ? ~0ull : (~0ull) >> (64 - valid);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  auto pixel = [&](int pos) {
    if (pos < 0 || pos >= W) return pad;
    const __m512i v = _mm512_maskz_loadu_epi8(mask, src + static_cast<ptrdiff_t>(pos) * sw);
    return kSigned ? _mm512_xor_si512(v, flip) : v;
  };
  auto put = [&](int j, __m512i lo_ab, __m512i hi_ab, __m512i lo_cd, __m512i hi_cd) {
    uint8_t* p = d + static_cast<ptrdiff_t>(j) * 4 * kQuadBytes;
    _mm512_store_si512(p, _mm512_unpacklo_epi16(lo_ab, lo_cd));
    _mm512_store_si512(p + kQuadBytes, _mm512_unpackhi_epi16(lo_ab, lo_cd));
    _mm512_store_si512(p + 2 * kQuadBytes, _mm512_unpacklo_epi16(hi_ab, hi_cd));
    _mm512_store_si512(p + 3 * kQuadBytes, _mm512_unpackhi_epi16(hi_ab, hi_cd));
  };
  if (stride == 1) {
    // Column j: pairs (pos0 + j, + 1) and (pos0 + j + 2, + 3); each pair is
    // made once and used by two columns.
    const __m512i p0 = pixel(pos0), p1 = pixel(pos0 + 1);
    __m512i prev = pixel(pos0 + 2);
    __m512i lo0 = _mm512_unpacklo_epi8(p0, p1), hi0 = _mm512_unpackhi_epi8(p0, p1);
    __m512i lo1 = _mm512_unpacklo_epi8(p1, prev), hi1 = _mm512_unpackhi_epi8(p1, prev);
    for (int j = 0; j < cols; ++j) {
      const __m512i n = pixel(pos0 + j + 3);
      const __m512i lo2 = _mm512_unpacklo_epi8(prev, n), hi2 = _mm512_unpackhi_epi8(prev, n);
      put(j, lo0, hi0, lo2, hi2);
      lo0 = lo1;
      hi0 = hi1;
      lo1 = lo2;
      hi1 = hi2;
      prev = n;
    }
  } else {
    // Column j: pairs (pos0 + 2 j, + 1) and (pos0 + 2 j + 2, + 3).
    __m512i a = pixel(pos0), b = pixel(pos0 + 1);
    __m512i lo0 = _mm512_unpacklo_epi8(a, b), hi0 = _mm512_unpackhi_epi8(a, b);
    for (int j = 0; j < cols; ++j) {
      a = pixel(pos0 + 2 * j + 2);
      b = pixel(pos0 + 2 * j + 3);
      const __m512i lo1 = _mm512_unpacklo_epi8(a, b), hi1 = _mm512_unpackhi_epi8(a, b);
      put(j, lo0, hi0, lo1, hi1);
      lo0 = lo1;
      hi0 = hi1;
    }
  }
}

// ---- Vertical-quad kernels (multiplier 1, KH <= 4; layout: depthwise_kernels.h) ----
//
// Each input column's quads hold the KH kernel rows' bytes of one pixel
// column side by side, so one quad vector serves every output column whose
// window covers that input column: at stride 1 a 3-wide window reads each
// built vector three times from registers, and nothing is written to memory
// but the output. A unit is 64, 32 or 16 channels (zmm, ymm or xmm vectors:
// Zen-class cores run a 512-bit operation as two 256-bit halves, so the
// narrower units cost the same per channel).

// The operations on one vector width, spelled once per width.
// Masked byte loads and stores (masked-off bytes are neither read nor
// written). The narrow forms need AVX512VL + BW; a build without them (the
// SIMDe-emulated test build) uses the 512-bit forms and the low part of the
// register, which are slower on hardware but equivalent.
#if defined(__AVX512VL__) && defined(__AVX512BW__)
inline __m256i maskz_load(const uint8_t* p, uint64_t m, __m256i) {
  return _mm256_maskz_loadu_epi8(static_cast<__mmask32>(m), p);
}
inline __m128i maskz_load(const uint8_t* p, uint64_t m, __m128i) {
  return _mm_maskz_loadu_epi8(static_cast<__mmask16>(m), p);
}
inline void mask_store(uint8_t* p, uint64_t m, __m256i v) { _mm256_mask_storeu_epi8(p, static_cast<__mmask32>(m), v); }
inline void mask_store(uint8_t* p, uint64_t m, __m128i v) { _mm_mask_storeu_epi8(p, static_cast<__mmask16>(m), v); }
#else
inline __m256i maskz_load(const uint8_t* p, uint64_t m, __m256i) {
  return _mm512_castsi512_si256(_mm512_maskz_loadu_epi8(m, p));
}
inline __m128i maskz_load(const uint8_t* p, uint64_t m, __m128i) {
  return _mm512_castsi512_si128(_mm512_maskz_loadu_epi8(m, p));
}
inline void mask_store(uint8_t* p, uint64_t m, __m256i v) { _mm512_mask_storeu_epi8(p, m, _mm512_castsi256_si512(v)); }
inline void mask_store(uint8_t* p, uint64_t m, __m128i v) { _mm512_mask_storeu_epi8(p, m, _mm512_castsi128_si512(v)); }
#endif
inline __m512i maskz_load(const uint8_t* p, uint64_t m, __m512i) { return _mm512_maskz_loadu_epi8(m, p); }
inline void mask_store(uint8_t* p, uint64_t m, __m512i v) { _mm512_mask_storeu_epi8(p, m, v); }
#define MEGQ_DW_VEC_TRAITS(Name, V, F, bits, suffix)                                                             \
  struct Name {                                                                                                  \
    using Vec = V;                                                                                               \
    using Flt = F;                                                                                               \
    static constexpr int kBytes = bits / 8;                                                                      \
    static Vec loadm(const uint8_t* p, uint64_t m) { return maskz_load(p, m, Vec()); }                          \
    static Vec load(const uint8_t* p) { return _mm##suffix##_load_si##bits(reinterpret_cast<const V*>(p)); }     \
    static void storem(uint8_t* p, uint64_t m, Vec v) { mask_store(p, m, v); }                                   \
    static Vec set8(int c) { return _mm##suffix##_set1_epi8(static_cast<char>(c)); }                           \
    static Vec set16(int c) { return _mm##suffix##_set1_epi16(static_cast<int16_t>(c)); }                      \
    static Vec set32(int c) { return _mm##suffix##_set1_epi32(c); }                                            \
    static Flt loadf(const uint8_t* p) { return _mm##suffix##_load_ps(reinterpret_cast<const float*>(p)); }     \
    static Flt setf(float f) { return _mm##suffix##_set1_ps(f); }                                              \
    static Vec xor_(Vec a, Vec b) { return _mm##suffix##_xor_si##bits(a, b); }                                 \
    static Vec lo8(Vec a, Vec b) { return _mm##suffix##_unpacklo_epi8(a, b); }                                 \
    static Vec hi8(Vec a, Vec b) { return _mm##suffix##_unpackhi_epi8(a, b); }                                 \
    static Vec lo16(Vec a, Vec b) { return _mm##suffix##_unpacklo_epi16(a, b); }                               \
    static Vec hi16(Vec a, Vec b) { return _mm##suffix##_unpackhi_epi16(a, b); }                               \
    static Vec dp(Vec acc, Vec x, Vec w) { return _mm##suffix##_dpbusd_epi32(acc, x, w); }                     \
    static Flt mulf(Vec acc, Flt m) { return _mm##suffix##_mul_ps(_mm##suffix##_cvtepi32_ps(acc), m); }       \
    static Flt minf(Flt a, Flt b) { return _mm##suffix##_min_ps(a, b); }                                       \
    static Flt copysignf(Flt v, Vec sign, Flt half) {                                                            \
      return _mm##suffix##_castsi##bits##_ps(_mm##suffix##_ternarylogic_epi32(                                   \
          _mm##suffix##_castps_si##bits(v), sign, _mm##suffix##_castps_si##bits(half), 0xEA));                   \
    }                                                                                                            \
    static Vec round(Flt v, Flt h) { return _mm##suffix##_cvttps_epi32(_mm##suffix##_add_ps(v, h)); }         \
    static Vec packs32(Vec a, Vec b) { return _mm##suffix##_packs_epi32(a, b); }                               \
    static Vec adds16(Vec a, Vec b) { return _mm##suffix##_adds_epi16(a, b); }                                 \
    static Vec packs16(Vec a, Vec b) { return _mm##suffix##_packs_epi16(a, b); }                               \
    static Vec clamp8(Vec v, Vec lo, Vec hi) { return _mm##suffix##_min_epi8(_mm##suffix##_max_epi8(v, lo), hi); } \
    static bool any_ge1(const uint8_t* m) {                                                                      \
      return _mm##suffix##_cmp_ps_mask(_mm##suffix##_load_ps(reinterpret_cast<const float*>(m)),               \
                                       _mm##suffix##_set1_ps(1.0f), _CMP_GE_OQ) != 0;                            \
    }                                                                                                            \
  };
MEGQ_DW_VEC_TRAITS(VecZ, __m512i, __m512, 512, 512)
MEGQ_DW_VEC_TRAITS(VecY, __m256i, __m256, 256, 256)
MEGQ_DW_VEC_TRAITS(VecX, __m128i, __m128, 128, )
#undef MEGQ_DW_VEC_TRAITS

// A unit's epilogue constants (the rule and its proof: byte_epilogue.h).
template <class T>
struct UnitEpilogue {
  typename T::Flt hi, half;
  typename T::Vec sign, zp16, lo8, hi8, flip;
  bool rounds_negative, add_zero_point, unsigned_out;
  explicit UnitEpilogue(const DwRowArgs& a) {
    const int bias8 = a.out_signed ? 0 : 128;
    hi = T::setf(static_cast<float>(a.hi - a.zo));
    half = T::setf(0.49999997f);
    sign = T::set32(static_cast<int>(0x80000000u));
    zp16 = T::set16(a.zo - bias8);
    lo8 = T::set8(a.lo - bias8);
    hi8 = T::set8(a.hi - bias8);
    flip = T::set8(0x80);
    rounds_negative = a.lo < a.zo;
    add_zero_point = a.zo != bias8;
    unsigned_out = !a.out_signed;
  }
};

// Four accumulators (vector k, lane L, dword i = channel 16 L + 4 k + i) ->
// the unit's output bytes in channel order, as requantize16 and
// pack4_in_lanes of byte_epilogue.h (which prove the rule).
template <class T, bool kClampFloat>
inline typename T::Vec finish_unit(const UnitEpilogue<T>& e, const typename T::Vec* acc, const uint8_t* mult) {
  typename T::Vec q[4];
  for (int k = 0; k < 4; ++k) {
    typename T::Flt v = T::mulf(acc[k], T::loadf(mult + k * T::kBytes));
    if (kClampFloat) v = T::minf(v, e.hi);
    const typename T::Flt h = e.rounds_negative ? T::copysignf(v, e.sign, e.half) : e.half;
    q[k] = T::round(v, h);
  }
  typename T::Vec w01 = T::packs32(q[0], q[1]), w23 = T::packs32(q[2], q[3]);
  if (e.add_zero_point) {
    w01 = T::adds16(w01, e.zp16);
    w23 = T::adds16(w23, e.zp16);
  }
  typename T::Vec b = T::clamp8(T::packs16(w01, w23), e.lo8, e.hi8);
  if (e.unsigned_out) b = T::xor_(b, e.flip);
  return b;
}

// One unit (c0: its first channel, `valid` of its channels real) of one
// output row. Packed unit: KW x 4 weight vectors (dx major), 4 bias
// vectors, 4 multiplier vectors (depthwise_kernels.h). kRoll3: KH = KW = 3
// and dil_w = 1, where each built column is kept in registers for the next
// output columns (stride 1: two reused, one built; stride 2: one reused,
// two built); otherwise every (column, tap) builds its own.
template <class T, bool kRoll3, bool kClampFloat>
void unit_row(const DwRowArgs& a, const uint8_t* unit, int c0, int valid, const UnitEpilogue<T>& e) {
  using Vec = typename T::Vec;
  constexpr int B = T::kBytes;
  const uint64_t mask = valid >= B ? ~0ull >> (64 - B) : (~0ull) >> (64 - valid);
  const Vec flip = T::set8(a.in_signed ? 0x80 : 0);
  const Vec pad = T::set8(a.zq);
  const uint8_t* rows[4];
  const int KH = kRoll3 ? 3 : a.KH;
  for (int i = 0; i < KH; ++i) rows[i] = a.xrows[i] != nullptr ? a.xrows[i] + c0 : nullptr;
  const ptrdiff_t sw = a.sw;
  const int W = a.W;
  auto build = [&](int col, Vec* v) {
    Vec p[4];
    const bool inside = col >= 0 && col < W;
    for (int i = 0; i < 4; ++i) {
      if (i >= KH) {
        p[i] = p[KH - 1];  // any byte: the weights past KH are 0
      } else {
        p[i] = inside && rows[i] != nullptr ? T::xor_(T::loadm(rows[i] + col * sw, mask), flip) : pad;
      }
    }
    const Vec l01 = T::lo8(p[0], p[1]), h01 = T::hi8(p[0], p[1]);
    const Vec l23 = T::lo8(p[2], p[3]), h23 = T::hi8(p[2], p[3]);
    v[0] = T::lo16(l01, l23);
    v[1] = T::hi16(l01, l23);
    v[2] = T::lo16(h01, h23);
    v[3] = T::hi16(h01, h23);
  };
  const uint8_t* bias = unit + static_cast<ptrdiff_t>(a.KW) * 4 * B;
  const uint8_t* mult = bias + 4 * B;
  uint8_t* out = a.out + c0;
  const ptrdiff_t out_step = a.C;
  const int col0 = -a.pad_w;
  if constexpr (kRoll3) {
    Vec w[3][4];
    for (int dx = 0; dx < 3; ++dx)
      for (int k = 0; k < 4; ++k) w[dx][k] = T::load(unit + (dx * 4 + k) * B);
    Vec va[4], vb[4], vc[4];
    if (a.stride_w == 1) {
      build(col0, va);
      build(col0 + 1, vb);
      for (int j = 0; j < a.OW; ++j) {
        build(col0 + j + 2, vc);
        Vec acc[4];
        for (int k = 0; k < 4; ++k) {
          acc[k] = T::dp(T::dp(T::dp(T::load(bias + k * B), va[k], w[0][k]), vb[k], w[1][k]), vc[k], w[2][k]);
        }
        T::storem(out + j * out_step, mask, finish_unit<T, kClampFloat>(e, acc, mult));
        for (int k = 0; k < 4; ++k) {
          va[k] = vb[k];
          vb[k] = vc[k];
        }
      }
    } else {  // stride 2
      build(col0, va);
      for (int j = 0; j < a.OW; ++j) {
        build(col0 + 2 * j + 1, vb);
        build(col0 + 2 * j + 2, vc);
        Vec acc[4];
        for (int k = 0; k < 4; ++k) {
          acc[k] = T::dp(T::dp(T::dp(T::load(bias + k * B), va[k], w[0][k]), vb[k], w[1][k]), vc[k], w[2][k]);
        }
        T::storem(out + j * out_step, mask, finish_unit<T, kClampFloat>(e, acc, mult));
        for (int k = 0; k < 4; ++k) va[k] = vc[k];
      }
    }
  } else {
    for (int j = 0; j < a.OW; ++j) {
      Vec acc[4];
      for (int k = 0; k < 4; ++k) acc[k] = T::load(bias + k * B);
      for (int dx = 0; dx < a.KW; ++dx) {
        Vec v[4];
        build(col0 + j * a.stride_w + dx * a.dil_w, v);
        for (int k = 0; k < 4; ++k) acc[k] = T::dp(acc[k], v[k], T::load(unit + (dx * 4 + k) * B));
      }
      T::storem(out + j * out_step, mask, finish_unit<T, kClampFloat>(e, acc, mult));
    }
  }
}

template <class T>
void unit_row_any(const DwRowArgs& a, const uint8_t* unit, int c0, int valid) {
  const UnitEpilogue<T> e(a);
  // The float clamp only if some multiplier of the unit is >= 1
  // (byte_epilogue.h); channels beyond C_out hold multiplier 0.
  const uint8_t* mult = unit + static_cast<ptrdiff_t>(a.KW + 1) * 4 * T::kBytes;
  bool clamp = false;
  for (int k = 0; k < 4; ++k) clamp = clamp || T::any_ge1(mult + k * T::kBytes);
  const bool roll = a.KH == 3 && a.KW == 3 && a.dil_w == 1 && a.stride_w <= 2;
  if (roll) {
    if (clamp) {
      unit_row<T, true, true>(a, unit, c0, valid, e);
    } else {
      unit_row<T, true, false>(a, unit, c0, valid, e);
    }
  } else if (clamp) {
    unit_row<T, false, true>(a, unit, c0, valid, e);
  } else {
    unit_row<T, false, false>(a, unit, c0, valid, e);
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
  const int full_tiles = dw_full_group_tiles(g.Cs);
  MEGQ_DCHECK(g.ct0 >= full_tiles || g.ct0 % 4 == 0);
  MEGQ_DCHECK(g.ct1 >= full_tiles || g.ct1 % 4 == 0);
  // Raw zero-point byte at taps outside the image; the flip below turns it
  // (like every loaded byte) into the unsigned domain.
  const uint8_t zraw = static_cast<uint8_t>(g.zero_point);
  const uint8_t f = g.is_signed ? 0x80 : 0;
  const __m512i pad = _mm512_set1_epi32(zraw);
  const __m512i flip = _mm512_set1_epi32(g.is_signed ? static_cast<int>(0x80808080u) : 0);
  if (g.multiplier != 1) {
    // Output channel o reads input channel o / m: byte gathers (rare layers).
    for (int ct = g.ct0; ct < g.ct1; ++ct) {
      for (int ow = 0; ow < g.OW; ++ow) {
        const int base = ow * g.stride_w - g.pad_w;
        for (int q = 0; q < g.Q; ++q) {
          uint8_t* d = g.dst + dw_quad_offset(ct, ow, q, g.OW, g.Q, full_tiles);
          for (int c = 0; c < kDwTile; ++c) {
            const int o = dw_quad_channel(ct, c, full_tiles);
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
  int ct = g.ct0;
  for (; ct < g.ct1 && ct < full_tiles; ct += 4) {  // full groups
    const int c0 = ct * kDwTile;
    const int valid = C_out - c0 < 4 * kDwTile ? C_out - c0 : 4 * kDwTile;
    uint8_t* d = g.dst + static_cast<ptrdiff_t>(ct) * g.OW * g.Q * kQuadBytes;
    if (row3_path) {
      const __m512i zpad = _mm512_set1_epi8(static_cast<char>(zraw ^ f));
      if (g.is_signed) {
        row3_group<true>(g.src + c0, g.sw, g.W, valid, zpad, g.stride_w, -g.pad_w, g.OW, d);
      } else {
        row3_group<false>(g.src + c0, g.sw, g.W, valid, zpad, g.stride_w, -g.pad_w, g.OW, d);
      }
    } else {
      // Tile-order quads of the four tiles, then 16-byte lane k of tile L's
      // quad goes to lane L of vector k (group order: depthwise_kernels.h).
      alignas(64) uint8_t tmp[4][kQuadBytes];
      for (int ow = 0; ow < g.OW; ++ow) {
        for (int q = 0; q < g.Q; ++q) {
          for (int L = 0; L < 4; ++L) {
            const int v = valid - L * kDwTile;
            const __m512i quad =
                v > 0 ? _mm512_xor_si512(gather_quad(g, ow, q, c0 + L * kDwTile, v < kDwTile ? v : kDwTile, pad), flip)
                      : _mm512_setzero_si512();
            _mm512_store_si512(tmp[L], quad);
          }
          uint8_t* dq = d + (static_cast<ptrdiff_t>(ow) * g.Q + q) * 4 * kQuadBytes;
          for (int k = 0; k < 4; ++k)
            for (int L = 0; L < 4; ++L) std::memcpy(dq + k * kQuadBytes + L * 16, tmp[L] + k * 16, 16);
        }
      }
    }
  }
  for (; ct < g.ct1; ++ct) {  // remaining tiles, tile order
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

namespace {

template <int kKH, int kQ>
void group_row_any(const DwRowArgs& a, ptrdiff_t group_off, const uint8_t* tiles, size_t tile_bytes,
                   const ByteEpilogue& e, uint8_t* out, int valid) {
  // The float clamp is needed only if some multiplier of the group is >= 1
  // (byte_epilogue.h); channels beyond C_out hold multiplier 0.
  __m512 mx = _mm512_setzero_ps();
  const int n = a.KH * a.Q;
  for (int k = 0; k < 4; ++k) {
    mx = _mm512_max_ps(mx, _mm512_load_ps(tiles + k * tile_bytes + (n + 1) * kQuadBytes));
  }
  if (_mm512_cmp_ps_mask(mx, _mm512_set1_ps(1.0f), _CMP_GE_OQ) != 0) {
    group_row<kKH, kQ, true>(a, group_off, tiles, tile_bytes, e, out, valid);
  } else {
    group_row<kKH, kQ, false>(a, group_off, tiles, tile_bytes, e, out, valid);
  }
}

}  // namespace

void depthwise_row(const DwRowArgs& a) {
  MEGQ_DCHECK_DEPTHWISE_ROW(a);
  MEGQ_DCHECK(a.qrows != nullptr && a.packed != nullptr && MEGQ_ALIGNED(a.packed, 64));
  MEGQ_DCHECK(a.Q == (a.KW + 3) / 4);
  MEGQ_DCHECK(0 <= a.ct0 && a.ct0 < a.ct1 && a.ct1 <= a.Cs / kDwTile);
  const int n = a.KH * a.Q;
  const size_t tile_bytes = static_cast<size_t>(n + 2) * kQuadBytes;
  const int full_tiles = dw_full_group_tiles(a.Cs);
  int ct = a.ct0;
  if (ct < full_tiles) {
    const ByteEpilogue e = make_byte_epilogue(a.lo, a.hi, a.zo, !a.out_signed);
    for (; ct < a.ct1 && ct < full_tiles; ct += 4) {
      const ptrdiff_t group_off = static_cast<ptrdiff_t>(ct) * a.OW * a.Q * kQuadBytes;
      const uint8_t* tiles = a.packed + ct * tile_bytes;
      const int valid = a.C - ct * kDwTile;
      uint8_t* out = a.out + ct * kDwTile;
      if (a.KH == 3 && a.Q == 1) {
        group_row_any<3, 1>(a, group_off, tiles, tile_bytes, e, out, valid);
      } else {
        group_row_any<0, 0>(a, group_off, tiles, tile_bytes, e, out, valid);
      }
    }
  }
  if (ct >= a.ct1) return;
  Epilogue ep;
  ep.lo = _mm512_set1_ps(static_cast<float>(a.lo - a.zo));
  ep.hi = _mm512_set1_ps(static_cast<float>(a.hi - a.zo));
  ep.zo = _mm512_set1_epi32(a.zo);
  for (; ct < a.ct1; ++ct) {
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

void depthwise_row_vertical(const DwRowArgs& a) {
  MEGQ_DCHECK(a.out != nullptr && a.Cs % kDwTile == 0 && 1 <= a.C && a.C <= a.Cs && a.lo <= a.hi);
  MEGQ_DCHECK(a.KH >= 1 && a.KW >= 1 && a.OW >= 1 && a.stride_w >= 1 && a.dil_w >= 1 && a.W >= 1);
  MEGQ_DCHECK(a.xrows != nullptr && a.packed != nullptr && MEGQ_ALIGNED(a.packed, 64));
  MEGQ_DCHECK(a.KH <= 4 && 0 <= a.ct0 && a.ct0 < a.ct1 && a.ct1 <= a.Cs / kDwTile);
  const size_t tile_bytes = static_cast<size_t>(a.KW + 2) * kQuadBytes;
  int ct = a.ct0;
  while (ct < a.ct1) {
    const int left = a.ct1 - ct, c0 = ct * kDwTile, valid = a.C - c0;
    const uint8_t* unit = a.packed + ct * tile_bytes;
    if (left >= 4) {
      unit_row_any<VecZ>(a, unit, c0, valid);
      ct += 4;
    } else if (left >= 2) {
      unit_row_any<VecY>(a, unit, c0, valid);
      ct += 2;
    } else {
      unit_row_any<VecX>(a, unit, c0, valid);
      ct += 1;
    }
  }
}

}  // namespace avx512vnni
}  // namespace megq
