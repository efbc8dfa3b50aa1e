// Patch gathering for the AVX-512 VNNI GEMM (compiled with -mavx512{f,bw,...}
// only here): writes rows of A in the kernel's packed form (conv_kernels.h),
// so the GEMM kernel reads them without a second copy, and flips the sign bit
// of signed inputs on the way (a ^ 0x80 == a + 128: the kernel's unsigned
// operand).
// Loads are masked, so no byte past a run of taps is read; stores are whole
// 64-byte vectors, allowed to spill into the rest of the row buffer (later
// writes overwrite the spill, the caller's buffer has 64 bytes of slack).
#include <immintrin.h>

#include "megq/kernels/conv_kernels.h"

namespace megq {
namespace avx512vnni {
namespace {

inline __mmask64 first_bytes(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

// Copies len bytes, xor-ed with flip. The last vector is loaded whole when it
// ends at or before `readable_end` (inside the caller's row: the extra bytes
// are read but never used), and masked otherwise. Runs of up to 32 bytes (the
// stem's 7 taps x 3 channels) take one 256-bit load and store.
inline void copy_flip(uint8_t* d, const uint8_t* s, int len, __m512i flip, uintptr_t readable_end) {
  const uintptr_t src = reinterpret_cast<uintptr_t>(s);
  if (len <= 32) {
    const __m256i f = _mm512_castsi512_si256(flip);
    const __m256i v = src + 32 <= readable_end
                          ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s))
                          : _mm256_maskz_loadu_epi8(static_cast<__mmask32>(first_bytes(len)), s);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_xor_si256(v, f));
    return;
  }
  for (; len > 64; len -= 64, s += 64, d += 64) {
    _mm512_storeu_si512(d, _mm512_xor_si512(_mm512_loadu_si512(s), flip));
  }
  const __m512i v = reinterpret_cast<uintptr_t>(s) + 64 <= readable_end
                        ? _mm512_loadu_si512(s)
                        : _mm512_maskz_loadu_epi8(first_bytes(len), s);
  _mm512_storeu_si512(d, _mm512_xor_si512(v, flip));
}

inline void fill(uint8_t* d, int len, __m512i v) {
  if (len <= 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm512_castsi512_si256(v));
    return;
  }
  for (; len > 0; len -= 64, d += 64) _mm512_storeu_si512(d, v);
}

// Rows whose taps are all inside the image horizontally, for layers whose
// rows fit one vector (Kp <= 64, e.g. the 3x3 stem over 3 channels: K = 27):
// a row is built in a register, each tap row's bytes merged in with one
// masked load at their place in the row, and stored whole. Per pixel this
// replaces a load and an overlapping store per tap row plus the per-row
// bookkeeping, which cost more than the GEMM itself for the 3x3 stem. (Rows
// longer than a vector split tap rows between vectors, and the per-tap-row
// copies below were faster there: the 7x7 stem.)
constexpr int kMaxTapRows = 8;

struct RowPlan {
  int tap_rows;
  __mmask64 mask[kMaxTapRows];  // bytes of tap row ky in the row
  __mmask64 k_mask;             // bytes below K
};

// False when the layer does not fit (then the general path runs).
bool make_row_plan(const Im2colArgs& g, int run, RowPlan* plan) {
  if (g.Kp > 64 || g.kernel_h > kMaxTapRows) return false;
  plan->tap_rows = g.kernel_h;
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    plan->mask[ky] = first_bytes((ky + 1) * run) & ~first_bytes(ky * run);
  }
  plan->k_mask = first_bytes(g.K);
  return true;
}

