// AVX2 GEMM kernel (compiled with -mavx2 -mfma only here). Exact for every
// input. The general path avoids vpmaddubsw, whose int16 pair sums saturate
// for full-range bytes (255*127*2 > 32767); a second path uses it when every
// byte of the rows is below 128, where it is provably exact (see "The exact
// 7-bit path" below), and the int16 path is the fallback otherwise.
//
// Inner product: both operands are int16 and vpmaddwd multiplies pairs and
// adds each pair into an int32 lane. Weights are pre-widened to int16 once at
// pack time (layout nr = 16, kr = 2, int16 elements); each row tile of A is
// widened into scratch as (a - z_a), which lies in [-255, 255], so a pair sum
// is at most 2 * 255 * 128 in magnitude and the only int16 overflow case of
// vpmaddwd (two (-32768)^2 products) cannot occur. Accumulation wraps modulo
// 2^32 like the other paths; packing guarantees the true sums fit in int32.
//
// Register tile: up to 6 rows x 1 panel (12 ymm accumulators + 2 weight
// vectors + 1 broadcast); few-row tiles take 2 panels at once.
#include <immintrin.h>

#include "megq/kernels/gemm_block_loop.h"
#include "megq/kernels/gemm_kernels.h"

namespace megq {
namespace avx2 {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int kKR = 2;

// Widens rows [m, m + rows) of A to int16 (a - z_a) with Kp entries per row.
void pack_a_rows(const GemmArgs& g, int m, int rows, int16_t* dst) {
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(g.a_zero_point));
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = g.a + (m + r) * g.a_stride;
    int16_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    int k = 0;
    for (; k + 16 <= g.K; k += 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k));
      const __m256i wide = g.a_signed ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k), _mm256_sub_epi16(wide, zp));
    }
    for (; k < g.K; ++k) {  // tail: byte by byte, never past the row
      const int32_t x = g.a_signed ? static_cast<int8_t>(src[k]) : src[k];
      d[k] = static_cast<int16_t>(x - g.a_zero_point);
    }
    for (; k < g.Kp; ++k) d[k] = 0;
  }
}

// Round half away from zero of a value already clamped to [-255, 255]:
// trunc(v + copysign(0.49999997f, v)). Adding the largest float below one half
// (not 0.5, which would round 0.49999997f up) and truncating equals rounding
// half away from zero for every float32 of magnitude up to 1024 (checked
// exhaustively; tests/test_gemm.py pins the 0.49999997f and tie cases). The
// truncating conversion then yields the integer directly.
inline __m256i round_half_away_to_int(__m256 v) {
  const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
  const __m256 nudge = _mm256_or_ps(_mm256_set1_ps(0.49999997f), sign);
  return _mm256_cvttps_epi32(_mm256_add_ps(v, nudge));
}

// What the stores need, read from GemmArgs once per tile into locals: read
// inside each store, the fields would be reloaded after every byte store,
// which the compiler must assume may alias them.
struct Epilogue {
  __m256 lo, hi;  // clamp bounds minus the zero point, as floats
  __m256i zp;     // the output zero point
  OutputType type;
  const int32_t* bias;
  const float* multiplier;
  uint8_t* c;
  ptrdiff_t c_stride;
  int N;
};

inline Epilogue make_epilogue(const GemmArgs& g) {
  Epilogue e;
  e.lo = _mm256_set1_ps(static_cast<float>(g.out_min - g.out_zero_point));
  e.hi = _mm256_set1_ps(static_cast<float>(g.out_max - g.out_zero_point));
  e.zp = _mm256_set1_epi32(g.out_zero_point);
  e.type = g.out_type;
  e.bias = g.bias;
  e.multiplier = g.multiplier;
  e.c = g.c;
  e.c_stride = g.c_stride;
  e.N = g.N;
  return e;
}

