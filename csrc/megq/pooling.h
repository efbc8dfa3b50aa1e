// NHWC pooling on int8/uint8 activations (MegEngine semantics, its
// dnn/src/naive/pooling/opr_impl.cpp). The scale and zero point are
// unchanged from input to output.
//
// Windows: output (oh, ow) covers input rows oh * stride_h - pad_h + i * dil_h
// (i < kh) and the same for columns; OH = (H + 2 pad_h - ((kh - 1) dil_h + 1))
// / stride_h + 1 (floor). Every window must contain at least one input tap.
//
//   max:  the integer max over the window's input taps (padding never wins).
//   average (count excluding padding, MegEngine's default
//   "average_count_exclude_padding"):
//         sum = int32 sum of the raw q over the window's input taps,
//         count = number of those taps,
//         y = round_half_away(float32(sum) / float32(count))   (one float32 division)
//   average including padding (MegEngine "average"): each padding tap reads the
//         zero point z (the quantized 0.0), sum += n_pad * z, count = kh * kw.
//   global average: sum over H x W, count = H * W.
// The mean of values in the dtype's range stays in range (no clamp needed).
// float32(sum) is the int32 sum rounded to nearest-even (exact below 2^24),
// and the float32 division is what MegEngine's naive pooler computes. For
// count < 2^16 the result also equals the exactly rounded integer quotient
// round_half_away(sum / count) (a non-tie quotient is at least 1 / (2 count)
// away from a tie, more than float32's half ulp below 256). The int32 sum
// cannot overflow: windows and images are limited to 2^31 / 255 positions.
#ifndef MEGQ_POOLING_H_
#define MEGQ_POOLING_H_

#include <cstddef>
#include <cstdint>

#include "megq/kernels/pooling_kernels.h"

namespace megq {

struct Pool2dParams {
  int kh = 1, kw = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dil_h = 1, dil_w = 1;
  PoolMode mode = PoolMode::kMax;
};

// Output size for one spatial axis; throws ArgumentError naming the argument
// when the parameters are invalid or a window would hold no input tap.
int pool_output_size(int size, int k, int stride, int pad, int dil, const char* axis);

// x: N x H x W x C, (n, h, w, c) at x[n*sn + h*sh + w*sw + c] (bytes). y:
// contiguous N x OH x OW x C.
void pool2d(const uint8_t* x, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw,
            bool is_signed, int32_t zero_point, const Pool2dParams& p, uint8_t* y);

// y: contiguous N x C (the N x 1 x 1 x C result).
void global_avg_pool2d(const uint8_t* x, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw,
                       bool is_signed, uint8_t* y);

}  // namespace megq

#endif  // MEGQ_POOLING_H_
