// AArch64 Advanced SIMD GEMM kernel without the dot product extension
// (compiled with -march=armv8-a only here). Exact for every input.
//
// Why not smull + smlal + sadalp: that scheme adds two int8 x int8 products in
// an int16 lane before widening, and (-128)(-128) + (-128)(-128) = 32768 does
// not fit. megq accepts -128 weights (narrow_range=False) and activations
// with zero points, so every product is widened to int32 before any sum:
//   * each row tile of A is copied into scratch as int16 (a - z_a), in
//     [-255, 255] (this is the "kSubtractZeroPoint" input mode; the copy also
//     means no byte beyond a caller's row is ever read);
//   * weights stay int8 in the packed panels (half the bytes of pre-widened
//     int16) and are widened with sxtl once per k, for all rows of the tile;
//   * smlal / smlal2 by lane (vmlal_laneq_s16, vmlal_high_laneq_s16) multiply
//     four int16 weights by one int16 activation into four int32 lanes.
// Every product fits in int32 exactly; the sums wrap modulo 2^32 like the
// other paths, and packing guarantees that the true sums fit.
//
// Layout: nr = 16, kr = 1 (the 16 weights of one k are contiguous), int8.
// Register tile: up to 4 rows x 1 panel (16 int32x4 accumulators, 2 widened
// weight vectors, 4 A vectors of 8 k); few-row tiles take 2 or 4 panels at once
// so that a GEMV still has 16 independent accumulators.
// Epilogue: epilogue_neon.h (shared with the neondot kernel).
#include <arm_neon.h>

#include "megq/kernels/gemm_block_loop.h"
#include "megq/kernels/gemm_kernels.h"
#include "megq/kernels/neon/epilogue_neon.h"

namespace megq {
namespace neon {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 16;

#define MEGQ_INLINE inline __attribute__((always_inline))

// Widens rows [m, m + rows) of A to int16 (a - z_a), Kp (= K) entries per row.
void pack_a_rows(const GemmArgs& g, int m, int rows, int16_t* dst) {
  const int16x8_t zp = vdupq_n_s16(static_cast<int16_t>(g.a_zero_point));
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = g.a + (m + r) * g.a_stride;
    int16_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    int k = 0;
    for (; k + 16 <= g.K; k += 16) {
      const uint8x16_t bytes = vld1q_u8(src + k);
      int16x8_t lo, hi;
      if (g.a_signed) {
        const int8x16_t s = vreinterpretq_s8_u8(bytes);
        lo = vmovl_s8(vget_low_s8(s));
        hi = vmovl_high_s8(s);
      } else {
        lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(bytes)));
        hi = vreinterpretq_s16_u16(vmovl_high_u8(bytes));
      }
      vst1q_s16(d + k, vsubq_s16(lo, zp));
      vst1q_s16(d + k + 8, vsubq_s16(hi, zp));
    }
    for (; k < g.K; ++k) {  // tail: byte by byte, never past the row
      const int32_t x = g.a_signed ? static_cast<int8_t>(src[k]) : src[k];
      d[k] = static_cast<int16_t>(x - g.a_zero_point);
    }
  }
}

// One k step with activation lane L of a[r] (L is an immediate of smlal).
template <int L, int ROWS, int NP>
MEGQ_INLINE void step(int32x4_t (&acc)[ROWS][4 * NP], const int16x8_t (&a)[ROWS], const int8_t* b,
                      size_t panel_bytes) {
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    const int8x16_t wb = vld1q_s8(b + p * panel_bytes);
    const int16x8_t w0 = vmovl_s8(vget_low_s8(wb));
    const int16x8_t w1 = vmovl_high_s8(wb);
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; ++r) {
      acc[r][4 * p + 0] = vmlal_laneq_s16(acc[r][4 * p + 0], vget_low_s16(w0), a[r], L);
      acc[r][4 * p + 1] = vmlal_high_laneq_s16(acc[r][4 * p + 1], w0, a[r], L);
      acc[r][4 * p + 2] = vmlal_laneq_s16(acc[r][4 * p + 2], vget_low_s16(w1), a[r], L);
      acc[r][4 * p + 3] = vmlal_high_laneq_s16(acc[r][4 * p + 3], w1, a[r], L);
    }
  }
}

