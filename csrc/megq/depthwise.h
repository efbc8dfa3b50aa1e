// Depthwise conv2d on NHWC int8/uint8 activations (groups == input channels,
// channel multiplier >= 1), weights packed once.
//
//   output channel o reads input channel o / multiplier;
//   acc[n, oh, ow, o] = sum_{i, j} (x[n, ih, iw, o / m] - z_x) * w[o, i, j] + b[o]   (exact, int32)
//     ih = oh * stride_h - pad_h + i * dil_h (same for iw); padding taps read z_x,
//     i.e. contribute 0;
//   y = clamp(round_half_away(float32(acc) * M[o]) + z_y, lo, hi)   (requantize.h;
//     M per tensor or per output channel; fused ReLU / ReLU6 through lo / hi).
//   OH = (H + 2 pad_h - ((KH - 1) dil_h + 1)) / stride_h + 1 (floor).
//
// Weights are int8 (narrow range [-127, 127] by default; -128 allowed with
// narrow_range = false, and exact). Packing proves, per output channel, that
// max|x - z_x| * sum |w[o]| + |b[o]| <= 2^31 - 1, so every ISA path is exact
// (AVX2: vpmaddwd on int16 (x - z_x) in [-255, 255] times int16 weights; a pair
// sum is at most 2 * 255 * 128, never the vpmaddwd overflow case).
#ifndef MEGQ_DEPTHWISE_H_
#define MEGQ_DEPTHWISE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "megq/aligned_buffer.h"
#include "megq/isa.h"
#include "megq/kernels/depthwise_kernels.h"
#include "megq/kernels/gemm_kernels.h"  // OutputType

namespace megq {

struct PackedDepthwiseWeights {
  Isa isa;
  int C_in = 0, multiplier = 1, C_out = 0, KH = 0, KW = 0;
  int Cs = 0;  // C_out rounded up to kDwTile
  bool input_signed = true;
  int32_t input_zero_point = 0;
  bool per_channel = false;
  AlignedBuffer packed;           // ISA layout (depthwise_kernels.h); empty for scalar
  AlignedBuffer weight;           // int8 C_out x KH x KW (as given)
  AlignedBuffer bias;             // int32 C_out
  AlignedBuffer multiplier_values;  // float C_out (per-tensor: C_out copies)
};

struct PackDepthwiseOptions {
  const int32_t* bias = nullptr;      // C_out values or null
  const float* multiplier = nullptr;  // 1 or C_out values (required)
  int multiplier_count = 0;
  bool input_signed = true;
  int32_t input_zero_point = 0;
  bool narrow_range = true;
};

// w: C_out x KH x KW int8, contiguous. C_out = C_in * multiplier.
std::unique_ptr<PackedDepthwiseWeights> pack_depthwise_weights(const int8_t* w, int C_in, int multiplier, int KH,
                                                               int KW, const PackDepthwiseOptions& o, Isa isa);

struct DepthwiseParams {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  OutputType out_type = OutputType::kInt8;
  int32_t zero_point = 0, min = -128, max = 127;
};

// Output size along one axis; throws ArgumentError for bad parameters.
int depthwise_output_size(int size, int k, int stride, int pad, int dil, const char* axis);

// x: N x H x W x C_in, (n, h, w, c) at x[n*sn + h*sh + w*sw + c] (bytes). y:
// contiguous N x OH x OW x C_out.
void depthwise_conv2d(const PackedDepthwiseWeights& p, const uint8_t* x, int N, int H, int W, ptrdiff_t sn,
                      ptrdiff_t sh, ptrdiff_t sw, const DepthwiseParams& dp, uint8_t* y);

}  // namespace megq

#endif  // MEGQ_DEPTHWISE_H_
