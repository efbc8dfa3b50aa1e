// AVX2 NHWC pooling kernels (contract: pooling.h). Vectorized across
// channels: max over 32 / 16 / 8 channels per instruction; averages sum
// 32 / 16 channels in int16 when the window cannot overflow it (kh * kw <=
// 128: 128 * 255 < 2^15), else 8 channels in int32, then
// round_half_away(float32(sum) / float32(count)) -- computed without a
// division for counts <= 1024 by an exactly equivalent reciprocal form (see
// mean8), with vdivps above. Channel tails are scalar with the same
// operations. Reads only the window's input taps.
#include <cmath>

#include "megq/kernels/avx2/ops_avx2_util.h"
#include "megq/kernels/pooling_kernels.h"

namespace megq {
namespace avx2 {
namespace {

using namespace util;

inline int32_t load_q(const uint8_t* p, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(*p)) : static_cast<int32_t>(*p);
}

inline uint8_t mean1(int32_t sum, float count) {
  return static_cast<uint8_t>(static_cast<int32_t>(std::round(static_cast<float>(sum) / count)));
}

template <bool kSigned>
void max_pixel(const uint8_t* const* taps, int t, int C, uint8_t* out) {
  int c = 0;
  for (; c + 32 <= C; c += 32) {
    __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(taps[0] + c));
    for (int k = 1; k < t; ++k) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(taps[k] + c));
      m = kSigned ? _mm256_max_epi8(m, v) : _mm256_max_epu8(m, v);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), m);
  }
  for (; c + 16 <= C; c += 16) {
    __m128i m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[0] + c));
    for (int k = 1; k < t; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[k] + c));
      m = kSigned ? _mm_max_epi8(m, v) : _mm_max_epu8(m, v);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), m);
  }
  for (; c + 8 <= C; c += 8) {
    __m128i m = load8(taps[0] + c);
    for (int k = 1; k < t; ++k) m = kSigned ? _mm_max_epi8(m, load8(taps[k] + c)) : _mm_max_epu8(m, load8(taps[k] + c));
    store8(out + c, m);
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

// round_half_away(float32(sum) / float32(count)) for 8 int32 sums with
// |sum| <= 255 * count. For count <= 1024 without a division: the float32
// quotient rounded half away equals the exactly rounded rational sum / count
// (a non-tie quotient lies at least 1 / (2 count) >= 2^-11 from a tie, far
// more than float32's error below 256), and so does
// trunc(sum * float32(1 / count) + copysign(0.5 + 2^-12, sum)): the product is
// within 2^-14 of sum / count, the 2^-12 nudge lifts exact ties over the
// boundary and cannot lift a non-tie over it. Checked exhaustively for every
// count <= 1024 and every sum in [-128 count, 255 count].
struct Mean {
  bool fast;
  __m256 scale;  // float32(1 / count) if fast, else float32(count)
  float count;
};

inline Mean make_mean(int32_t count) {
  Mean m;
  m.fast = count <= 1024;
  m.count = static_cast<float>(count);
  m.scale = _mm256_set1_ps(m.fast ? 1.0f / m.count : m.count);
  return m;
}

inline __m128i mean8(__m256i sum, const Mean& m, bool is_signed) {
  const __m256 v = _mm256_cvtepi32_ps(sum);
  __m256i q;
  if (m.fast) {
    const __m256 p = _mm256_mul_ps(v, m.scale);
    const __m256 sign = _mm256_and_ps(p, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))));
    q = _mm256_cvttps_epi32(_mm256_add_ps(p, _mm256_or_ps(sign, _mm256_set1_ps(0.500244140625f))));
  } else {
    q = round_half_away_small_epi32(_mm256_div_ps(v, m.scale));
  }
  return pack8(q, is_signed);
}

template <bool kSigned>
inline __m256i widen16(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return kSigned ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
}

template <bool kSigned>
inline void store_mean16(uint8_t* out, __m256i s16, const Mean& m) {
  const __m128i lo = mean8(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(s16)), m, kSigned);
  const __m128i hi = mean8(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1)), m, kSigned);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi64(lo, hi));
}

