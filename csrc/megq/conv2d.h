// int8 2-D convolution on NHWC activations, built on the GEMM engine.
//
// For output pixel p = (n, oy, ox) and output channel co of group g:
//   acc = sum_{ky,kx,ci} (x[n, iy, ix, g*Cg + ci] - z_x) * w[co, ci, ky, kx] + bias[co]
//   iy = oy*stride_h - pad_h + ky*dilation_h   (likewise ix)
// Taps that fall in the padding read the input zero point, so they add 0 (the
// padding value is real 0). Output: the GEMM contract (gemm.h, requantize.h).
//
// Weights (OIHW, as MegEngine and PyTorch store them) are packed once per
// group into the GEMM's panels with K ordered (ky, kx, ci), matching NHWC.
// Execution:
//   * 1x1, no padding: the input itself is the GEMM's A (no copy); stride s
//     turns into a row stride of s pixels, one output row at a time.
//   * otherwise: tiles of output pixels are gathered (im2col) into a per-thread
//     buffer sized to stay in cache, then multiplied; the full im2col matrix
//     is never built. Where the ISA has a gatherer (kernels/conv_kernels.h),
//     it writes the tile directly in the GEMM kernel's packed A form, so the
//     kernel does not copy it again.
//   * AVX-512 VNNI, x stride 1, Cin a multiple of 4, output rows of 16+
//     pixels (the 3x3 layers): per output row, the kernel_h input rows it
//     reads are copied once (padded, sign-flipped for the kernel) and the
//     kernel reads every pixel's taps in place from them (GemmArgs::a_segments).
#ifndef MEGQ_CONV2D_H_
#define MEGQ_CONV2D_H_

#include <memory>
#include <vector>

#include "megq/gemm.h"

namespace megq {

struct PackedConv2dWeights {
  int out_channels = 0, in_channels = 0, kernel_h = 0, kernel_w = 0, groups = 1;
  std::vector<std::unique_ptr<PackedGemmWeights>> group_weights;  // one per group
};

// w: Cout x (Cin/groups) x kh x kw int8, contiguous. options.bias / multiplier
// cover all Cout channels (multiplier_count 1 or Cout).
std::unique_ptr<PackedConv2dWeights> pack_conv2d_weights(const int8_t* w, int out_channels,
                                                         int in_channels_per_group, int kernel_h, int kernel_w,
                                                         int groups, const PackGemmOptions& options, Isa isa);

struct Conv2dInput {
  const uint8_t* data;
  int batch, height, width, channels;
  ptrdiff_t stride_n, stride_h, stride_w;  // bytes; channels are contiguous
};

struct Conv2dParams {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
};

// Output size along one axis (int64: a large padding can exceed int), or a
// value < 1 if the kernel does not fit.
int64_t conv_output_size(int in, int kernel, int stride, int pad, int dilation);

// Checks x's channel count, the stride / padding / dilation and the output
// size (limits.h) and returns the output height and width; throws
// ArgumentError naming the argument otherwise. conv2d() calls it too.
void conv2d_output_hw(const PackedConv2dWeights& packed, const Conv2dInput& x, const Conv2dParams& params,
                      OutputType out_type, int* oh, int* ow);

// Writes the N x OH x OW x Cout output (contiguous) to y. N = 0 writes nothing.
void conv2d(const PackedConv2dWeights& packed, const Conv2dInput& x, const Conv2dParams& params,
            const GemmOutput& output, uint8_t* y);

}  // namespace megq

#endif  // MEGQ_CONV2D_H_
