// AArch64 depthwise conv kernels with the ARMv8.2 dot product extension
// (compiled with -march=armv8.2-a+dotprod only here). Contract: depthwise.h;
// layout: the tap-quad rows of depthwise_kernels.h in their signed-byte form.
//
// sdot multiplies 4 signed bytes by 4 signed bytes and adds the 4 products to
// an int32 lane: one instruction covers a 3-tap kernel row for 4 channels
// (three per 3x3 window, against nine int16 multiply-accumulates on the plain
// NEON path). Each product is at most 128 * 128 in magnitude, the lanes wrap
// modulo 2^32, and the packed bias carries -z' sum w, so the accumulator is
// exact because the true value fits in int32 (checked at pack time).
// Bytes are fed signed: int8 input as is, uint8 input with its sign bit
// flipped (x ^ 0x80 == x - 128 as int8); z' is the zero point in that domain.
// Epilogue: requantization exactly as csrc/megq/requantize.h (scvtf, one
// fmul, clamp in float, fcvtas = round half away from zero, + z, saturating
// narrows of in-range values).
#include <arm_neon.h>

#include <cstring>

#include "megq/kernels/depthwise_kernels.h"
#include "megq/kernels/neon/ops_neon_util.h"

namespace megq {
namespace neondot {
namespace {

constexpr int kQuadBytes = 64;  // 16 channels x 4 taps

using neon_util::DwEpilogue;
using neon_util::finish_dw_tile;

// One 16-channel tile of one output row. kKH, kQ > 0: compile-time window
// (weights in registers); 0: taken from `a`.
template <int kKH, int kQ, bool kSigned>
void tile_row(const DwRowArgs& a, int ct, const int8_t* w, const DwEpilogue& ep, uint8_t* out, int valid) {
  const int KH = kKH > 0 ? kKH : a.KH;
  const int Q = kQ > 0 ? kQ : a.Q;
  constexpr bool kFixed = kKH > 0 && kQ > 0;
  constexpr int kRegs = kFixed ? kKH * kQ * 4 : 1;
  int8x16_t wr[kRegs];
  if (kFixed) {
    for (int j = 0; j < kKH * kQ * 4; ++j) wr[j] = vld1q_s8(w + 16 * j);
  }
  const ptrdiff_t tile_off = static_cast<ptrdiff_t>(ct) * a.OW * Q * kQuadBytes;
  const ptrdiff_t step = static_cast<ptrdiff_t>(Q) * kQuadBytes;
  for (int ow = 0; ow < a.OW; ++ow) {
    int32x4_t acc[4] = {ep.bias[0], ep.bias[1], ep.bias[2], ep.bias[3]};
    for (int i = 0; i < KH; ++i) {
      const int8_t* r = reinterpret_cast<const int8_t*>(a.qrows[i]) + tile_off + ow * step;
      for (int q = 0; q < Q; ++q) {
        const int j = (i * Q + q) * 4;
        for (int k = 0; k < 4; ++k) {
          const int8x16_t wv = kFixed ? wr[j + k] : vld1q_s8(w + 16 * (j + k));
          acc[k] = vdotq_s32(acc[k], vld1q_s8(r + q * kQuadBytes + 16 * k), wv);
        }
      }
    }
    finish_dw_tile<kSigned>(ep, acc, out + ow * static_cast<ptrdiff_t>(a.C), valid);
  }
}

// 16 bytes of channels [c0, c0 + valid) of one pixel, zero beyond; reads
// exactly those bytes.
inline uint8x16_t load_channels(const uint8_t* p, int valid) {
  if (valid >= 16) return vld1q_u8(p);
  uint8_t tmp[16] = {};
  std::memcpy(tmp, p, static_cast<size_t>(valid));
  return vld1q_u8(tmp);
}

}  // namespace

void widen_quads(const DwQuadWidenArgs& g) {
  MEGQ_DCHECK(g.src != nullptr && g.dst != nullptr && MEGQ_ALIGNED(g.dst, 64));
  MEGQ_DCHECK(g.W >= 1 && g.C_in >= 1 && g.multiplier >= 1 && g.OW >= 1 && g.KW >= 1);
  MEGQ_DCHECK(g.Q == (g.KW + 3) / 4 && g.Cs % kDwTile == 0);
  MEGQ_DCHECK(0 <= g.ct0 && g.ct0 < g.ct1 && g.ct1 <= g.Cs / kDwTile);
  MEGQ_DCHECK(static_cast<int64_t>(g.C_in) * g.multiplier <= g.Cs);
  const int C_out = g.C_in * g.multiplier;
  // Signed-byte domain: uint8 input has its sign bit flipped; the raw zero
  // point byte stands at taps outside the image and gets the same flip.
  const uint8_t f = g.is_signed ? 0 : 0x80;
  const uint8_t zraw = static_cast<uint8_t>(g.zero_point);
  if (g.multiplier == 1 && g.KW == 3 && g.dil_w == 1) {
    // The common 3-wide window: byte-interleave three 16-channel pixels.
    const uint8x16_t flip = vdupq_n_u8(f), pad = vdupq_n_u8(zraw), zero = vdupq_n_u8(0);
    for (int ct = g.ct0; ct < g.ct1; ++ct) {
      const int c0 = ct * kDwTile;
      const int valid = C_out - c0 < kDwTile ? C_out - c0 : kDwTile;
      uint8_t* d = g.dst + static_cast<ptrdiff_t>(ct) * g.OW * kQuadBytes;
      auto pixel = [&](int pos) {
        return (pos < 0 || pos >= g.W) ? pad : load_channels(g.src + static_cast<ptrdiff_t>(pos) * g.sw + c0, valid);
      };
      for (int ow = 0; ow < g.OW; ++ow) {
        const int p0 = ow * g.stride_w - g.pad_w;
        const uint8x16_t x0 = pixel(p0), x1 = pixel(p0 + 1), x2 = pixel(p0 + 2);
        const uint8x16_t ab_lo = vzip1q_u8(x0, x1), ab_hi = vzip2q_u8(x0, x1);
        const uint8x16_t c_lo = vzip1q_u8(x2, zero), c_hi = vzip2q_u8(x2, zero);
        uint8_t* o = d + static_cast<ptrdiff_t>(ow) * kQuadBytes;
        // Channel 4j..4j+3 quads: 16-bit zips of the (x0, x1) and (x2, 0) pairs.
        vst1q_u8(o, veorq_u8(vreinterpretq_u8_u16(vzip1q_u16(vreinterpretq_u16_u8(ab_lo), vreinterpretq_u16_u8(c_lo))), flip));
        vst1q_u8(o + 16, veorq_u8(vreinterpretq_u8_u16(vzip2q_u16(vreinterpretq_u16_u8(ab_lo), vreinterpretq_u16_u8(c_lo))), flip));
        vst1q_u8(o + 32, veorq_u8(vreinterpretq_u8_u16(vzip1q_u16(vreinterpretq_u16_u8(ab_hi), vreinterpretq_u16_u8(c_hi))), flip));
        vst1q_u8(o + 48, veorq_u8(vreinterpretq_u8_u16(vzip2q_u16(vreinterpretq_u16_u8(ab_hi), vreinterpretq_u16_u8(c_hi))), flip));
      }
    }
    return;
  }
  // Any other window or channel multiplier: byte by byte (output channel o
  // reads input channel o / m).
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
}

void depthwise_row(const DwRowArgs& a) {
  MEGQ_DCHECK_DEPTHWISE_ROW(a);
  MEGQ_DCHECK(a.qrows != nullptr && a.packed != nullptr && MEGQ_ALIGNED(a.packed, 16));
  MEGQ_DCHECK(a.Q == (a.KW + 3) / 4);
  MEGQ_DCHECK(0 <= a.ct0 && a.ct0 < a.ct1 && a.ct1 <= a.Cs / kDwTile);
  const int n = a.KH * a.Q;
  const size_t tile_bytes = static_cast<size_t>(n + 2) * kQuadBytes;
  DwEpilogue ep;
  ep.lo = vdupq_n_f32(static_cast<float>(a.lo - a.zo));
  ep.hi = vdupq_n_f32(static_cast<float>(a.hi - a.zo));
  ep.zo = vdupq_n_s32(a.zo);
  for (int ct = a.ct0; ct < a.ct1; ++ct) {
    const uint8_t* tile = a.packed + ct * tile_bytes;
    const int32_t* b = reinterpret_cast<const int32_t*>(tile + n * kQuadBytes);
    const float* m = reinterpret_cast<const float*>(tile + n * kQuadBytes + 64);
    for (int k = 0; k < 4; ++k) {
      ep.bias[k] = vld1q_s32(b + 4 * k);
      ep.mult[k] = vld1q_f32(m + 4 * k);
    }
    const int8_t* w = reinterpret_cast<const int8_t*>(tile);
    const int valid = a.C - ct * kDwTile;
    uint8_t* out = a.out + ct * kDwTile;
    const bool k3 = a.KH == 3 && a.Q == 1;
    if (a.out_signed) {
      if (k3) {
        tile_row<3, 1, true>(a, ct, w, ep, out, valid);
      } else {
        tile_row<0, 0, true>(a, ct, w, ep, out, valid);
      }
    } else {
      if (k3) {
        tile_row<3, 1, false>(a, ct, w, ep, out, valid);
      } else {
        tile_row<0, 0, false>(a, ct, w, ep, out, valid);
      }
    }
  }
}

}  // namespace neondot
}  // namespace megq