template <bool kSigned>
void avg_pixel(const uint8_t* const* taps, int t, int C, int32_t pad_sum, int32_t count_i, bool int16_ok,
               uint8_t* out) {
  const Mean m = make_mean(count_i);
  int c = 0;
  if (int16_ok) {  // kh * kw <= 128: |sum| <= 128 * 255 fits int16
    const __m256i pad16 = _mm256_set1_epi16(static_cast<int16_t>(pad_sum));
    for (; c + 32 <= C; c += 32) {
      __m256i s0 = pad16, s1 = pad16;
      for (int k = 0; k < t; ++k) {
        s0 = _mm256_add_epi16(s0, widen16<kSigned>(taps[k] + c));
        s1 = _mm256_add_epi16(s1, widen16<kSigned>(taps[k] + c + 16));
      }
      store_mean16<kSigned>(out + c, s0, m);
      store_mean16<kSigned>(out + c + 16, s1, m);
    }
    for (; c + 16 <= C; c += 16) {
      __m256i s0 = pad16;
      for (int k = 0; k < t; ++k) s0 = _mm256_add_epi16(s0, widen16<kSigned>(taps[k] + c));
      store_mean16<kSigned>(out + c, s0, m);
    }
  }
  const __m256i pad32 = _mm256_set1_epi32(pad_sum);
  for (; c + 8 <= C; c += 8) {
    __m256i s = pad32;
    for (int k = 0; k < t; ++k) s = _mm256_add_epi32(s, widen8(load8(taps[k] + c), kSigned));
    store8(out + c, mean8(s, m, kSigned));
  }
  for (; c < C; ++c) {
    int32_t s = pad_sum;
    for (int k = 0; k < t; ++k) s += load_q(taps[k] + c, kSigned);
    out[c] = mean1(s, static_cast<float>(count_i));
  }
}

}  // namespace

void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst) {
  MEGQ_DCHECK_POOL_ROW(a, oh, dst);
  int i0, i1;
  valid_taps(oh, a.kh, a.stride_h, a.pad_h, a.dil_h, a.H, &i0, &i1);
  const int ih0 = oh * a.stride_h - a.pad_h;
  const bool int16_ok = a.kh * a.kw <= 128;
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
      if (a.is_signed) {
        max_pixel<true>(a.taps, t, a.C, out);
      } else {
        max_pixel<false>(a.taps, t, a.C, out);
      }
    } else {
      const bool include = a.mode == PoolMode::kAvgIncludePadding;
      const int32_t count = include ? a.kh * a.kw : t;
      const int32_t pad_sum = include ? (a.kh * a.kw - t) * a.zero_point : 0;
      if (a.is_signed) {
        avg_pixel<true>(a.taps, t, a.C, pad_sum, count, int16_ok, out);
      } else {
        avg_pixel<false>(a.taps, t, a.C, pad_sum, count, int16_ok, out);
      }
    }
  }
}

void global_avg_pool(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, bool is_signed,
                     int32_t* acc, uint8_t* dst) {
  const int n = c1 - c0;
  const int n8 = n / 8 * 8;
  for (int c = 0; c < n; ++c) acc[c] = 0;
  for (int h = 0; h < H; ++h) {
    for (int w = 0; w < W; ++w) {
      const uint8_t* p = src + h * sh + w * sw + c0;
      int c = 0;
      for (; c < n8; c += 8) {
        __m256i* a = reinterpret_cast<__m256i*>(acc + c);
        _mm256_storeu_si256(a, _mm256_add_epi32(_mm256_loadu_si256(a), widen8(load8(p + c), is_signed)));
      }
      for (; c < n; ++c) acc[c] += load_q(p + c, is_signed);
    }
  }
  const float count = static_cast<float>(H * W);
  const Mean m = make_mean(H * W);
  int c = 0;
  for (; c < n8; c += 8) {
    store8(dst + c, mean8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c)), m, is_signed));
  }
  for (; c < n; ++c) dst[c] = mean1(acc[c], count);
}

}  // namespace avx2
}  // namespace megq
