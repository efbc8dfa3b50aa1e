// AVX-512 VNNI GEMM kernel (compiled with -mavx512{f,bw,dq,vl,vnni} only here).
//
// Inner product: vpdpbusd multiplies 4 unsigned bytes of A by 4 signed bytes
// of B and adds the 4 products into an int32 lane. It wraps on overflow (the
// saturating vpdpbusds is never used), so with the compensation the driver
// folds into the bias the result is exact modulo 2^32, hence exact whenever
// the true value fits in int32 (checked at pack time).
// Signed activations are turned into unsigned ones by flipping the sign bit
// (a ^ 0x80 == a + 128) while each row tile is copied into scratch; the copy
// also zero-fills the K tail, so no byte beyond a caller's row is read.
//
// Layout: nr = 32 (two zmm of 16 columns), kr = 4. Register tile: up to 8 rows
// x 1 panel (16 accumulators); few-row tiles take 2 or 4 panels at once so
// that enough independent accumulators hide the instruction latency (GEMV).
// Epilogue: bias add, then requantization exactly as csrc/megq/requantize.h
// (float multiply, clamp, round half away from zero, zero point), with masked
// stores for the N tail.
#include <immintrin.h>

#include "megq/kernels/gemm_block_loop.h"
#include "megq/kernels/gemm_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

constexpr int kMR = 8;
constexpr int kNR = 32;
constexpr int kKR = 4;

void pack_a_rows(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  const __m512i flip = _mm512_set1_epi8(g.a_signed ? static_cast<char>(0x80) : 0);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = g.a + (m + r) * g.a_stride;
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    int k = 0;
    for (; k + 64 <= g.K; k += 64) {
      _mm512_storeu_si512(d + k, _mm512_xor_si512(_mm512_loadu_si512(src + k), flip));
    }
    if (k < g.K) {
      // Masked load: bytes past K are neither read nor faulted on.
      const __mmask64 mask = (~0ull) >> (64 - (g.K - k));
      const __m512i v = _mm512_maskz_loadu_epi8(mask, src + k);
      _mm512_mask_storeu_epi8(d + k, mask, _mm512_xor_si512(v, flip));
    }
    for (k = g.K; k < g.Kp; ++k) d[k] = 0;  // B is 0 there too
  }
}

// Round half away from zero of a float vector holding integers' neighbours:
// truncate, then step one away from zero where the dropped fraction is >= 0.5.
// (Adding +-0.5 before truncating is wrong for 0.49999997f, which rounds up.)
inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(v, t);  // exact
  const __m512 one = _mm512_set1_ps(1.0f);
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __mmask16 down = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(-0.5f), _CMP_LE_OQ);
  __m512 r = _mm512_mask_add_ps(t, up, t, one);
  return _mm512_mask_sub_ps(r, down, r, one);
}

inline void store16(const GemmArgs& g, __m512i acc, int row, int col, int valid) {
  if (valid <= 0) return;
  const __mmask16 mask = valid >= 16 ? static_cast<__mmask16>(0xFFFF)
                                     : static_cast<__mmask16>((1u << valid) - 1);
  acc = _mm512_add_epi32(acc, _mm512_loadu_si512(g.bias + col));
  uint8_t* c = g.c + row * g.c_stride;
  if (g.out_type == OutputType::kInt32) {
    _mm512_mask_storeu_epi32(c + 4 * static_cast<ptrdiff_t>(col), mask, acc);
    return;
  }
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(g.multiplier + col));
  v = _mm512_max_ps(v, _mm512_set1_ps(static_cast<float>(g.out_min - g.out_zero_point)));
  v = _mm512_min_ps(v, _mm512_set1_ps(static_cast<float>(g.out_max - g.out_zero_point)));
  __m512i q = _mm512_cvtps_epi32(round_half_away(v));  // already integral: exact
  q = _mm512_add_epi32(q, _mm512_set1_epi32(g.out_zero_point));
  // In range for the output type, so truncating to bytes keeps the value
  // (int8 two's complement, or uint8).
  _mm512_mask_cvtepi32_storeu_epi8(c + col, mask, q);
}

// rows x (NP panels) register tile over the whole K.
template <int ROWS, int NP>
void tile(const GemmArgs& g, const uint8_t* a_packed, int row0, int panel) {
  __m512i acc[ROWS][2 * NP];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) acc[r][j] = _mm512_setzero_si512();

  const uint8_t* b = g.packed + panel * g.panel_bytes;
  const int groups = g.Kp / kKR;
  for (int q = 0; q < groups; ++q) {
    __m512i w[2 * NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      w[2 * p] = _mm512_loadu_si512(b + p * g.panel_bytes + q * (kNR * kKR));
      w[2 * p + 1] = _mm512_loadu_si512(b + p * g.panel_bytes + q * (kNR * kKR) + 64);
    }
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      int32_t a4;
      __builtin_memcpy(&a4, a_packed + r * g.Kp + q * kKR, 4);
      const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, w[j]);
    }
  }

  const int col0 = panel * kNR;
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) store16(g, acc[r][j], row0 + r, col0 + 16 * j, g.N - col0 - 16 * j);
}

template <int ROWS>
void row_tile(const GemmArgs& g, const uint8_t* a_packed, int row0, int panel_begin, int panel_end) {
  int p = panel_begin;
  if constexpr (ROWS <= 2) {
    for (; p + 4 <= panel_end; p += 4) tile<ROWS, 4>(g, a_packed, row0, p);
  }
  if constexpr (ROWS <= 4) {
    for (; p + 2 <= panel_end; p += 2) tile<ROWS, 2>(g, a_packed, row0, p);
  }
  for (; p < panel_end; ++p) tile<ROWS, 1>(g, a_packed, row0, p);
}

}  // namespace

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, kKR, 1, AInput::kUnsigned, 1}; }

void pack_a(const GemmArgs& g, int m, int rows, uint8_t* dst) { pack_a_rows(g, m, rows, dst); }

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* scratch) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  MEGQ_DCHECK(scratch != nullptr && MEGQ_ALIGNED(scratch, 64));
  auto run_tile = [&](auto rows, const uint8_t* a, int row0) {
    row_tile<decltype(rows)::value>(g, a, row0, panel_begin, panel_end);
  };
  for_each_row_tile<kMR, uint8_t>(g, m_begin, m_end, scratch, pack_a_rows, run_tile);
}

// 16 independent zmm vpdpbusd chains: 16 * 64 multiply-adds = 2048 ops.
const int64_t kPeakOpsPerIteration = 16 * 64 * 2;
void dot_peak_loop(int64_t iterations, int32_t* sink) {
  __m512i acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  }
  __m512i s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_epi32(s, acc[i]);
  *sink = _mm512_reduce_add_epi32(s);
}

}  // namespace avx512vnni
}  // namespace megq
