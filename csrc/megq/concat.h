// Concatenation along the channel (last) axis of quantized tensors with
// different qparams (MegEngine Concat on quantized inputs: each input is
// requantized to the output's qparams, as MegEngine's quantized Concat does).
//
//   y[p, off_i + c] = clamp(round_half_away(float32(x_i[p, c] - z_i) * M_i) + z_o, qmin, qmax)
//   M_i = float32(s_i) / float32(s_o)
//
// An input whose (scale, zero point, dtype) equal the output's is copied
// (the formula is exactly the identity there).
#ifndef MEGQ_CONCAT_H_
#define MEGQ_CONCAT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace megq {

struct ConcatInput {
  const uint8_t* data;   // P rows of channels bytes, row p at data + p * row_stride
  ptrdiff_t row_stride;  // bytes
  int channels;
  float scale;
  int32_t zero_point;
  bool is_signed;
};

// y: contiguous P x sum(channels).
void concat_channels(const std::vector<ConcatInput>& inputs, int64_t P, float out_scale, int32_t out_zero_point,
                     bool out_signed, uint8_t* y);

}  // namespace megq

#endif  // MEGQ_CONCAT_H_
