// AArch64 GEMM kernel with the ARMv8.2 dot product extension (compiled with
// -march=armv8.2-a+dotprod only here; used when HWCAP_ASIMDDP is set).
//
// Inner product: sdot multiplies 4 signed bytes of A by 4 signed bytes of B
// and adds the 4 products into an int32 lane. int8 x int8 products and their
// 4-sums are exact in int32 (|sum| <= 4 * 128 * 128), and the accumulation
// wraps modulo 2^32, so the result is exact whenever the true value fits in
// int32 (checked at pack time).
// Activations are fed as signed bytes (AInput::kSigned): int8 A is used as is,
// uint8 A has its sign bit flipped (a ^ 0x80 == a - 128 as int8) while each
// row tile is copied into scratch; the driver folds -(z_a + delta) * sum_k w
// into the bias. The copy zero-fills the K tail up to Kp, so no byte beyond a
// caller's row is read.
//
// Layout: nr = 16, kr = 4 (for each group of 4 k: 16 columns x 4 bytes = four
// 16-byte vectors, vector j holding columns 4j..4j+3), int8.
// Register tile: up to 4 rows x 1 panel (16 int32x4 accumulators); 16 bytes of
// each A row (4 k groups) are loaded at once and used by lane
// (vdotq_laneq_s32). Few-row tiles take 2 or 4 panels at once so that a GEMV
// still has 16 independent accumulators.
// Epilogue: neon/epilogue_neon.h (shared with the plain NEON kernel).
#include <arm_neon.h>

#include "megq/kernels/gemm_block_loop.h"
#include "megq/kernels/gemm_kernels.h"
#include "megq/kernels/neon/epilogue_neon.h"

namespace megq {
namespace neondot {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 16;
constexpr int kKR = 4;
constexpr int kGroupBytes = kNR * kKR;  // 64

#define MEGQ_INLINE inline __attribute__((always_inline))

// Copies rows [m, m + rows) of A into dst as signed bytes, Kp per row.
void pack_a_rows(const GemmArgs& g, int m, int rows, int8_t* dst) {
  const uint8_t flip_byte = g.a_signed ? 0 : 0x80;
  const uint8x16_t flip = vdupq_n_u8(flip_byte);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = g.a + (m + r) * g.a_stride;
    uint8_t* d = reinterpret_cast<uint8_t*>(dst) + static_cast<ptrdiff_t>(r) * g.Kp;
    int k = 0;
    for (; k + 16 <= g.K; k += 16) vst1q_u8(d + k, veorq_u8(vld1q_u8(src + k), flip));
    for (; k < g.K; ++k) d[k] = src[k] ^ flip_byte;  // tail: never past the row
    for (; k < g.Kp; ++k) d[k] = 0;                   // B is 0 there too
  }
}

// One k group with activation lane G (bytes 4G..4G+3) of a[r].
template <int G, int ROWS, int NP>
MEGQ_INLINE void group(int32x4_t (&acc)[ROWS][4 * NP], const int8x16_t (&a)[ROWS], const int8_t* b,
                       size_t panel_bytes) {
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    int8x16_t w[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) w[j] = vld1q_s8(b + p * panel_bytes + 16 * j);
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[r][4 * p + j] = vdotq_laneq_s32(acc[r][4 * p + j], w[j], a[r], G);
  }
}

// ROWS x (NP panels) register tile over the whole K.
template <int ROWS, int NP>
void tile(const GemmArgs& g, const int8_t* a_packed, int row0, int panel) {
  int32x4_t acc[ROWS][4 * NP];
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < 4 * NP; ++j) acc[r][j] = vdupq_n_s32(0);

  const int8_t* b = reinterpret_cast<const int8_t*>(g.packed + panel * g.panel_bytes);
  const size_t pb = g.panel_bytes;
  const int groups = g.Kp / kKR;
  int q = 0;
  for (; q + 4 <= groups; q += 4) {
    int8x16_t a[ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; ++r) a[r] = vld1q_s8(a_packed + r * g.Kp + q * kKR);
    const int8_t* bq = b + q * kGroupBytes;
    group<0, ROWS, NP>(acc, a, bq + 0 * kGroupBytes, pb);
    group<1, ROWS, NP>(acc, a, bq + 1 * kGroupBytes, pb);
    group<2, ROWS, NP>(acc, a, bq + 2 * kGroupBytes, pb);
    group<3, ROWS, NP>(acc, a, bq + 3 * kGroupBytes, pb);
  }
  for (; q < groups; ++q) {  // up to 3 leftover groups: 4 bytes of A broadcast
    int8x16_t a[ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; ++r) {
      int32_t a4;
      __builtin_memcpy(&a4, a_packed + r * g.Kp + q * kKR, 4);
      a[r] = vreinterpretq_s8_s32(vdupq_n_s32(a4));
    }
    group<0, ROWS, NP>(acc, a, b + q * kGroupBytes, pb);
  }

  const int col0 = panel * kNR;
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j)
      neon_epilogue::store8(g, acc[r][2 * j], acc[r][2 * j + 1], row0 + r, col0 + 8 * j, g.N - col0 - 8 * j);
}

template <int ROWS>
void row_tile(const GemmArgs& g, const int8_t* a_packed, int row0, int panel_begin, int panel_end) {
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

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, kKR, 1, AInput::kSigned, 1}; }

void pack_a(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  pack_a_rows(g, m, rows, reinterpret_cast<int8_t*>(dst));
}

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* scratch) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  MEGQ_DCHECK(scratch != nullptr && MEGQ_ALIGNED(scratch, 64));
  auto run_tile = [&](auto rows, const int8_t* a, int row0) {
    row_tile<decltype(rows)::value>(g, a, row0, panel_begin, panel_end);
  };
  for_each_row_tile<kMR, int8_t>(g, m_begin, m_end, scratch, pack_a_rows, run_tile);
}

// 16 independent sdot chains, 16 multiply-adds each: 512 ops per iteration.
const int64_t kPeakOpsPerIteration = 16 * 16 * 2;
void dot_peak_loop(int64_t iterations, int32_t* sink) {
  int32x4_t acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = vdupq_n_s32(i);
  const int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(5);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = vdotq_s32(acc[i], a, b);
  }
  int32x4_t s = acc[0];
  for (int i = 1; i < 16; ++i) s = vaddq_s32(s, acc[i]);
  *sink = vaddvq_s32(s);
}

#undef MEGQ_INLINE

}  // namespace neondot
}  // namespace megq