inline void store8(const Epilogue& e, __m256i acc, int row, int col, int valid) {
  if (valid <= 0) return;
  acc = _mm256_add_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.bias + col)));
  uint8_t* c = e.c + row * e.c_stride;
  if (e.type == OutputType::kInt32) {
    int32_t* dst = reinterpret_cast<int32_t*>(c) + col;
    if (valid >= 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), acc);
    } else {
      // vpmaskmovd does not touch (or fault on) masked-off lanes.
      const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      _mm256_maskstore_epi32(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane), acc);
    }
    return;
  }
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(e.multiplier + col));
  v = _mm256_min_ps(_mm256_max_ps(v, e.lo), e.hi);
  const __m256i q = _mm256_add_epi32(round_half_away_to_int(v), e.zp);
  // Values are inside the output type's range, so the saturating packs keep
  // them; the two 128-bit lanes each end up with four bytes in their low dword.
  const __m256i w16 = _mm256_packs_epi32(q, q);
  const __m256i b8 = e.type == OutputType::kInt8 ? _mm256_packs_epi16(w16, w16) : _mm256_packus_epi16(w16, w16);
  const __m128i bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(b8), _mm256_extracti128_si256(b8, 1));
  if (valid >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(c + col), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    for (int j = 0; j < valid; ++j) c[col + j] = tmp[j];
  }
}

template <int ROWS, int NP>
void tile(const GemmArgs& g, const int16_t* a_packed, int row0, int panel) {
  __m256i acc[ROWS][2 * NP];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) acc[r][j] = _mm256_setzero_si256();

  const uint8_t* b = g.packed + panel * g.panel_bytes;
  const int groups = g.Kp / kKR;
  for (int q = 0; q < groups; ++q) {
    __m256i w[2 * NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const uint8_t* src = b + p * g.panel_bytes + q * (kNR * kKR * 2);
      w[2 * p] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
      w[2 * p + 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 32));
    }
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      int32_t pair;
      __builtin_memcpy(&pair, a_packed + r * g.Kp + q * kKR, 4);
      const __m256i av = _mm256_set1_epi32(pair);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(av, w[j]));
    }
  }

  const Epilogue e = make_epilogue(g);
  const int col0 = panel * kNR;
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) store8(e, acc[r][j], row0 + r, col0 + 8 * j, e.N - col0 - 8 * j);
}

// The full 6-row x 16-column tile. Its K loop is written in assembly: with
// intrinsics (array or named accumulators alike) GCC 12 hoists the six
// broadcasts ahead of their use and spills accumulators to the stack, since
// 12 accumulators + 2 weight vectors + broadcast + product need all 16 ymm
// registers. Same instructions as tile<>: vpbroadcastd, vpmaddwd, vpaddd.
void tile6(const GemmArgs& g, const int16_t* a_packed, int row0, int panel) {
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const uint8_t* b = g.packed + panel * g.panel_bytes;
  const int16_t* a = a_packed;
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(g.Kp) * 2;
  const uint8_t* b_end = b + static_cast<ptrdiff_t>(g.Kp / kKR) * (kNR * kKR * 2);
  // (GCC allows 30 asm operands: rows 3-5 are addressed from r11 = a + 3 rows.)
  __asm__ volatile(
      "lea (%[a], %[rb], 2), %%r11\n\t"
      "add %[rb], %%r11\n\t"
      "1:\n\t"
      "vmovdqu (%[b]), %%ymm12\n\t"
      "vmovdqu 32(%[b]), %%ymm13\n\t"
#define MEGQ_ROW(addr, lo, hi)                 \
      "vpbroadcastd " addr ", %%ymm14\n\t"      \
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t" \
      "vpaddd %%ymm15, %" lo ", %" lo "\n\t"    \
      "vpmaddwd %%ymm13, %%ymm14, %%ymm14\n\t" \
      "vpaddd %%ymm14, %" hi ", %" hi "\n\t"
      MEGQ_ROW("(%[a])", "[c00]", "[c01]")
      MEGQ_ROW("(%[a], %[rb], 1)", "[c10]", "[c11]")
      MEGQ_ROW("(%[a], %[rb], 2)", "[c20]", "[c21]")
      MEGQ_ROW("(%%r11)", "[c30]", "[c31]")
      MEGQ_ROW("(%%r11, %[rb], 1)", "[c40]", "[c41]")
      MEGQ_ROW("(%%r11, %[rb], 2)", "[c50]", "[c51]")
#undef MEGQ_ROW
      "add $64, %[b]\n\t"
      "add $4, %[a]\n\t"
      "add $4, %%r11\n\t"
      "cmp %[b_end], %[b]\n\t"
      "jne 1b\n\t"
      : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20),
        [c21] "+x"(c21), [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41),
        [c50] "+x"(c50), [c51] "+x"(c51), [b] "+r"(b), [a] "+r"(a)
      : [rb] "r"(row_bytes), [b_end] "r"(b_end)
      : "r11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
  const Epilogue e = make_epilogue(g);
  const int col0 = panel * kNR, left = g.N - col0;
  store8(e, c00, row0 + 0, col0, left); store8(e, c01, row0 + 0, col0 + 8, left - 8);
  store8(e, c10, row0 + 1, col0, left); store8(e, c11, row0 + 1, col0 + 8, left - 8);
  store8(e, c20, row0 + 2, col0, left); store8(e, c21, row0 + 2, col0 + 8, left - 8);
  store8(e, c30, row0 + 3, col0, left); store8(e, c31, row0 + 3, col0 + 8, left - 8);
  store8(e, c40, row0 + 4, col0, left); store8(e, c41, row0 + 4, col0 + 8, left - 8);
  store8(e, c50, row0 + 5, col0, left); store8(e, c51, row0 + 5, col0 + 8, left - 8);
}

