// Drivers for quantize / dequantize / requantize: argument checks, the split
// of the tensor into blocks for the kernels and the thread pool.
#include "megq/quantize.h"

#include <algorithm>
#include <atomic>
#include <string>

#include "megq/aligned_buffer.h"
#include "megq/qparams.h"

namespace megq {

QuantizeIsaEntry quantize_entry(Isa isa) {
  switch (isa) {
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2:
    case Isa::kAvx512Vnni:  // AVX2 serves AVX-512 machines too (memory-bound kernels)
      return {avx2::quantize_block, avx2::dequantize_block, avx2::requantize_rows};
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon:
    case Isa::kNeonDot:
      return {neon::quantize_block, neon::dequantize_block, neon::requantize_rows};
#endif
    default:
      return {scalar::quantize_block, scalar::dequantize_block, scalar::requantize_rows};
  }
}

namespace {

void check_dims(int N, int C, int H, int W) {
  if (N < 0 || C < 1 || H < 0 || W < 0) {
    throw ArgumentError("x: expected N, H, W >= 0 and C >= 1, got N=" + std::to_string(N) + " C=" +
                        std::to_string(C) + " H=" + std::to_string(H) + " W=" + std::to_string(W));
  }
}

// Positions per block: about 32 KiB of output bytes, a multiple of 8.
int block_positions(int C, int64_t P) {
  const int64_t want = std::max<int64_t>(8, (32 * 1024 / C) / 8 * 8);
  return static_cast<int>(std::min<int64_t>(P, want));
}

}  // namespace

void quantize_nchw_to_nhwc(const float* x, int N, int C, int H, int W, ptrdiff_t sn, ptrdiff_t sc, ptrdiff_t sh,
                           float scale, int32_t zero_point, bool out_signed, uint8_t* y) {
  check_dims(N, C, H, W);
  check_scale("scale", scale);
  check_zero_point("zero_point", out_signed, zero_point);
  if (N == 0 || H == 0 || W == 0) return;
  const QuantizeIsaEntry entry = quantize_entry(active_isa());
  const QuantizeParams q{scale, zero_point, qmin_of(out_signed), qmax_of(out_signed)};
  // A row of the kernel's view: one image (H and W merge) or one image row.
  const bool merge = H == 1 || sh == W;
  const int64_t rows = merge ? N : static_cast<int64_t>(N) * H;
  const int64_t P = merge ? static_cast<int64_t>(H) * W : W;
  const int pb = block_positions(C, P);
  const int64_t blocks_per_row = (P + pb - 1) / pb;
  std::atomic<bool> nan(false);
  parallel_units(rows * blocks_per_row, 5.0 * pb * C, [&](int64_t b0, int64_t b1) {
    thread_local AlignedBuffer scratch;
    scratch.reserve(static_cast<size_t>(pb) * C);
    bool local_nan = false;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r = b / blocks_per_row;
      const int64_t p0 = (b % blocks_per_row) * pb;
      const int count = static_cast<int>(std::min<int64_t>(pb, P - p0));
      const float* src;
      if (merge) {
        src = x + r * sn + p0;
      } else {
        const int64_t n = r / H, h = r % H;
        src = x + n * sn + h * sh + p0;
      }
      uint8_t* dst = y + (r * P + p0) * C;
      local_nan |= entry.quantize_block(src, sc, C, count, q, dst, scratch.as<uint8_t>());
    }
    if (local_nan) nan.store(true);
  });
  if (nan.load()) {
    throw ArgumentError("x: contains NaN, which has no quantized value (replace or mask NaNs before quantizing)");
  }
}

void dequantize_nhwc_to_nchw(const uint8_t* qd, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh,
                             ptrdiff_t sw, bool is_signed, float scale, int32_t zero_point, float* y) {
  check_dims(N, C, H, W);
  check_scale("scale", scale);
  check_zero_point("zero_point", is_signed, zero_point);
  if (N == 0 || H == 0 || W == 0) return;
  const QuantizeIsaEntry entry = quantize_entry(active_isa());
  const bool merge = H == 1 || sh == static_cast<ptrdiff_t>(W) * sw;
  const int64_t rows = merge ? N : static_cast<int64_t>(N) * H;
  const int64_t P = merge ? static_cast<int64_t>(H) * W : W;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int pb = block_positions(C, P);
  const int64_t blocks_per_row = (P + pb - 1) / pb;
  parallel_units(rows * blocks_per_row, 5.0 * pb * C, [&](int64_t b0, int64_t b1) {
    thread_local AlignedBuffer scratch;
    scratch.reserve(static_cast<size_t>(pb) * C);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r = b / blocks_per_row;
      const int64_t p0 = (b % blocks_per_row) * pb;
      const int count = static_cast<int>(std::min<int64_t>(pb, P - p0));
      const uint8_t* src;
      float* dst;
      if (merge) {
        src = qd + r * sn + p0 * sw;
        dst = y + r * C * plane + p0;
      } else {
        const int64_t n = r / H, h = r % H;
        src = qd + n * sn + h * sh + p0 * sw;
        dst = y + n * C * plane + h * W + p0;
      }
      entry.dequantize_block(src, sw, C, count, is_signed, scale, zero_point, dst, plane, scratch.as<uint8_t>());
    }
  });
}

void requantize(const uint8_t* src, int64_t count, bool in_signed, float in_scale, int32_t in_zero_point,
                bool out_signed, float out_scale, int32_t out_zero_point, uint8_t* dst) {
  check_scale("in_scale", in_scale);
  check_scale("out_scale", out_scale);
  check_zero_point("in_zero_point", in_signed, in_zero_point);
  check_zero_point("out_zero_point", out_signed, out_zero_point);
  if (count <= 0) return;
  const QuantizeIsaEntry entry = quantize_entry(active_isa());
  const RequantizeParams r{in_signed, in_zero_point, ratio_multiplier(in_scale, out_scale), out_zero_point,
                           qmin_of(out_signed), qmax_of(out_signed)};
  constexpr int64_t kChunk = 64 * 1024;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  parallel_units(chunks, 2.0 * kChunk, [&](int64_t c0, int64_t c1) {
    const int64_t b = c0 * kChunk, e = std::min(count, c1 * kChunk);
    entry.requantize_rows(src + b, 0, dst + b, 0, 1, e - b, r);
  });
}

}  // namespace megq
