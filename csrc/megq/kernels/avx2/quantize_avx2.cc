// AVX2 quantize / dequantize / requantize kernels (contract: quantize.h).
// Channel rows are converted 32 values at a time (true vdivps for quantize),
// and the NCHW <-> NHWC layout change is an 8x8 byte transpose through
// scratch. Tails use scalar code with the same float operations, so every
// element gets identical bytes whichever path handles it.
#include <cmath>

#include "megq/kernels/avx2/ops_avx2_util.h"
#include "megq/kernels/quantize_kernels.h"

namespace megq {
namespace avx2 {
namespace {

using namespace util;

// Quantizes P contiguous floats into P bytes; returns true if any was NaN.
bool quantize_row(const float* s, int P, const QuantizeParams& q, uint8_t* d) {
  const __m256 vs = _mm256_set1_ps(q.scale);
  const float flo = static_cast<float>(q.qmin - q.zero_point), fhi = static_cast<float>(q.qmax - q.zero_point);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  const __m256i z = _mm256_set1_epi32(q.zero_point);
  const bool is_signed = q.qmin < 0;
  __m256 nan = _mm256_setzero_ps();
  int p = 0;
  for (; p + 32 <= P; p += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 x = _mm256_loadu_ps(s + p + 8 * k);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
      r[k] = clamp_round_add(_mm256_div_ps(x, vs), lo, hi, z);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + p), pack32(r[0], r[1], r[2], r[3], is_signed));
  }
  for (; p + 8 <= P; p += 8) {
    const __m256 x = _mm256_loadu_ps(s + p);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    store8(d + p, pack8(clamp_round_add(_mm256_div_ps(x, vs), lo, hi, z), is_signed));
  }
  bool any_nan = _mm256_movemask_ps(nan) != 0;
  for (; p < P; ++p) {
    float v = s[p] / q.scale;
    if (v != v) {
      any_nan = true;
      v = 0.0f;
    }
    d[p] = static_cast<uint8_t>(clamp_round_add_1(v, flo, fhi, q.zero_point));
  }
  return any_nan;
}

// Three channel planes (an RGB image) -> P interleaved pixels of 3 bytes,
// without the transpose through scratch: eight pixels per step, each channel
// converted as in quantize_row, then the 24 bytes packed in registers.
// Returns true if any input was NaN.
bool quantize_3_channels(const float* src, ptrdiff_t src_c_stride, int P, const QuantizeParams& q, uint8_t* d) {
  const float* s0 = src;
  const float* s1 = src + src_c_stride;
  const float* s2 = src + 2 * src_c_stride;
  const __m256 vs = _mm256_set1_ps(q.scale);
  const float flo = static_cast<float>(q.qmin - q.zero_point), fhi = static_cast<float>(q.qmax - q.zero_point);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  const __m256i z = _mm256_set1_epi32(q.zero_point);
  const bool is_signed = q.qmin < 0;
  // After the packs each 128-bit lane holds its 4 pixels as c0 c0 c0 c0 c1 c1
  // c1 c1 c2 c2 c2 c2 c2' (c2 twice): gather them pixel by pixel into the
  // lane's low 12 bytes, then the two lanes' 12 bytes next to each other.
  const __m256i interleave = _mm256_setr_epi8(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, -1, -1, -1, -1,
                                              0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, -1, -1, -1, -1);
  const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
  __m256 nan = _mm256_setzero_ps();
  int p = 0;
  for (; p + 8 <= P; p += 8) {
    const __m256 x0 = _mm256_loadu_ps(s0 + p), x1 = _mm256_loadu_ps(s1 + p), x2 = _mm256_loadu_ps(s2 + p);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x1, x1, _CMP_UNORD_Q));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x2, x2, _CMP_UNORD_Q));
    const __m256i r0 = clamp_round_add(_mm256_div_ps(x0, vs), lo, hi, z);
    const __m256i r1 = clamp_round_add(_mm256_div_ps(x1, vs), lo, hi, z);
    const __m256i r2 = clamp_round_add(_mm256_div_ps(x2, vs), lo, hi, z);
    // Values are in the dtype's range: the saturating packs are exact.
    const __m256i w01 = _mm256_packs_epi32(r0, r1), w22 = _mm256_packs_epi32(r2, r2);
    const __m256i b = is_signed ? _mm256_packs_epi16(w01, w22) : _mm256_packus_epi16(w01, w22);
    const __m256i out = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(b, interleave), join);
    uint8_t* o = d + 3 * p;
    if (3 * (P - p) >= 32) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), out);  // the 8 bytes past 24 are rewritten next step
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(out));
      store8(o + 16, _mm256_extracti128_si256(out, 1));
    }
  }
  bool any_nan = _mm256_movemask_ps(nan) != 0;
  for (; p < P; ++p) {
    const float* x[3] = {s0 + p, s1 + p, s2 + p};
    for (int c = 0; c < 3; ++c) {
      float v = *x[c] / q.scale;
      if (v != v) {
        any_nan = true;
        v = 0.0f;
      }
      d[3 * p + c] = static_cast<uint8_t>(clamp_round_add_1(v, flo, fhi, q.zero_point));
    }
  }
  return any_nan;
}