template <int ROWS>
void row_tile(const GemmArgs& g, const int16_t* a_packed, int row0, int panel_begin, int panel_end) {
  int p = panel_begin;
  if constexpr (ROWS <= 3) {
    for (; p + 2 <= panel_end; p += 2) tile<ROWS, 2>(g, a_packed, row0, p);
  }
  for (; p < panel_end; ++p) {
    if constexpr (ROWS == 6) {
      tile6(g, a_packed, row0, p);
    } else {
      tile<ROWS, 1>(g, a_packed, row0, p);
    }
  }
}

// ---------------------------------------------------------------------------
// The exact 7-bit path (GemmArgs::packed_u7), taken only for rows whose bytes
// are all < 128, which the caller or gemm_block checks on the data itself.
//
// Why it is exact: vpmaddubsw multiplies unsigned bytes a by signed bytes w
// and adds adjacent products into an int16 with SIGNED SATURATION. With every
// a in [0, 127] and every w in [-128, 127], a product lies in
// [127 * -128, 127 * 127] = [-16256, 16129], so a pair sum lies in
// [-32512, 32258], inside int16's [-32768, 32767]: saturation never happens
// and the int16 is the exact pair sum. vpmaddwd against ones then adds two
// pair sums into an int32 exactly (|sum| <= 65024). An int8 activation in
// [0, 127] is the same byte as its u8 value, so both signednesses read the
// bytes as u8 here; the bytes past K are 0 (weights there are 0 as well).
// The kernel's sum is then sum_k a * w, and bias_u7 = bias - z_a * sum_k w
// turns it into sum_k (a - z_a) * w + bias. Both are summed modulo 2^32:
// |sum_k a * w| <= 127 * sum_k |w| <= max|a - z_a| * sum_k |w| (max|a - z_a|
// is at least 128 over any 256-value input range), and packing proved the
// latter plus |bias| fits in int32, so the wrapped result is the exact one.
//
// One k group is 4 bytes of a row (one broadcast) times a panel's 64 bytes
// (16 columns x 4 k, two vectors): per row, 2 vpmaddubsw + 2 vpmaddwd + 2
// vpaddd for 64 multiply-adds, where the int16 path needs 4 vpmaddwd + 4
// vpaddd (and twice the broadcasts and A bytes): as many multiply
// instructions, half the adds. AMD Zen 4 runs this mix at about 1.25x the
// multiply-adds per second of vpmaddwd + vpaddd; Zen 2, with one vector
// integer multiply pipe, runs both at the same rate (peers get 1.5x there only
// with vpmaddubsw + vpaddsw, whose int16 accumulation saturates).
constexpr int kMRU7 = 5;
constexpr int kKRU7 = 4;
constexpr int kGroupBytesU7 = kNR * kKRU7;  // one k group of one panel

