// AVX2 NHWC pooling kernels (contract: pooling.h). Vectorized across
// channels: max over 32 / 16 / 8 channels per instruction; averages sum 16
// channels in int16 when the window cannot overflow it (kh * kw <= 128:
// 128 * 255 < 2^15), else 8 channels in int32, then one float32 division
// (vdivps) and round half away from zero. Channel tails are scalar with the
// same operations. Reads only the window's input taps.
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

// sum (int32 x 8) / count -> 8 bytes.
inline __m128i mean8(__m256i sum, __m256 count, bool is_signed) {
  return pack8(round_half_away_small_epi32(_mm256_div_ps(_mm256_cvtepi32_ps(sum), count)), is_signed);
}

template <bool kSigned>
void avg_pixel(const uint8_t* const* taps, int t, int C, int32_t pad_sum, int32_t count_i, bool int16_ok,
               uint8_t* out) {
  const __m256 count = _mm256_set1_ps(static_cast<float>(count_i));
  int c = 0;
  if (int16_ok) {
    const __m256i pad16 = _mm256_set1_epi16(static_cast<int16_t>(pad_sum));
    for (; c + 16 <= C; c += 16) {
      __m256i s = pad16;
      for (int k = 0; k < t; ++k) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[k] + c));
        s = _mm256_add_epi16(s, kSigned ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
      }
      const __m128i lo = mean8(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(s)), count, kSigned);
      const __m128i hi = mean8(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s, 1)), count, kSigned);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm_unpacklo_epi64(lo, hi));
    }
  }
  const __m256i pad32 = _mm256_set1_epi32(pad_sum);
  for (; c + 8 <= C; c += 8) {
    __m256i s = pad32;
    for (int k = 0; k < t; ++k) s = _mm256_add_epi32(s, widen8(load8(taps[k] + c), kSigned));
    store8(out + c, mean8(s, count, kSigned));
  }
  for (; c < C; ++c) {
    int32_t s = pad_sum;
    for (int k = 0; k < t; ++k) s += load_q(taps[k] + c, kSigned);
    out[c] = mean1(s, static_cast<float>(count_i));
  }
}

}  // namespace

void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst) {
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
  const __m256 vc = _mm256_set1_ps(count);
  int c = 0;
  for (; c < n8; c += 8) {
    store8(dst + c, mean8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c)), vc, is_signed));
  }
  for (; c < n; ++c) dst[c] = mean1(acc[c], count);
}

}  // namespace avx2
}  // namespace megq