// P contiguous bytes -> P floats (q - z) * scale.
template <bool kSigned>
void dequantize_row_t(const uint8_t* s, int P, float scale, int32_t zero_point, float* d) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i z = _mm256_set1_epi32(zero_point);
  int p = 0;
  for (; p + 8 <= P; p += 8) {
    const __m256i q = _mm256_sub_epi32(widen8(load8(s + p), kSigned), z);
    _mm256_storeu_ps(d + p, _mm256_mul_ps(_mm256_cvtepi32_ps(q), vs));
  }
  for (; p < P; ++p) {
    const int32_t q = kSigned ? static_cast<int8_t>(s[p]) : s[p];
    d[p] = static_cast<float>(q - zero_point) * scale;
  }
}

void dequantize_row(const uint8_t* s, int P, bool is_signed, float scale, int32_t zero_point, float* d) {
  if (is_signed) {
    dequantize_row_t<true>(s, P, scale, zero_point, d);
  } else {
    dequantize_row_t<false>(s, P, scale, zero_point, d);
  }
}

}  // namespace

bool quantize_block(const float* src, ptrdiff_t src_c_stride, int C, int P, const QuantizeParams& q,
                    uint8_t* dst, uint8_t* scratch) {
  if (C == 1) return quantize_row(src, P, q, dst);
  if (C == 3) return quantize_3_channels(src, src_c_stride, P, q, dst);
  bool nan = false;
  for (int c = 0; c < C; ++c) nan |= quantize_row(src + c * src_c_stride, P, q, scratch + static_cast<ptrdiff_t>(c) * P);
  transpose_bytes(scratch, P, C, P, dst, C);
  return nan;
}

void dequantize_block(const uint8_t* src, ptrdiff_t src_p_stride, int C, int P, bool is_signed, float scale,
                      int32_t zero_point, float* dst, ptrdiff_t dst_c_stride, uint8_t* scratch) {
  if (C == 1 && src_p_stride == 1) {
    dequantize_row(src, P, is_signed, scale, zero_point, dst);
    return;
  }
  transpose_bytes(src, src_p_stride, P, C, scratch, P);
  for (int c = 0; c < C; ++c) {
    dequantize_row(scratch + static_cast<ptrdiff_t>(c) * P, P, is_signed, scale, zero_point, dst + c * dst_c_stride);
  }
}

namespace {

template <bool kSi, bool kSo>
void requantize_rows_t(const uint8_t* src, ptrdiff_t src_stride, uint8_t* dst, ptrdiff_t dst_stride, int rows,
                       int64_t cols, const RequantizeParams& r) {
  const __m256 m = _mm256_set1_ps(r.multiplier);
  const float flo = static_cast<float>(r.lo - r.out_zero_point), fhi = static_cast<float>(r.hi - r.out_zero_point);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  const __m256i zi = _mm256_set1_epi32(r.in_zero_point), zo = _mm256_set1_epi32(r.out_zero_point);
  for (int i = 0; i < rows; ++i) {
    const uint8_t* s = src + i * src_stride;
    uint8_t* d = dst + i * dst_stride;
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      __m256i v[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i q = _mm256_sub_epi32(widen8(load8(s + j + 8 * k), kSi), zi);
        v[k] = clamp_round_add(_mm256_mul_ps(_mm256_cvtepi32_ps(q), m), lo, hi, zo);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + j), pack32(v[0], v[1], v[2], v[3], kSo));
    }
    for (; j + 8 <= cols; j += 8) {
      const __m256i q = _mm256_sub_epi32(widen8(load8(s + j), kSi), zi);
      store8(d + j, pack8(clamp_round_add(_mm256_mul_ps(_mm256_cvtepi32_ps(q), m), lo, hi, zo), kSo));
    }
    for (; j < cols; ++j) {
      const int32_t q = (kSi ? static_cast<int8_t>(s[j]) : s[j]) - r.in_zero_point;
      d[j] = static_cast<uint8_t>(clamp_round_add_1(static_cast<float>(q) * r.multiplier, flo, fhi, r.out_zero_point));
    }
  }
}

}  // namespace

void requantize_rows(const uint8_t* src, ptrdiff_t src_stride, uint8_t* dst, ptrdiff_t dst_stride, int rows,
                     int64_t cols, const RequantizeParams& r) {
  const bool out_signed = r.lo < 0;
  if (r.in_signed) {
    if (out_signed) {
      requantize_rows_t<true, true>(src, src_stride, dst, dst_stride, rows, cols, r);
    } else {
      requantize_rows_t<true, false>(src, src_stride, dst, dst_stride, rows, cols, r);
    }
  } else if (out_signed) {
    requantize_rows_t<false, true>(src, src_stride, dst, dst_stride, rows, cols, r);
  } else {
    requantize_rows_t<false, false>(src, src_stride, dst, dst_stride, rows, cols, r);
  }
}

}  // namespace avx2
}  // namespace megq
