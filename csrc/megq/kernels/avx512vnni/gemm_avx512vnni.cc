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
// Unsigned activations with K a multiple of 4 need neither and are read in
// place (reads_a_in_place).
//
// Layout: nr = 32 (two zmm of 16 columns), kr = 4. Register tile: up to 8 rows
// x 1 panel (16 accumulators); few-row tiles take 2 or 4 panels at once so
// that enough independent accumulators hide the instruction latency (GEMV).
// Epilogue: bias add, then requantization exactly as csrc/megq/requantize.h
// (float multiply, round half away from zero, zero point, clamp), four
// vectors at a time packed to 64 bytes in registers: one row's 64 columns,
// two rows' 32 or four rows' 16, so that narrow panels (N = 16, or K = 16-32
// where the epilogue costs more than the dot products) pack no empty lanes.
// Masked stores for the N tail.
#include <immintrin.h>

#include "megq/kernels/avx512vnni/byte_epilogue.h"
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
  if (g.a_stride == g.K && g.K == g.Kp) {
    // Dense rows without a K tail (1x1 convs over NHWC): source and
    // destination are the same flat run of rows * K bytes, converted in
    // whole vectors. Per row, short rows would pay a masked load and a masked
    // store each (K = 16-32 spent a third of the GEMM's time there).
    const uint8_t* src = g.a + static_cast<ptrdiff_t>(m) * g.K;
    const ptrdiff_t total = static_cast<ptrdiff_t>(rows) * g.K;
    ptrdiff_t i = 0;
    for (; i + 256 <= total; i += 256) {
#pragma GCC unroll 4
      for (int j = 0; j < 256; j += 64) {
        _mm512_storeu_si512(dst + i + j, _mm512_xor_si512(_mm512_loadu_si512(src + i + j), flip));
      }
    }
    for (; i + 64 <= total; i += 64) {
      _mm512_storeu_si512(dst + i, _mm512_xor_si512(_mm512_loadu_si512(src + i), flip));
    }
    if (i < total) {
      const __mmask64 mask = (~0ull) >> (64 - (total - i));
      _mm512_mask_storeu_epi8(dst + i, mask, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, src + i), flip));
    }
    return;
  }
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

// The epilogue's per-call constants, built once per gemm_block in registers.
// (Built inside each store, they would be reloaded from GemmArgs after every
// byte store, which the compiler must assume may alias them.) The
// requantization rule and its proof: byte_epilogue.h.
struct Epilogue {
  ByteEpilogue b;
  __m512i order;     // dword permutation undoing the in-lane packs
  bool clamp_float;  // clamp v <= hi' in float (some multiplier >= 1)
};

inline Epilogue make_epilogue(const GemmArgs& g, int panel_begin, int panel_end) {
  Epilogue e;
  e.b = make_byte_epilogue(g.out_min, g.out_max, g.out_zero_point, g.out_type == OutputType::kUint8);
  e.order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  // Columns beyond N hold multiplier 0.
  e.clamp_float = false;
  if (g.out_type != OutputType::kInt32) {
    __m512 mx = _mm512_setzero_ps();
    for (int i = panel_begin * kNR; i < panel_end * kNR; i += 16) {
      mx = _mm512_max_ps(mx, _mm512_loadu_ps(g.multiplier + i));
    }
    e.clamp_float = _mm512_cmp_ps_mask(mx, _mm512_set1_ps(1.0f), _CMP_GE_OQ) != 0;
  }
  return e;
}

// requantize16 for 8 values (the last 8 columns of a 24-wide tile).
inline __m256i requantize8(const Epilogue& e, __m256i acc, const float* multiplier) {
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(multiplier));
  if (e.clamp_float) v = _mm256_min_ps(v, _mm512_castps512_ps256(e.b.hi));
  __m256 h = _mm512_castps512_ps256(e.b.half);
  if (e.b.rounds_negative) {
    h = _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_castps_si256(v), _mm512_castsi512_si256(e.b.sign),
                                                      _mm256_castps_si256(h), 0xEA));
  }
  return _mm256_cvttps_epi32(_mm256_add_ps(v, h));
}

// Four vectors of 16 rounded values -> their 64 output bytes in order
// (q0's 16, then q1's, q2's, q3's): `order` gathers the in-lane packs back.
inline __m512i pack64(const Epilogue& e, __m512i q0, __m512i q1, __m512i q2, __m512i q3) {
  return _mm512_permutexvar_epi32(e.order, pack4_in_lanes(e.b, q0, q1, q2, q3));
}

inline void store_bytes32(uint8_t* c, __m256i b, int valid) {
  if (valid >= 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), b);
  } else if (valid > 0) {
    _mm256_mask_storeu_epi8(c, static_cast<__mmask32>((1u << valid) - 1), b);
  }
}