// ORs the bytes [0, len) of s into acc; 32-byte loads while they stay inside.
inline __m256i or_bytes(__m256i acc, const uint8_t* s, int len) {
  int k = 0;
  for (; k + 32 <= len; k += 32) {
    acc = _mm256_or_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k)));
  }
  uint32_t tail = 0;
  for (; k < len; ++k) tail |= s[k];
  return _mm256_or_si256(acc, _mm256_set1_epi32(static_cast<int32_t>(tail)));
}

inline bool all_below_128(__m256i acc) { return _mm256_movemask_epi8(acc) == 0; }

// Copies K bytes to d, zero up to Kp_u7, ORing the bytes into the result.
inline __m256i copy_row_u7(const GemmArgs& g, const uint8_t* src, uint8_t* d, __m256i acc) {
  int k = 0;
  for (; k + 32 <= g.K; k += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k), v);
    acc = _mm256_or_si256(acc, v);
  }
  uint32_t tail = 0;
  for (; k < g.K; ++k) {  // tail: byte by byte, never past the row
    d[k] = src[k];
    tail |= src[k];
  }
  for (; k < g.Kp_u7; ++k) d[k] = 0;
  return _mm256_or_si256(acc, _mm256_set1_epi32(static_cast<int32_t>(tail)));
}

template <int ROWS, int NP>
void tile_u7(const GemmArgs& g, const uint8_t* a, int row0, int panel) {
  __m256i acc[ROWS][2 * NP];
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) acc[r][j] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const uint8_t* b = g.packed_u7 + panel * g.panel_bytes_u7;
  const int groups = g.Kp_u7 / kKRU7;
  for (int q = 0; q < groups; ++q) {
    __m256i w[2 * NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const uint8_t* src = b + p * g.panel_bytes_u7 + q * kGroupBytesU7;
      w[2 * p] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
      w[2 * p + 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 32));
    }
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      int32_t quad;
      __builtin_memcpy(&quad, a + r * g.Kp_u7 + q * kKRU7, 4);
      const __m256i av = _mm256_set1_epi32(quad);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; ++j) {
        acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(_mm256_maddubs_epi16(av, w[j]), ones));
      }
    }
  }
  Epilogue e = make_epilogue(g);
  e.bias = g.bias_u7;
  const int col0 = panel * kNR;
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; ++j) store8(e, acc[r][j], row0 + r, col0 + 8 * j, e.N - col0 - 8 * j);
}

