// Portable depthwise conv kernels (contract: depthwise.h; scratch layout:
// depthwise_kernels.h). Plain weights C x T; exact int32 accumulation.
#include <cstring>

#include "megq/kernels/depthwise_kernels.h"
#include "megq/requantize.h"

namespace megq {
namespace scalar {

void widen_row(const uint8_t* src, ptrdiff_t sw, int W, int C_in, int multiplier, bool is_signed,
               int32_t zero_point, int pad_w, int Wp, int Cs, int16_t* dst) {
  MEGQ_DCHECK_WIDEN_ROW(src, W, C_in, multiplier, pad_w, Wp, Cs, dst);
  std::memset(dst, 0, static_cast<size_t>(Wp) * Cs * sizeof(int16_t));
  for (int w = 0; w < W; ++w) {
    const uint8_t* s = src + w * sw;
    int16_t* d = dst + static_cast<ptrdiff_t>(pad_w + w) * Cs;
    for (int c = 0; c < C_in; ++c) {
      const int32_t v = (is_signed ? static_cast<int8_t>(s[c]) : s[c]) - zero_point;
      for (int m = 0; m < multiplier; ++m) d[c * multiplier + m] = static_cast<int16_t>(v);
    }
  }
}

void depthwise_row(const DwRowArgs& a) {
  MEGQ_DCHECK_DEPTHWISE_ROW(a);
  const int T = a.KH * a.KW;
  for (int ow = 0; ow < a.OW; ++ow) {
    uint8_t* out = a.out + static_cast<ptrdiff_t>(ow) * a.C;
    for (int c = 0; c < a.C; ++c) {
      int32_t acc = a.bias[c];
      const int8_t* w = a.weights + static_cast<ptrdiff_t>(c) * T;
      for (int i = 0; i < a.KH; ++i) {
        const int16_t* row = a.rows[i];
        for (int j = 0; j < a.KW; ++j) {
          const ptrdiff_t pos = static_cast<ptrdiff_t>(ow) * a.stride_w + static_cast<ptrdiff_t>(j) * a.dil_w;
          acc += static_cast<int32_t>(row[pos * a.Cs + c]) * w[i * a.KW + j];
        }
      }
      out[c] = static_cast<uint8_t>(requantize_rha(acc, a.multiplier[c], a.zo, a.lo, a.hi));
    }
  }
}

}  // namespace scalar
}  // namespace megq