inline void store_bytes16(uint8_t* c, __m128i b, int valid) {
  if (valid >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), b);
  } else if (valid > 0) {
    _mm512_mask_storeu_epi8(c, (1ull << valid) - 1, _mm512_castsi128_si512(b));
  }
}

// rows x (NP panels) register tile over the whole K; row r of A at
// a + r * a_stride (Kp bytes, or K when K == Kp), in `segments` pieces of
// Kp / segments bytes, piece s at a + s * segment_stride (GemmArgs::a_segments).
// WIDTH (NP == 1) < 32: the panel's last 16 (or 8) columns are all beyond N
// and are not computed (N = 16 or 24, or the tail of N): an empty lane costs
// as much as a full one, and with N = 24 a quarter of the work would be empty.
template <int ROWS, int NP, int WIDTH = 32>
void tile(const GemmArgs& g, const Epilogue& e, const uint8_t* a, ptrdiff_t a_stride, int row0, int panel,
          int segments, ptrdiff_t segment_stride) {
  // Accumulators start at the (folded) bias: the sum wraps modulo 2^32
  // either way, so adding it first gives the same int32.
  static_assert(WIDTH == 32 || NP == 1, "narrow tiles are one panel wide");
  constexpr int kVectors = WIDTH == 16 ? 1 : 2 * NP;  // accumulator vectors per row
  // WIDTH 24: the second vector's upper 8 lanes are never computed (ymm
  // instructions; the zmm holding them has undefined upper lanes) and never
  // stored.
  constexpr bool kYmmTail = WIDTH == 24;
  __m512i acc[ROWS][2 * NP];
  const int32_t* bias = g.bias + panel * kNR;
#pragma GCC unroll 8
  for (int j = 0; j < kVectors; ++j) acc[0][j] = _mm512_loadu_si512(bias + 16 * j);
#pragma GCC unroll 8
  for (int r = 1; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) acc[r][j] = acc[0][j];

  const uint8_t* b = g.packed + panel * g.panel_bytes;
  const int groups = g.Kp / kKR / segments;
  for (int s = 0; s < segments; ++s, a += segment_stride, b += groups * (kNR * kKR)) {
    for (int q = 0; q < groups; ++q) {
      __m512i w[2 * NP];
#pragma GCC unroll 8
      for (int j = 0; j < kVectors; ++j) {
        w[j] = _mm512_loadu_si512(b + (j / 2) * g.panel_bytes + q * (kNR * kKR) + 64 * (j % 2));
      }
#pragma GCC unroll 8
      for (int r = 0; r < ROWS; ++r) {
        int32_t a4;
        __builtin_memcpy(&a4, a + r * a_stride + q * kKR, 4);
        const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 8
        for (int j = 0; j < kVectors; ++j) {
          if (kYmmTail && j == 1) {
            acc[r][j] = _mm512_castsi256_si512(_mm256_dpbusd_epi32(
                _mm512_castsi512_si256(acc[r][j]), _mm512_castsi512_si256(av), _mm512_castsi512_si256(w[j])));
          } else {
            acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, w[j]);
          }
        }
      }
    }
  }

  // Everything the stores need, read before the first store (a byte store
  // may alias GemmArgs as far as the compiler knows).
  const int col0 = panel * kNR, n_left = g.N - col0;
  const OutputType type = g.out_type;
  const ptrdiff_t c_stride = g.c_stride;
  const float* multiplier = g.multiplier + col0;
  if (type == OutputType::kInt32) {
    int32_t* c = reinterpret_cast<int32_t*>(g.c + static_cast<ptrdiff_t>(row0) * c_stride) + col0;
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 8
      for (int j = 0; j < kVectors; ++j) {
        const int valid = n_left - 16 * j;
        if (valid >= 16) {
          _mm512_storeu_si512(c + 16 * j, acc[r][j]);
        } else if (valid > 0) {
          _mm512_mask_storeu_epi32(c + 16 * j, static_cast<__mmask16>((1u << valid) - 1), acc[r][j]);
        }
      }
      c = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(c) + c_stride);
    }
    return;
  }