// The full 5-row x 16-column tile in assembly, like tile6 (GCC spills
// otherwise): 10 accumulators + 2 weight vectors + ones + broadcast + product
// take 15 of the 16 ymm registers, which is why the tile has 5 rows, not 6.
void tile5_u7(const GemmArgs& g, const uint8_t* a, int row0, int panel) {
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00;
  const __m256i ones = _mm256_set1_epi16(1);
  const uint8_t* b = g.packed_u7 + panel * g.panel_bytes_u7;
  const ptrdiff_t row_bytes = g.Kp_u7;
  const uint8_t* b_end = b + static_cast<ptrdiff_t>(g.Kp_u7 / kKRU7) * kGroupBytesU7;
  __asm__ volatile(
      "lea (%[a], %[rb], 2), %%r11\n\t"
      "add %[rb], %%r11\n\t"
      "1:\n\t"
      "vmovdqu (%[b]), %%ymm12\n\t"
      "vmovdqu 32(%[b]), %%ymm13\n\t"
#define MEGQ_ROW(addr, lo, hi)                       \
      "vpbroadcastd " addr ", %%ymm14\n\t"            \
      "vpmaddubsw %%ymm12, %%ymm14, %%ymm15\n\t"     \
      "vpmaddwd %[ones], %%ymm15, %%ymm15\n\t"       \
      "vpaddd %%ymm15, %" lo ", %" lo "\n\t"          \
      "vpmaddubsw %%ymm13, %%ymm14, %%ymm14\n\t"     \
      "vpmaddwd %[ones], %%ymm14, %%ymm14\n\t"       \
      "vpaddd %%ymm14, %" hi ", %" hi "\n\t"
      MEGQ_ROW("(%[a])", "[c00]", "[c01]")
      MEGQ_ROW("(%[a], %[rb], 1)", "[c10]", "[c11]")
      MEGQ_ROW("(%[a], %[rb], 2)", "[c20]", "[c21]")
      MEGQ_ROW("(%%r11)", "[c30]", "[c31]")
      MEGQ_ROW("(%%r11, %[rb], 1)", "[c40]", "[c41]")
#undef MEGQ_ROW
      "add $64, %[b]\n\t"
      "add $4, %[a]\n\t"
      "add $4, %%r11\n\t"
      "cmp %[b_end], %[b]\n\t"
      "jne 1b\n\t"
      : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20),
        [c21] "+x"(c21), [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [b] "+r"(b),
        [a] "+r"(a)
      : [rb] "r"(row_bytes), [b_end] "r"(b_end), [ones] "x"(ones)
      : "r11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
  Epilogue e = make_epilogue(g);
  e.bias = g.bias_u7;
  const int col0 = panel * kNR, left = g.N - col0;
  store8(e, c00, row0 + 0, col0, left); store8(e, c01, row0 + 0, col0 + 8, left - 8);
  store8(e, c10, row0 + 1, col0, left); store8(e, c11, row0 + 1, col0 + 8, left - 8);
  store8(e, c20, row0 + 2, col0, left); store8(e, c21, row0 + 2, col0 + 8, left - 8);
  store8(e, c30, row0 + 3, col0, left); store8(e, c31, row0 + 3, col0 + 8, left - 8);
  store8(e, c40, row0 + 4, col0, left); store8(e, c41, row0 + 4, col0 + 8, left - 8);
}

template <int ROWS>
void row_tile_u7(const GemmArgs& g, const uint8_t* a, int row0, int panel_begin, int panel_end) {
  int p = panel_begin;
  if constexpr (ROWS <= 2) {
    for (; p + 2 <= panel_end; p += 2) tile_u7<ROWS, 2>(g, a, row0, p);
  }
  for (; p < panel_end; ++p) {
    if constexpr (ROWS == kMRU7) {
      tile5_u7(g, a, row0, p);
    } else {
      tile_u7<ROWS, 1>(g, a, row0, p);
    }
  }
}

// Rows [m_begin, m_end) in 5-row tiles of the 7-bit form: from a_packed, or
// copied into scratch here (the caller checked every byte is < 128).
void gemm_block_u7(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end, uint8_t* scratch) {
  for (int m = m_begin; m < m_end; m += kMRU7) {
    const int rows = m_end - m < kMRU7 ? m_end - m : kMRU7;
    const uint8_t* a = scratch;
    if (g.a_packed != nullptr) {
      a = g.a_packed + static_cast<ptrdiff_t>(m - g.a_packed_row0) * g.Kp_u7;
    } else {
      for (int r = 0; r < rows; ++r) {
        copy_row_u7(g, g.a + (m + r) * g.a_stride, scratch + static_cast<ptrdiff_t>(r) * g.Kp_u7,
                    _mm256_setzero_si256());
      }
    }
    with_row_count<kMRU7>(rows, [&](auto count) {
      row_tile_u7<decltype(count)::value>(g, a, m, panel_begin, panel_end);
    });
  }
}

}  // namespace

bool pack_a_u7(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  MEGQ_DCHECK(g.packed_u7 != nullptr && g.Kp_u7 >= g.K);
  for (int r = 0; r < rows; ++r) {
    const __m256i seen = copy_row_u7(g, g.a + (m + r) * g.a_stride, dst + static_cast<ptrdiff_t>(r) * g.Kp_u7,
                                     _mm256_setzero_si256());
    if (!all_below_128(seen)) return false;  // stop at the first ineligible row
  }
  return true;
}

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, kKR, 2, AInput::kSubtractZeroPoint, 2}; }

