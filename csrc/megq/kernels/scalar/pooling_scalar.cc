// Portable NHWC pooling kernels (contract: pooling.h).
#include <cmath>

#include "megq/kernels/pooling_kernels.h"

namespace megq {
namespace scalar {
namespace {

inline int32_t load_q(const uint8_t* p, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(*p)) : static_cast<int32_t>(*p);
}

inline uint8_t mean(int32_t sum, int32_t count) {
  return static_cast<uint8_t>(static_cast<int32_t>(std::round(static_cast<float>(sum) / static_cast<float>(count))));
}

}  // namespace

void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst) {
  MEGQ_DCHECK_POOL_ROW(a, oh, dst);
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
      for (int c = 0; c < a.C; ++c) {
        int32_t m = load_q(a.taps[0] + c, a.is_signed);
        for (int k = 1; k < t; ++k) {
          const int32_t v = load_q(a.taps[k] + c, a.is_signed);
          m = v > m ? v : m;
        }
        out[c] = static_cast<uint8_t>(m);
      }
    } else {
      const bool include = a.mode == PoolMode::kAvgIncludePadding;
      const int32_t count = include ? a.kh * a.kw : t;
      const int32_t pad_sum = include ? (a.kh * a.kw - t) * a.zero_point : 0;
      for (int c = 0; c < a.C; ++c) {
        int32_t s = pad_sum;
        for (int k = 0; k < t; ++k) s += load_q(a.taps[k] + c, a.is_signed);
        out[c] = mean(s, count);
      }
    }
  }
}

void global_avg_pool(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, bool is_signed,
                     int32_t* acc, uint8_t* dst) {
  const int n = c1 - c0;
  for (int c = 0; c < n; ++c) acc[c] = 0;
  for (int h = 0; h < H; ++h) {
    for (int w = 0; w < W; ++w) {
      const uint8_t* p = src + h * sh + w * sw + c0;
      for (int c = 0; c < n; ++c) acc[c] += load_q(p + c, is_signed);
    }
  }
  for (int c = 0; c < n; ++c) dst[c] = mean(acc[c], H * W);
}

}  // namespace scalar
}  // namespace megq