#pragma GCC unroll 8
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) {
      acc[r][j] = kYmmTail && j == 1 ? _mm512_castsi256_si512(requantize8(e, _mm512_castsi512_si256(acc[r][j]),
                                                                          multiplier + 16 * j))
                                     : requantize16(e.b, acc[r][j], _mm512_loadu_ps(multiplier + 16 * j),
                                                    e.clamp_float);
    }
  // Bytes: four vectors per pack64, grouped so that each result is one or a
  // few contiguous runs of C (missing rows repeat the last one; not stored).
  uint8_t* c = g.c + static_cast<ptrdiff_t>(row0) * c_stride + col0;
  if constexpr (WIDTH == 16) {
    // 16 columns: four rows per pack, 16 bytes each.
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r += 4) {
      const int r1 = r + 1 < ROWS ? r + 1 : r, r2 = r + 2 < ROWS ? r + 2 : r1, r3 = r + 3 < ROWS ? r + 3 : r2;
      const __m512i b = pack64(e, acc[r][0], acc[r1][0], acc[r2][0], acc[r3][0]);
      store_bytes16(c + r * c_stride, _mm512_castsi512_si128(b), n_left);
      if (r + 1 < ROWS) store_bytes16(c + (r + 1) * c_stride, _mm512_extracti32x4_epi32(b, 1), n_left);
      if (r + 2 < ROWS) store_bytes16(c + (r + 2) * c_stride, _mm512_extracti32x4_epi32(b, 2), n_left);
      if (r + 3 < ROWS) store_bytes16(c + (r + 3) * c_stride, _mm512_extracti32x4_epi32(b, 3), n_left);
    }
  } else if constexpr (NP == 1) {
    // 32 (or 24) columns: two rows per pack, 32 bytes each.
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r += 2) {
      const int r1 = r + 1 < ROWS ? r + 1 : r;
      const __m512i b = pack64(e, acc[r][0], acc[r][1], acc[r1][0], acc[r1][1]);
      store_bytes32(c + r * c_stride, _mm512_castsi512_si256(b), n_left);
      if (r + 1 < ROWS) store_bytes32(c + (r + 1) * c_stride, _mm512_extracti64x4_epi64(b, 1), n_left);
    }
  } else {
    // 64 columns (two panels) of one row per pack.
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
      for (int p = 0; p < NP; p += 2)
        store_bytes64(c + r * c_stride + 32 * p,
                      pack64(e, acc[r][2 * p], acc[r][2 * p + 1], acc[r][2 * p + 2], acc[r][2 * p + 3]),
                      n_left - 32 * p);
  }
}

template <int ROWS>
void row_tile(const GemmArgs& g, const Epilogue& e, const uint8_t* a, ptrdiff_t a_stride, int row0,
              int panel_begin, int panel_end, int segments, ptrdiff_t segment_stride) {
  int p = panel_begin;
  if constexpr (ROWS <= 2) {
    for (; p + 4 <= panel_end; p += 4) tile<ROWS, 4>(g, e, a, a_stride, row0, p, segments, segment_stride);
  }
  if constexpr (ROWS <= 4) {
    for (; p + 2 <= panel_end; p += 2) tile<ROWS, 2>(g, e, a, a_stride, row0, p, segments, segment_stride);
  }
  for (; p < panel_end; ++p) {
    if (g.N - p * kNR <= 16) {
      tile<ROWS, 1, 16>(g, e, a, a_stride, row0, p, segments, segment_stride);
    } else if (g.N - p * kNR <= 24) {
      tile<ROWS, 1, 24>(g, e, a, a_stride, row0, p, segments, segment_stride);
    } else {
      tile<ROWS, 1>(g, e, a, a_stride, row0, p, segments, segment_stride);
    }
  }
}

// Unsigned A whose K is a whole number of 4-byte groups is read in place: the
// kernel would copy it unchanged (no sign flip, no K tail to fill), and never
// reads beyond byte K of a row.
inline bool reads_a_in_place(const GemmArgs& g) { return !g.a_signed && g.K == g.Kp; }

}  // namespace

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, kKR, 1, AInput::kUnsigned, 1}; }

void pack_a(const GemmArgs& g, int m, int rows, uint8_t* dst) {
  if (!reads_a_in_place(g)) pack_a_rows(g, m, rows, dst);
}

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* scratch) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  const Epilogue e = make_epilogue(g, panel_begin, panel_end);
  const bool segmented = g.a_segments > 0;
  const bool in_place = segmented || reads_a_in_place(g);
  const int segments = segmented ? g.a_segments : 1;
  const ptrdiff_t segment_stride = segmented ? g.a_segment_stride : 0;
  MEGQ_DCHECK(!segmented || (g.K == g.Kp && g.K % (kKR * segments) == 0));
  // Scratch is only needed when rows must be converted here.
  MEGQ_DCHECK(in_place || g.a_packed != nullptr || (scratch != nullptr && MEGQ_ALIGNED(scratch, 64)));
  for (int m = m_begin; m < m_end; m += kMR) {
    const int rows = m_end - m < kMR ? m_end - m : kMR;
    const uint8_t* a;
    ptrdiff_t a_stride = g.Kp;
    if (in_place) {
      a = g.a + static_cast<ptrdiff_t>(m) * g.a_stride;
      a_stride = g.a_stride;
    } else if (g.a_packed != nullptr) {
      a = g.a_packed + static_cast<ptrdiff_t>(m - g.a_packed_row0) * g.Kp;
    } else {
      pack_a_rows(g, m, rows, scratch);
      a = scratch;
    }
    with_row_count<kMR>(rows, [&](auto count) {
      row_tile<decltype(count)::value>(g, e, a, a_stride, m, panel_begin, panel_end, segments, segment_stride);
    });
  }
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
