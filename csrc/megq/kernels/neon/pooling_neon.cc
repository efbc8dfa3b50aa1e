// AArch64 NEON NHWC pooling kernels (contract: pooling.h). Vectorized across
// 16 channels: max with smax / umax; averages sum the window's taps in int32
// lanes (saddw / uaddw from int16), then round_half_away(float32(sum) /
// float32(count)) with a true fdiv and fcvtas (round half away from zero) --
// the scalar path's operations, so every channel gets the same byte. Channel
// tails are scalar. Reads only the window's input taps.
#include <arm_neon.h>

#include <cmath>

#include "megq/kernels/neon/ops_neon_util.h"
#include "megq/kernels/pooling_kernels.h"

namespace megq {
namespace neon {
namespace {

inline int32_t load_q(const uint8_t* p, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(*p)) : static_cast<int32_t>(*p);
}

inline uint8_t mean1(int32_t sum, int32_t count) {
  return static_cast<uint8_t>(static_cast<int32_t>(std::round(static_cast<float>(sum) / static_cast<float>(count))));
}

// Adds 16 bytes (sign- or zero-extended) to four int32x4 sums.
template <bool kSigned>
inline void accumulate16(const uint8_t* p, int32x4_t (&s)[4]) {
  int16x8_t lo, hi;
  neon_util::widen16_s16<kSigned>(vld1q_u8(p), &lo, &hi);
  s[0] = vaddw_s16(s[0], vget_low_s16(lo));
  s[1] = vaddw_high_s16(s[1], lo);
  s[2] = vaddw_s16(s[2], vget_low_s16(hi));
  s[3] = vaddw_high_s16(s[3], hi);
}

// round_half_away(float32(sum) / count) for 16 sums -> 16 bytes. The mean of
// in-range values is in range, so the saturating narrows keep it.
template <bool kSigned>
inline void store_means(const int32x4_t (&s)[4], float32x4_t count, uint8_t* out) {
  int32x4_t q[4];
  for (int k = 0; k < 4; ++k) q[k] = vcvtaq_s32_f32(vdivq_f32(vcvtq_f32_s32(s[k]), count));
  vst1q_u8(out, neon_util::narrow16<kSigned>(q));
}

template <bool kSigned>
void max_pixel(const uint8_t* const* taps, int t, int C, uint8_t* out) {
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    uint8x16_t m = vld1q_u8(taps[0] + c);
    for (int k = 1; k < t; ++k) {
      const uint8x16_t v = vld1q_u8(taps[k] + c);
      m = kSigned ? vreinterpretq_u8_s8(vmaxq_s8(vreinterpretq_s8_u8(m), vreinterpretq_s8_u8(v))) : vmaxq_u8(m, v);
    }
    vst1q_u8(out + c, m);
  }
  for (; c < C; ++c) {
    int32_t m = load_q(taps[0] + c, kSigned);
    for (int k = 1; k < t; ++k) {
      const int32_t v = load_q(taps[k] + c, kSigned);
      m = v > m ? v : m;
    }
    out[c] = static_cast<uint8_t>(m);
  }
}

template <bool kSigned>
void avg_pixel(const uint8_t* const* taps, int t, int C, int32_t count, int32_t pad_sum, uint8_t* out) {
  const float32x4_t fc = vdupq_n_f32(static_cast<float>(count));
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    int32x4_t s[4] = {vdupq_n_s32(pad_sum), vdupq_n_s32(pad_sum), vdupq_n_s32(pad_sum), vdupq_n_s32(pad_sum)};
    for (int k = 0; k < t; ++k) accumulate16<kSigned>(taps[k] + c, s);
    store_means<kSigned>(s, fc, out + c);
  }
  for (; c < C; ++c) {
    int32_t s = pad_sum;
    for (int k = 0; k < t; ++k) s += load_q(taps[k] + c, kSigned);
    out[c] = mean1(s, count);
  }
}

template <bool kSigned>
void pool_row_t(const PoolRowArgs& a, int oh, uint8_t* dst) {
  int i0, i1;
  valid_taps(oh, a.kh, a.stride_h, a.pad_h, a.dil_h, a.H, &i0, &i1);
  const int ih0 = oh * a.stride_h - a.pad_h;
  for (int ow = 0; ow < a.OW; ++ow) {
    int j0, j1;
    valid_taps(ow, a.kw, a.stride_w, a.pad_w, a.dil_w, a.W, &j0, &j1);
    const int iw0 = ow * a.stride_w - a.pad_w;
    int t = 0;
    for (int i = i0; i < i1; ++i) {
      for (int j = j0; j < j1; ++j) a.taps[t++] = a.src + (ih0 + i * a.dil_h) * a.sh + (iw0 + j * a.dil_w) * a.sw;
    }
    uint8_t* out = dst + static_cast<ptrdiff_t>(ow) * a.C;
    if (a.mode == PoolMode::kMax) {
      max_pixel<kSigned>(a.taps, t, a.C, out);
    } else {
      const bool include = a.mode == PoolMode::kAvgIncludePadding;
      const int32_t count = include ? a.kh * a.kw : t;
      const int32_t pad_sum = include ? (a.kh * a.kw - t) * a.zero_point : 0;
      avg_pixel<kSigned>(a.taps, t, a.C, count, pad_sum, out);
    }
  }
}

template <bool kSigned>
void global_avg_pool_t(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, int32_t* acc,
                       uint8_t* dst) {
  const int n = c1 - c0;
  const int32_t count = H * W;
  const float32x4_t fc = vdupq_n_f32(static_cast<float>(count));
  int c = 0;
  for (; c + 16 <= n; c += 16) {
    int32x4_t s[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int h = 0; h < H; ++h) {
      for (int w = 0; w < W; ++w) accumulate16<kSigned>(src + h * sh + w * sw + c0 + c, s);
    }
    store_means<kSigned>(s, fc, dst + c);
  }
  for (int k = c; k < n; ++k) acc[k] = 0;
  for (int h = 0; h < H; ++h) {
    for (int w = 0; w < W; ++w) {
      const uint8_t* p = src + h * sh + w * sw + c0;
      for (int k = c; k < n; ++k) acc[k] += load_q(p + k, kSigned);
    }
  }
  for (int k = c; k < n; ++k) dst[k] = mean1(acc[k], count);
}

}  // namespace

void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst) {
  MEGQ_DCHECK_POOL_ROW(a, oh, dst);
  if (a.is_signed) {
    pool_row_t<true>(a, oh, dst);
  } else {
    pool_row_t<false>(a, oh, dst);
  }
}

void global_avg_pool(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, bool is_signed,
                     int32_t* acc, uint8_t* dst) {
  if (is_signed) {
    global_avg_pool_t<true>(src, sh, sw, H, W, c0, c1, acc, dst);
  } else {
    global_avg_pool_t<false>(src, sh, sw, H, W, c0, c1, acc, dst);
  }
}

}  // namespace neon
}  // namespace megq
