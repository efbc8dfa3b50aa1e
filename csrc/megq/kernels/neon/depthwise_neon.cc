// AArch64 NEON depthwise conv kernels (contract: depthwise.h; int16 row and
// NEON tile layouts: depthwise_kernels.h). Serves the neon and neondot paths.
//
// Vectorized across 16 output channels: each tap multiplies 16 int16
// (x - z_x) values by 16 int16 weights with widening multiply-accumulates
// (smlal / smlal2) into four int32x4 accumulators. Every product is at most
// 255 * 128 in magnitude and the sum fits int32 (proved at pack time), so the
// accumulation is exact. 3x3 windows keep their 9 x 16 weights in registers.
// Epilogue: requantization exactly as csrc/megq/requantize.h (the same steps
// as kernels/neon/epilogue_neon.h: scvtf, one fmul, clamp in float, fcvtas =
// round half away from zero, + z, saturating narrows of in-range values).
#include <arm_neon.h>

#include "megq/kernels/depthwise_kernels.h"
#include "megq/kernels/neon/ops_neon_util.h"

namespace megq {
namespace neon {
namespace {

using neon_util::DwEpilogue;
using neon_util::finish_dw_tile;

inline void mac(int32x4_t (&acc)[4], const int16_t* x, int16x8_t w0, int16x8_t w1) {
  const int16x8_t x0 = vld1q_s16(x), x1 = vld1q_s16(x + 8);
  acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w0));
  acc[1] = vmlal_high_s16(acc[1], x0, w0);
  acc[2] = vmlal_s16(acc[2], vget_low_s16(x1), vget_low_s16(w1));
  acc[3] = vmlal_high_s16(acc[3], x1, w1);
}

// One 16-channel tile of one output row. kT > 0: compile-time tap count with
// the weights in registers; 0: runtime T, weights loaded per tap.
template <int kT, bool kSigned>
void tile_row(const DwRowArgs& a, int T_rt, const int16_t* w, const DwEpilogue& ep, uint8_t* out, int valid) {
  const int T = kT > 0 ? kT : T_rt;
  const ptrdiff_t step = static_cast<ptrdiff_t>(a.stride_w) * a.Cs;
  constexpr int kRegs = kT > 0 ? kT : 1;
  int16x8_t wr0[kRegs], wr1[kRegs];
  if (kT > 0) {
    for (int t = 0; t < kT; ++t) {
      wr0[t] = vld1q_s16(w + t * kDwTile);
      wr1[t] = vld1q_s16(w + t * kDwTile + 8);
    }
  }
  for (int ow = 0; ow < a.OW; ++ow) {
    const ptrdiff_t o = ow * step;
    int32x4_t acc[4] = {ep.bias[0], ep.bias[1], ep.bias[2], ep.bias[3]};
    for (int t = 0; t < T; ++t) {
      if (kT > 0) {
        mac(acc, a.taps[t] + o, wr0[t], wr1[t]);
      } else {
        mac(acc, a.taps[t] + o, vld1q_s16(w + t * kDwTile), vld1q_s16(w + t * kDwTile + 8));
      }
    }
    finish_dw_tile<kSigned>(ep, acc, out + ow * static_cast<ptrdiff_t>(a.C), valid);
  }
}

}  // namespace

void widen_row(const uint8_t* src, ptrdiff_t sw, int W, int C_in, int multiplier, bool is_signed,
               int32_t zero_point, int pad_w, int Wp, int Cs, int16_t* dst) {
  MEGQ_DCHECK_WIDEN_ROW(src, W, C_in, multiplier, pad_w, Wp, Cs, dst);
  const int C_out = C_in * multiplier;
  std::memset(dst, 0, static_cast<size_t>(pad_w) * Cs * sizeof(int16_t));
  std::memset(dst + static_cast<ptrdiff_t>(pad_w + W) * Cs, 0,
              static_cast<size_t>(Wp - pad_w - W) * Cs * sizeof(int16_t));
  const int16x8_t z = vdupq_n_s16(static_cast<int16_t>(zero_point));
  for (int w = 0; w < W; ++w) {
    const uint8_t* s = src + w * sw;
    int16_t* d = dst + static_cast<ptrdiff_t>(pad_w + w) * Cs;
    if (multiplier == 1) {
      int c = 0;
      for (; c + 16 <= C_in; c += 16) {
        const uint8x16_t b = vld1q_u8(s + c);
        int16x8_t lo, hi;
        if (is_signed) {
          const int8x16_t sb = vreinterpretq_s8_u8(b);
          lo = vmovl_s8(vget_low_s8(sb));
          hi = vmovl_high_s8(sb);
        } else {
          lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(b)));
          hi = vreinterpretq_s16_u16(vmovl_high_u8(b));
        }
        vst1q_s16(d + c, vsubq_s16(lo, z));
        vst1q_s16(d + c + 8, vsubq_s16(hi, z));
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
  MEGQ_DCHECK(a.packed != nullptr && MEGQ_ALIGNED(a.packed, 16));
  const int T = a.KH * a.KW;
  const size_t tile_bytes = static_cast<size_t>(T) * 32 + 128;
  const int tiles = a.Cs / kDwTile;
  DwEpilogue ep;
  ep.lo = vdupq_n_f32(static_cast<float>(a.lo - a.zo));
  ep.hi = vdupq_n_f32(static_cast<float>(a.hi - a.zo));
  ep.zo = vdupq_n_s32(a.zo);
  for (int ct = 0; ct < tiles; ++ct) {
    const uint8_t* tile = a.packed + ct * tile_bytes;
    const int16_t* w = reinterpret_cast<const int16_t*>(tile);
    const int32_t* b = reinterpret_cast<const int32_t*>(tile + T * 32);
    const float* m = reinterpret_cast<const float*>(tile + T * 32 + 64);
    for (int k = 0; k < 4; ++k) {
      ep.bias[k] = vld1q_s32(b + 4 * k);
      ep.mult[k] = vld1q_f32(m + 4 * k);
    }
    for (int t = 0; t < T; ++t) {
      a.taps[t] = a.rows[t / a.KW] + static_cast<ptrdiff_t>(t % a.KW) * a.dil_w * a.Cs + ct * kDwTile;
    }
    const int valid = a.C - ct * kDwTile;
    uint8_t* out = a.out + ct * kDwTile;
    if (a.out_signed) {
      if (T == 9) {
        tile_row<9, true>(a, T, w, ep, out, valid);
      } else {
        tile_row<0, true>(a, T, w, ep, out, valid);
      }
    } else {
      if (T == 9) {
        tile_row<9, false>(a, T, w, ep, out, valid);
      } else {
        tile_row<0, false>(a, T, w, ep, out, valid);
      }
    }
  }
}

}  // namespace neon
}  // namespace megq