// ROWS x (NP panels) register tile over the whole K.
template <int ROWS, int NP>
void tile(const GemmArgs& g, const int16_t* a_packed, int row0, int panel) {
  int32x4_t acc[ROWS][4 * NP];
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < 4 * NP; ++j) acc[r][j] = vdupq_n_s32(0);

  const int8_t* b = reinterpret_cast<const int8_t*>(g.packed + panel * g.panel_bytes);
  const size_t pb = g.panel_bytes;
  int k = 0;
  for (; k + 8 <= g.K; k += 8) {
    int16x8_t a[ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; ++r) a[r] = vld1q_s16(a_packed + r * g.Kp + k);
    const int8_t* bk = b + k * kNR;
    step<0, ROWS, NP>(acc, a, bk + 0 * kNR, pb);
    step<1, ROWS, NP>(acc, a, bk + 1 * kNR, pb);
    step<2, ROWS, NP>(acc, a, bk + 2 * kNR, pb);
    step<3, ROWS, NP>(acc, a, bk + 3 * kNR, pb);
    step<4, ROWS, NP>(acc, a, bk + 4 * kNR, pb);
    step<5, ROWS, NP>(acc, a, bk + 5 * kNR, pb);
    step<6, ROWS, NP>(acc, a, bk + 6 * kNR, pb);
    step<7, ROWS, NP>(acc, a, bk + 7 * kNR, pb);
  }
  for (; k < g.K; ++k) {  // K % 8 leftover k, one at a time
    const int8_t* bk = b + k * kNR;
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const int8x16_t wb = vld1q_s8(bk + p * pb);
      const int16x8_t w0 = vmovl_s8(vget_low_s8(wb));
      const int16x8_t w1 = vmovl_high_s8(wb);
#pragma GCC unroll 4
      for (int r = 0; r < ROWS; ++r) {
        const int16_t x = a_packed[r * g.Kp + k];
        acc[r][4 * p + 0] = vmlal_n_s16(acc[r][4 * p + 0], vget_low_s16(w0), x);
        acc[r][4 * p + 1] = vmlal_high_n_s16(acc[r][4 * p + 1], w0, x);
        acc[r][4 * p + 2] = vmlal_n_s16(acc[r][4 * p + 2], vget_low_s16(w1), x);
        acc[r][4 * p + 3] = vmlal_high_n_s16(acc[r][4 * p + 3], w1, x);
      }
    }
  }

  const int col0 = panel * kNR;
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j)
      neon_epilogue::store8(g, acc[r][2 * j], acc[r][2 * j + 1], row0 + r, col0 + 8 * j, g.N - col0 - 8 * j);
}

template <int ROWS>
void row_tile(const GemmArgs& g, const int16_t* a_packed, int row0, int panel_begin, int panel_end) {
  int p = panel_begin;
  if constexpr (ROWS == 1) {
    for (; p + 4 <= panel_end; p += 4) tile<ROWS, 4>(g, a_packed, row0, p);
  }
  if constexpr (ROWS <= 2) {
    for (; p + 2 <= panel_end; p += 2) tile<ROWS, 2>(g, a_packed, row0, p);
  }
  for (; p < panel_end; ++p) tile<ROWS, 1>(g, a_packed, row0, p);
}

}  // namespace

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, 1, 1, AInput::kSubtractZeroPoint, 2}; }

void pack_a(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  pack_a_rows(g, m, rows, reinterpret_cast<int16_t*>(dst));
}

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* scratch) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  MEGQ_DCHECK(scratch != nullptr && MEGQ_ALIGNED(scratch, 64));
  auto run_tile = [&](auto rows, const int16_t* a, int row0) {
    row_tile<decltype(rows)::value>(g, a, row0, panel_begin, panel_end);
  };
  for_each_row_tile<kMR, int16_t>(g, m_begin, m_end, scratch, pack_a_rows, run_tile);
}

// 16 independent smlal chains (the kernel's multiply-accumulate), 4
// multiply-adds each. Each multiplies its own accumulator's bits, so the
// compiler cannot hoist the product out of the loop.
const int64_t kPeakOpsPerIteration = 16 * 4 * 2;
void dot_peak_loop(int64_t iterations, int32_t* sink) {
  int32x4_t acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = vdupq_n_s32(i);
  const int16x4_t b = vdup_n_s16(3);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = vmlal_s16(acc[i], vget_low_s16(vreinterpretq_s16_s32(acc[i])), b);
  }
  int32x4_t s = acc[0];
  for (int i = 1; i < 16; ++i) s = vaddq_s32(s, acc[i]);
  *sink = vaddvq_s32(s);
}

#undef MEGQ_INLINE

}  // namespace neon
}  // namespace megq