// Pixels [ox, ox + count) of output row oy of image n, every one with its
// taps inside the image horizontally; rows of Kp bytes from d.
template <int TAP_ROWS>
void rows_in_registers(const Im2colArgs& g, const RowPlan& plan, int n, int oy, int ox, int count, uint8_t* d,
                       __m512i flip, __m512i pad) {
  const int iy0 = oy * g.stride_y - g.pad_y;
  const uint8_t* image = g.x + n * g.stride_n;
  const ptrdiff_t step = static_cast<ptrdiff_t>(g.stride_x) * g.stride_w;
  const ptrdiff_t x_offset = static_cast<ptrdiff_t>(ox * g.stride_x - g.pad_x) * g.stride_w;
  // Per tap row, for this output row: where row byte 0 would come from for
  // pixel ox (computed as an integer: for ky > 0 it lies before the tap row's
  // run, at bytes the mask excludes, which a masked load never touches), and
  // the mask, empty for tap rows outside the image (padded instead).
  uintptr_t base[TAP_ROWS];
  __mmask64 load_mask[TAP_ROWS];
  __mmask64 pad_mask = 0;
  const int run = g.kernel_w * g.channels;
  for (int ky = 0; ky < TAP_ROWS; ++ky) {
    const int iy = iy0 + ky * g.dilation_y;
    const bool inside = iy >= 0 && iy < g.height;
    const uint8_t* run_start = image + (inside ? iy : 0) * g.stride_h + x_offset;
    base[ky] = reinterpret_cast<uintptr_t>(run_start) - static_cast<uintptr_t>(ky * run);
    load_mask[ky] = inside ? plan.mask[ky] : 0;
    if (!inside) pad_mask |= plan.mask[ky];
  }
  const __mmask64 k_mask = plan.k_mask;
  for (int r = 0; r < count; ++r, d += g.Kp) {
    __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int ky = 0; ky < TAP_ROWS; ++ky) {
      v = _mm512_or_si512(v, _mm512_maskz_loadu_epi8(load_mask[ky], reinterpret_cast<const void*>(base[ky])));
      base[ky] += static_cast<uintptr_t>(step);
    }
    // Flip the taps, pad the tap rows outside the image, zero [K, Kp). The
    // store may spill up to 64 - Kp bytes past the row: into the next row
    // (written after) or the caller's slack.
    v = _mm512_mask_mov_epi8(_mm512_xor_si512(v, flip), pad_mask, pad);
    _mm512_storeu_si512(d, _mm512_maskz_mov_epi8(k_mask, v));
  }
}

// Not inlined into gather_rows: it would crowd out the registers of the general
// loop there, which still gathers the pixels near the left and right borders.
__attribute__((noinline)) void rows_in_registers(const Im2colArgs& g, const RowPlan& plan, int n, int oy, int ox,
                                                 int count, uint8_t* d, __m512i flip, __m512i pad) {
  switch (plan.tap_rows) {
    case 1: return rows_in_registers<1>(g, plan, n, oy, ox, count, d, flip, pad);
    case 2: return rows_in_registers<2>(g, plan, n, oy, ox, count, d, flip, pad);
    case 3: return rows_in_registers<3>(g, plan, n, oy, ox, count, d, flip, pad);
    case 4: return rows_in_registers<4>(g, plan, n, oy, ox, count, d, flip, pad);
    case 5: return rows_in_registers<5>(g, plan, n, oy, ox, count, d, flip, pad);
    case 6: return rows_in_registers<6>(g, plan, n, oy, ox, count, d, flip, pad);
    case 7: return rows_in_registers<7>(g, plan, n, oy, ox, count, d, flip, pad);
    default: return rows_in_registers<8>(g, plan, n, oy, ox, count, d, flip, pad);
  }
}