void pack_a(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  pack_a_rows(g, m, rows, reinterpret_cast<int16_t*>(dst));
}

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* scratch) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  MEGQ_DCHECK(g.a_packed != nullptr || (scratch != nullptr && MEGQ_ALIGNED(scratch, 64)));  // scratch: only to convert rows
  if (g.a_packed != nullptr && g.a_packed_u7) {
    gemm_block_u7(g, m_begin, m_end, panel_begin, panel_end, nullptr);
    return;
  }
  if (g.a_packed == nullptr && g.packed_u7 != nullptr) {
    // Rows read in place: one scan of their bytes (rows * K, against rows *
    // K * N multiply-adds) decides. The 7-bit scratch (5 rows of Kp_u7
    // bytes) fits in the int16 one (6 rows of Kp elements of 2 bytes).
    __m256i seen = _mm256_setzero_si256();
    for (int m = m_begin; m < m_end && all_below_128(seen); ++m) seen = or_bytes(seen, g.a + m * g.a_stride, g.K);
    if (all_below_128(seen)) {
      gemm_block_u7(g, m_begin, m_end, panel_begin, panel_end, scratch);
      return;
    }
  }
  auto run_tile = [&](auto rows, const int16_t* a, int row0) {
    row_tile<decltype(rows)::value>(g, a, row0, panel_begin, panel_end);
  };
  for_each_row_tile<kMR, int16_t>(g, m_begin, m_end, scratch, pack_a_rows, run_tile);
}

// 12 independent chains of vpmaddwd + vpaddd (the kernel's instruction mix),
// 16 multiply-adds each. The madd reads its own chain's accumulator so that
// the compiler cannot hoist it out of the loop.
const int64_t kPeakOpsPerIteration = 12 * 16 * 2;
void dot_peak_loop(int64_t iterations, int32_t* sink) {
  // In assembly for the same reason as tile6 (GCC spills the 12 chains).
  // Each chain's vpmaddwd reads its own accumulator, so the loop cannot be
  // folded; 12 chains cover vpmaddwd's latency.
  if (iterations <= 0) {
    *sink = 0;
    return;
  }
  int32_t out;
  __asm__ volatile(
      "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t"
      "vpsrlw $14, %%ymm15, %%ymm15\n\t"  // 3 in every int16 lane
      "vmovdqa %%ymm15, %%ymm0\n\t vmovdqa %%ymm15, %%ymm1\n\t vmovdqa %%ymm15, %%ymm2\n\t"
      "vmovdqa %%ymm15, %%ymm3\n\t vmovdqa %%ymm15, %%ymm4\n\t vmovdqa %%ymm15, %%ymm5\n\t"
      "vmovdqa %%ymm15, %%ymm6\n\t vmovdqa %%ymm15, %%ymm7\n\t vmovdqa %%ymm15, %%ymm8\n\t"
      "vmovdqa %%ymm15, %%ymm9\n\t vmovdqa %%ymm15, %%ymm10\n\t vmovdqa %%ymm15, %%ymm11\n\t"
      "1:\n\t"
#define MEGQ_CHAIN(r, t) "vpmaddwd %%ymm15, %%ymm" #r ", %%ymm" #t "\n\t vpaddd %%ymm" #t ", %%ymm" #r ", %%ymm" #r "\n\t"
      MEGQ_CHAIN(0, 12) MEGQ_CHAIN(1, 13) MEGQ_CHAIN(2, 14) MEGQ_CHAIN(3, 12) MEGQ_CHAIN(4, 13) MEGQ_CHAIN(5, 14)
      MEGQ_CHAIN(6, 12) MEGQ_CHAIN(7, 13) MEGQ_CHAIN(8, 14) MEGQ_CHAIN(9, 12) MEGQ_CHAIN(10, 13) MEGQ_CHAIN(11, 14)
#undef MEGQ_CHAIN
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vpaddd %%ymm1, %%ymm0, %%ymm0\n\t"
      "vmovd %%xmm0, %[out]\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(iterations), [out] "=r"(out)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15", "cc");
  *sink = out;
}

}  // namespace avx2
}  // namespace megq
