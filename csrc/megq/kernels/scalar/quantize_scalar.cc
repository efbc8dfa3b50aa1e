// Portable quantize / dequantize / requantize kernels (contract: quantize.h).
#include <cmath>

#include "megq/kernels/quantize_kernels.h"

namespace megq {
namespace scalar {
namespace {

inline int32_t load_q(const uint8_t* p, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(*p)) : static_cast<int32_t>(*p);
}

// clamp in float to [lo, hi] (integers), then round half away from zero.
inline int32_t clamp_round(float v, float lo, float hi) {
  v = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<int32_t>(std::round(v));
}

}  // namespace

bool quantize_block(const float* src, ptrdiff_t src_c_stride, int C, int P, const QuantizeParams& q,
                    uint8_t* dst, uint8_t* /*scratch*/) {
  const float lo = static_cast<float>(q.qmin - q.zero_point), hi = static_cast<float>(q.qmax - q.zero_point);
  bool nan = false;
  for (int c = 0; c < C; ++c) {
    const float* s = src + c * src_c_stride;
    for (int p = 0; p < P; ++p) {
      float v = s[p] / q.scale;
      if (v != v) {
        nan = true;
        v = 0.0f;
      }
      dst[static_cast<ptrdiff_t>(p) * C + c] = static_cast<uint8_t>(clamp_round(v, lo, hi) + q.zero_point);
    }
  }
  return nan;
}

void dequantize_block(const uint8_t* src, ptrdiff_t src_p_stride, int C, int P, bool is_signed, float scale,
                      int32_t zero_point, float* dst, ptrdiff_t dst_c_stride, uint8_t* /*scratch*/) {
  for (int p = 0; p < P; ++p) {
    const uint8_t* s = src + p * src_p_stride;
    for (int c = 0; c < C; ++c) {
      dst[c * dst_c_stride + p] = static_cast<float>(load_q(s + c, is_signed) - zero_point) * scale;
    }
  }
}

void requantize_rows(const uint8_t* src, ptrdiff_t src_stride, uint8_t* dst, ptrdiff_t dst_stride, int rows,
                     int64_t cols, const RequantizeParams& r) {
  const float lo = static_cast<float>(r.lo - r.out_zero_point), hi = static_cast<float>(r.hi - r.out_zero_point);
  for (int i = 0; i < rows; ++i) {
    const uint8_t* s = src + i * src_stride;
    uint8_t* d = dst + i * dst_stride;
    for (int64_t j = 0; j < cols; ++j) {
      const float v = static_cast<float>(load_q(s + j, r.in_signed) - r.in_zero_point) * r.multiplier;
      d[j] = static_cast<uint8_t>(clamp_round(v, lo, hi) + r.out_zero_point);
    }
  }
}

}  // namespace scalar
}  // namespace megq