// im2col_packed, with (PLANNED) or without the rows built in registers:
// two instantiations, so that the general loop compiles as it would alone.
template <bool PLANNED>
void gather_rows(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst, const RowPlan& plan) {
  // A private copy: the byte stores below cannot alias it, so its fields stay
  // in registers.
  const Im2colArgs g = args;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(g.flip));
  const __m512i pad = _mm512_set1_epi8(static_cast<char>(g.pad_value));
  const int cin = g.channels, kw = g.kernel_w;
  const int run = kw * cin;  // bytes of one row of taps
  // Adjacent taps are adjacent in memory: a row of taps inside the image is
  // one run of kw * cin bytes.
  const bool contiguous = g.dilation_x == 1 && g.stride_w == cin;
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(g.width - 1) * g.stride_w + cin;
  int n = pixel_begin / (g.out_h * g.out_w);
  int oy = (pixel_begin / g.out_w) % g.out_h;
  int ox = pixel_begin % g.out_w;
  const ptrdiff_t tap_row_step = static_cast<ptrdiff_t>(g.dilation_y) * g.stride_h;
  // Output columns whose taps are all inside the image horizontally.
  const int ox_lo = (g.pad_x + g.stride_x - 1) / g.stride_x;
  const int last_x = g.width - 1 - (kw - 1) * g.dilation_x + g.pad_x;
  const int ox_hi = last_x < 0 ? -1 : last_x / g.stride_x;
  for (int r = 0; r < count; ++r) {
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    bool in_registers = false;
    if constexpr (PLANNED) in_registers = ox >= ox_lo && ox <= ox_hi;
    if (in_registers) {
      const int m = count - r < ox_hi - ox + 1 ? count - r : ox_hi - ox + 1;
      rows_in_registers(g, plan, n, oy, ox, m, d, flip, pad);
      r += m - 1;
      ox += m - 1;  // the last of them; advanced below
    } else {
    const uint8_t* image = g.x + n * g.stride_n;
    const int ix0 = ox * g.stride_x - g.pad_x;
    const bool x_inside = ix0 >= 0 && ix0 + (kw - 1) * g.dilation_x < g.width;
    const int iy0 = oy * g.stride_y - g.pad_y;
    if (contiguous && x_inside) {
      // The common case, kept tight: rows of taps above the image, inside it
      // (one run each), below it. A whole-vector load of a run starting at
      // byte `offset` of a row stays inside the row when offset + width <=
      // row_bytes, the same for every row.
      int ky_begin = 0, ky_end = g.kernel_h;
      while (ky_begin < ky_end && iy0 + ky_begin * g.dilation_y < 0) ++ky_begin;
      while (ky_end > ky_begin && iy0 + (ky_end - 1) * g.dilation_y >= g.height) --ky_end;
      for (int ky = 0; ky < ky_begin; ++ky, d += run) fill(d, run, pad);
      const ptrdiff_t offset = static_cast<ptrdiff_t>(ix0) * g.stride_w;
      const uint8_t* src = image + static_cast<ptrdiff_t>(iy0 + ky_begin * g.dilation_y) * g.stride_h + offset;
      if (run <= 32 && offset + 32 <= row_bytes) {
        const __m256i f = _mm512_castsi512_si256(flip);
        for (int ky = ky_begin; ky < ky_end; ++ky, d += run, src += tap_row_step) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_xor_si256(v, f));
        }
      } else {
        const uintptr_t end_shift = static_cast<uintptr_t>(row_bytes - offset);
        for (int ky = ky_begin; ky < ky_end; ++ky, d += run, src += tap_row_step) {
          copy_flip(d, src, run, flip, reinterpret_cast<uintptr_t>(src) + end_shift);
        }
      }
      for (int ky = ky_end; ky < g.kernel_h; ++ky, d += run) fill(d, run, pad);
    } else {
      for (int ky = 0; ky < g.kernel_h; ++ky, d += run) {
        const int iy = iy0 + ky * g.dilation_y;
        if (iy < 0 || iy >= g.height) {
          fill(d, run, pad);
          continue;
        }
        const uint8_t* row = image + iy * g.stride_h;
        // One past the row's last byte (for a positive pixel stride): reading
        // below it stays inside the caller's row.
        const uintptr_t readable_end = g.stride_w > 0 ? reinterpret_cast<uintptr_t>(row + row_bytes) : 0;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ix0 + kx * g.dilation_x;
          if (ix < 0 || ix >= g.width) {
            fill(d + kx * cin, cin, pad);
          } else {
            copy_flip(d + kx * cin, row + ix * g.stride_w, cin, flip, readable_end);
          }
        }
      }
    }
    // d is at byte K of the row: zero the (at most 3) bytes up to Kp.
    const uint32_t zero = 0;
    __builtin_memcpy(d, &zero, 4);
    }
    if (++ox == g.out_w) {
      ox = 0;
      if (++oy == g.out_h) oy = 0, ++n;
    }
  }
}

}  // namespace

void im2col_packed(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst) {
  RowPlan plan;
  if (args.dilation_x == 1 && args.stride_w == args.channels &&
      make_row_plan(args, args.kernel_w * args.channels, &plan)) {
    gather_rows<true>(args, pixel_begin, count, dst, plan);
  } else {
    gather_rows<false>(args, pixel_begin, count, dst, plan);
  }
}

void band_rows(const Im2colArgs& args, int n, int oy, uint8_t* dst, ptrdiff_t band_row_bytes) {
  const Im2colArgs g = args;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(g.flip));
  const __m512i pad = _mm512_set1_epi8(static_cast<char>(g.pad_value));
  const int cin = g.channels;
  const int band_w = g.out_w + g.kernel_w - 1;  // pixels, from input column -pad_x
  const int left = g.pad_x < band_w ? g.pad_x : band_w;  // pixels left of the image
  const int inside_end = g.width + g.pad_x < band_w ? g.width + g.pad_x : band_w;
  const int inside = inside_end > left ? inside_end - left : 0;
  const uint8_t* image = g.x + n * g.stride_n;
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    uint8_t* d = dst + ky * band_row_bytes;
    const int iy = oy * g.stride_y - g.pad_y + ky * g.dilation_y;
    if (iy < 0 || iy >= g.height) {
      fill(d, band_w * cin, pad);
      continue;
    }
    // Left padding, the row (whole vectors inside it, masked at its end),
    // right padding; each store may spill into the next part, written after.
    fill(d, left * cin, pad);
    const uint8_t* src = image + iy * g.stride_h;
    uint8_t* m = d + left * cin;
    int len = inside * cin;
    for (; len >= 64; len -= 64, src += 64, m += 64) {
      _mm512_storeu_si512(m, _mm512_xor_si512(_mm512_loadu_si512(src), flip));
    }
    if (len > 0) _mm512_storeu_si512(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(first_bytes(len), src), flip));
    fill(d + (left + inside) * cin, (band_w - left - inside) * cin, pad);
  }
}

}  // namespace avx512vnni
}  // namespace megq
