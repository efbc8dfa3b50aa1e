// AArch64 NEON quantize / dequantize / requantize kernels (contract:
// quantize.h). Channel rows are converted 16 values at a time with the
// scalar path's float operations (a true fdiv for quantize; one fmul for
// dequantize and requantize), clamp in float, fcvtas (round half away from
// zero, the contract's rounding), + z, saturating narrows of in-range values.
// Row tails go through a 16-value stack buffer, so no byte or float outside
// the caller's ranges is touched. The NCHW <-> NHWC layout change is a plain
// byte transpose through scratch (memory-bound either way), st3 for three
// channels.
#include <arm_neon.h>

#include <cstring>

#include "megq/kernels/neon/ops_neon_util.h"
#include "megq/kernels/quantize_kernels.h"

namespace megq {
namespace neon {
namespace {

using neon_util::clamp_round_add;
using neon_util::narrow16;
using neon_util::widen16;

// Quantizes P contiguous floats into P bytes; returns true if any was NaN
// (its byte is then unspecified).
template <bool kSigned>
bool quantize_row(const float* s, int P, const QuantizeParams& q, uint8_t* d) {
  const float32x4_t vs = vdupq_n_f32(q.scale);
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(q.qmin - q.zero_point));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(q.qmax - q.zero_point));
  const int32x4_t z = vdupq_n_s32(q.zero_point);
  uint32x4_t ordered = vdupq_n_u32(~0u);  // lanes stay all-ones while every value compares equal to itself
  auto sixteen = [&](const float* ps, uint8_t* pd) {
    int32x4_t r[4];
    for (int k = 0; k < 4; ++k) {
      const float32x4_t x = vld1q_f32(ps + 4 * k);
      ordered = vandq_u32(ordered, vceqq_f32(x, x));
      r[k] = clamp_round_add(vdivq_f32(x, vs), lo, hi, z);
    }
    vst1q_u8(pd, narrow16<kSigned>(r));
  };
  int p = 0;
  for (; p + 16 <= P; p += 16) sixteen(s + p, d + p);
  if (p < P) {
    const size_t rest = static_cast<size_t>(P - p);
    float ts[16] = {};
    uint8_t td[16];
    std::memcpy(ts, s + p, rest * sizeof(float));
    sixteen(ts, td);
    std::memcpy(d + p, td, rest);
  }
  return vminvq_u32(ordered) == 0;
}

// P contiguous bytes -> P floats float32(q - z) * scale.
template <bool kSigned>
void dequantize_row(const uint8_t* s, int P, float scale, int32_t zero_point, float* d) {
  const float32x4_t vs = vdupq_n_f32(scale);
  const int32x4_t z = vdupq_n_s32(zero_point);
  auto sixteen = [&](const uint8_t* ps, float* pd) {
    int32x4_t q[4];
    widen16<kSigned>(vld1q_u8(ps), z, q);
    for (int k = 0; k < 4; ++k) vst1q_f32(pd + 4 * k, vmulq_f32(vcvtq_f32_s32(q[k]), vs));
  };
  int p = 0;
  for (; p + 16 <= P; p += 16) sixteen(s + p, d + p);
  if (p < P) {
    const size_t rest = static_cast<size_t>(P - p);
    uint8_t ts[16] = {};
    float td[16];
    std::memcpy(ts, s + p, rest);
    sixteen(ts, td);
    std::memcpy(d + p, td, rest * sizeof(float));
  }
}

// dst[j * ds + i] = src[i * ss + j] for i < rows, j < cols.
void transpose_bytes(const uint8_t* src, ptrdiff_t ss, int rows, int cols, uint8_t* dst, ptrdiff_t ds) {
  for (int i = 0; i < rows; ++i) {
    const uint8_t* s = src + i * ss;
    for (int j = 0; j < cols; ++j) dst[j * ds + i] = s[j];
  }
}

template <bool kSi, bool kSo>
void requantize_rows_t(const uint8_t* src, ptrdiff_t src_stride, uint8_t* dst, ptrdiff_t dst_stride, int rows,
                       int64_t cols, const RequantizeParams& r) {
  const float32x4_t m = vdupq_n_f32(r.multiplier);
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(r.lo - r.out_zero_point));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(r.hi - r.out_zero_point));
  const int32x4_t zi = vdupq_n_s32(r.in_zero_point), zo = vdupq_n_s32(r.out_zero_point);
  auto sixteen = [&](const uint8_t* ps, uint8_t* pd) {
    int32x4_t q[4];
    widen16<kSi>(vld1q_u8(ps), zi, q);
    for (int k = 0; k < 4; ++k) q[k] = clamp_round_add(vmulq_f32(vcvtq_f32_s32(q[k]), m), lo, hi, zo);
    vst1q_u8(pd, narrow16<kSo>(q));
  };
  for (int i = 0; i < rows; ++i) {
    const uint8_t* s = src + i * src_stride;
    uint8_t* d = dst + i * dst_stride;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) sixteen(s + j, d + j);
    if (j < cols) {
      const size_t rest = static_cast<size_t>(cols - j);
      uint8_t ts[16] = {}, td[16];
      std::memcpy(ts, s + j, rest);
      sixteen(ts, td);
      std::memcpy(d + j, td, rest);
    }
  }
}

}  // namespace

bool quantize_block(const float* src, ptrdiff_t src_c_stride, int C, int P, const QuantizeParams& q,
                    uint8_t* dst, uint8_t* scratch) {
  const bool is_signed = q.qmin < 0;
  auto row = [&](const float* s, uint8_t* d) {
    return is_signed ? quantize_row<true>(s, P, q, d) : quantize_row<false>(s, P, q, d);
  };
  if (C == 1) return row(src, dst);
  bool nan = false;
  for (int c = 0; c < C; ++c) nan |= row(src + c * src_c_stride, scratch + static_cast<ptrdiff_t>(c) * P);
  if (C == 3) {
    // RGB: st3 interleaves three rows of 16 bytes into 16 pixels.
    int p = 0;
    for (; p + 16 <= P; p += 16) {
      const uint8x16x3_t v = {{vld1q_u8(scratch + p), vld1q_u8(scratch + P + p), vld1q_u8(scratch + 2 * P + p)}};
      vst3q_u8(dst + 3 * p, v);
    }
    for (; p < P; ++p) {
      for (int c = 0; c < 3; ++c) dst[3 * p + c] = scratch[c * P + p];
    }
    return nan;
  }
  transpose_bytes(scratch, P, C, P, dst, C);
  return nan;
}

void dequantize_block(const uint8_t* src, ptrdiff_t src_p_stride, int C, int P, bool is_signed, float scale,
                      int32_t zero_point, float* dst, ptrdiff_t dst_c_stride, uint8_t* scratch) {
  auto row = [&](const uint8_t* s, float* d) {
    if (is_signed) {
      dequantize_row<true>(s, P, scale, zero_point, d);
    } else {
      dequantize_row<false>(s, P, scale, zero_point, d);
    }
  };
  if (C == 1 && src_p_stride == 1) {
    row(src, dst);
    return;
  }
  transpose_bytes(src, src_p_stride, P, C, scratch, P);
  for (int c = 0; c < C; ++c) row(scratch + static_cast<ptrdiff_t>(c) * P, dst + c * dst_c_stride);
}

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

}  // namespace neon
}  // namespace megq
