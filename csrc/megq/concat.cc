// Driver for the channel concat: checks, per-input requantization (through the
// requantize kernels of quantize.h) or copies, threads over position blocks.
#include "megq/concat.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "megq/isa.h"
#include "megq/qparams.h"
#include "megq/quantize.h"

namespace megq {

void concat_channels(const std::vector<ConcatInput>& inputs, int64_t P, float out_scale, int32_t out_zero_point,
                     bool out_signed, uint8_t* y) {
  if (inputs.empty()) throw ArgumentError("inputs: expected at least one tensor");
  check_scale("out_scale", out_scale);
  check_zero_point("out_zero_point", out_signed, out_zero_point);
  int64_t total = 0;
  std::vector<RequantizeParams> params(inputs.size());
  std::vector<bool> copy(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ConcatInput& in = inputs[i];
    const std::string idx = "[" + std::to_string(i) + "]";
    if (in.channels < 1) throw ArgumentError("inputs" + idx + ": expected at least one channel");
    check_scale("scales" + idx, in.scale);
    check_zero_point("zero_points" + idx, in.is_signed, in.zero_point);
    params[i] = RequantizeParams{in.is_signed, in.zero_point, ratio_multiplier(in.scale, out_scale), out_zero_point,
                                 qmin_of(out_signed), qmax_of(out_signed)};
    copy[i] = in.scale == out_scale && in.zero_point == out_zero_point && in.is_signed == out_signed;
    total += in.channels;
  }
  if (P <= 0) return;
  const QuantizeIsaEntry entry = quantize_entry(active_isa());
  const int64_t block = std::max<int64_t>(1, 16384 / total);
  const int64_t blocks = (P + block - 1) / block;
  parallel_units(blocks, 2.0 * block * total, [&](int64_t b0, int64_t b1) {
    const int64_t p0 = b0 * block, p1 = std::min(P, b1 * block);
    const int rows = static_cast<int>(p1 - p0);
    int64_t off = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const ConcatInput& in = inputs[i];
      const uint8_t* src = in.data + p0 * in.row_stride;
      uint8_t* dst = y + p0 * total + off;
      if (copy[i]) {
        for (int r = 0; r < rows; ++r) std::memcpy(dst + r * total, src + r * in.row_stride, in.channels);
      } else {
        entry.requantize_rows(src, in.row_stride, dst, total, rows, in.channels, params[i]);
      }
      off += in.channels;
    }
  });
}

}  // namespace megq
