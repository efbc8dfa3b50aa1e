// The interface between megq's conv2d driver (csrc/megq/conv2d.cc) and the
// per-ISA patch gathering (im2col) kernels.
//
// im2col_packed writes, for each of `count` output pixels starting at flat
// index pixel_begin (n * out_h * out_w + oy * out_w + ox), one row of the
// GEMM's A already in the form the ISA's GEMM kernel reads (GemmArgs::a_packed:
// Kp elements per row, K ordered (ky, kx, ci) like the packed weights):
//   avx512vnni (bytes, AInput::kUnsigned): element (ky*kernel_w + kx)*channels
//     + ci = x[n, iy, ix, ci] ^ flip, or pad_value (the input zero point ^
//     flip) where (iy, ix) is in the padding;
//   avx2 (int16, AInput::kSubtractZeroPoint): x[n, iy, ix, ci] - zero_point
//     (x read as int8 or uint8 per input_signed), or 0 in the padding;
//   elements [K, Kp) = 0 (the weights are 0 there too).
// dst must hold count * Kp elements plus 64 bytes of slack (a kernel may store
// whole vectors past a row's end before the next row overwrites them). No byte
// outside the image is read.
#ifndef MEGQ_KERNELS_CONV_KERNELS_H_
#define MEGQ_KERNELS_CONV_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace megq {

struct Im2colArgs {
  const uint8_t* x;  // image 0, first channel of the group
  ptrdiff_t stride_n, stride_h, stride_w;  // bytes
  int height, width, channels;             // channels: bytes per tap (of the group)
  int kernel_h, kernel_w, stride_y, stride_x, pad_y, pad_x, dilation_y, dilation_x;
  int out_h, out_w;
  uint8_t pad_value, flip;  // avx512vnni
  bool input_signed;        // avx2
  int32_t zero_point;       // avx2
  int K, Kp;
};

// band_rows (avx512vnni; stride_x == 1, dilation_x == 1, pixels contiguous):
// for output row oy of image n, the kernel_h input rows its taps read, each as
// out_w + kernel_w - 1 pixels of `channels` bytes starting at input column
// -pad_x, x ^ flip, pad_value outside the image; row ky at
// dst + ky * band_row_bytes. Output pixel ox's taps of row ky are then the
// kernel_w * channels bytes at dst + ky * band_row_bytes + ox * channels: the
// GEMM reads them in place as kernel_h segments (GemmArgs::a_segments)
// instead of one gathered row per pixel. dst needs 64 bytes of slack.
namespace avx512vnni {
void im2col_packed(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst);
void band_rows(const Im2colArgs& args, int n, int oy, uint8_t* dst, ptrdiff_t band_row_bytes);
}
// im2col_u7 (avx2): the same rows in the 7-bit form of the AVX2 GEMM
// (GemmArgs::a_packed_u7): Kp_u7 bytes per row (K padded to 4), element k =
// the input byte x[n, iy, ix, ci] as stored, or the zero point's byte in the
// padding (bias_u7 folds z_a * sum w over every tap, padding included), 0 in
// [K, Kp_u7). Returns true iff every byte written is < 128; on false the
// rows are unusable (it may stop early) and the caller gathers the int16 form.
namespace avx2 {
void im2col_packed(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst);
bool im2col_u7(const Im2colArgs& args, int Kp_u7, int pixel_begin, int count, uint8_t* dst);
}

}  // namespace megq

#endif  // MEGQ_KERNELS_CONV_KERNELS_H_
