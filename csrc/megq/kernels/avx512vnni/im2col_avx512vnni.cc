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

// Rows whose taps are all inside the image horizontally, for layers with few
// bytes of taps (K <= kMaxChunks * 64: the stems, Cin = 3): a row is built in
// registers, 64 bytes at a time, each tap row's bytes merged in with one
// masked load at their place in the row, and stored whole. Per pixel this
// replaces a load and an overlapping store per tap row plus the per-row
// bookkeeping, which cost more than the GEMM itself for the 3x3 stem.
constexpr int kMaxChunks = 4;
constexpr int kMaxPieces = 24;

struct Piece {         // the bytes of tap row ky that fall into one 64-byte chunk of the row
  int ky;
  __mmask64 mask;      // their bytes in the chunk
  ptrdiff_t shift;     // chunk byte j holds byte j + shift of the tap row's run
};

struct RowPlan {
  int chunks;
  int first[kMaxChunks + 1];  // pieces of chunk c: [first[c], first[c + 1])
  Piece pieces[kMaxPieces];
  __mmask64 k_mask[kMaxChunks];  // bytes below K in each chunk
};

// False when the layer does not fit (then the general path runs).
bool make_row_plan(const Im2colArgs& g, int run, RowPlan* plan) {
  const int chunks = (g.Kp + 63) / 64;
  if (chunks > kMaxChunks) return false;
  plan->chunks = chunks;
  int count = 0;
  for (int c = 0; c < chunks; ++c) {
    plan->first[c] = count;
    const int c_lo = 64 * c, c_hi = 64 * c + 64 < g.K ? 64 * c + 64 : g.K;
    plan->k_mask[c] = first_bytes(c_hi - c_lo);
    for (int ky = 0; ky < g.kernel_h; ++ky) {
      const int lo = ky * run > c_lo ? ky * run : c_lo;
      const int hi = ky * run + run < c_hi ? ky * run + run : c_hi;
      if (lo >= hi) continue;
      if (count == kMaxPieces) return false;
      plan->pieces[count++] = Piece{ky, first_bytes(hi - c_lo) & ~first_bytes(lo - c_lo), c_lo - ky * run};
    }
  }
  plan->first[chunks] = count;
  return true;
}

template <int P>
void rows_one_chunk(const uintptr_t* base, const __mmask64* load_mask, __mmask64 k_mask, __mmask64 pad_mask,
                    ptrdiff_t step, int count, int Kp, uint8_t* d, __m512i flip, __m512i pad) {
  const uint8_t* b[P];
  __mmask64 m[P];
  for (int i = 0; i < P; ++i) {
    b[i] = reinterpret_cast<const uint8_t*>(base[i]);
    m[i] = load_mask[i];
  }
  for (int r = 0; r < count; ++r, d += Kp) {
    __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int i = 0; i < P; ++i) {
      v = _mm512_or_si512(v, _mm512_maskz_loadu_epi8(m[i], b[i]));
      b[i] += step;
    }
    v = _mm512_mask_mov_epi8(_mm512_xor_si512(v, flip), pad_mask, pad);
    _mm512_storeu_si512(d, _mm512_maskz_mov_epi8(k_mask, v));
  }
}

// Pixels [ox, ox + count) of output row oy of image n, every one with its
// taps inside the image horizontally; rows of Kp bytes from d.
void rows_in_registers(const Im2colArgs& g, const RowPlan& plan, int n, int oy, int ox, int count, uint8_t* d,
                       __m512i flip, __m512i pad) {
  const int iy0 = oy * g.stride_y - g.pad_y;
  const uint8_t* image = g.x + n * g.stride_n;
  const ptrdiff_t step = static_cast<ptrdiff_t>(g.stride_x) * g.stride_w;
  // Per piece, for this output row: where chunk byte 0 would come from for
  // pixel ox (computed as an integer: for most pieces it lies before the tap
  // row's run, at bytes the mask excludes, which a masked load never
  // touches), and the mask, empty for tap rows outside the image.
  uintptr_t base[kMaxPieces];
  __mmask64 load_mask[kMaxPieces];
  __mmask64 pad_mask[kMaxChunks];
  for (int c = 0; c < plan.chunks; ++c) {
    pad_mask[c] = 0;
    for (int i = plan.first[c]; i < plan.first[c + 1]; ++i) {
      const Piece& p = plan.pieces[i];
      const int iy = iy0 + p.ky * g.dilation_y;
      const bool inside = iy >= 0 && iy < g.height;
      const uint8_t* run_start = image + (inside ? iy : 0) * g.stride_h +
                                 static_cast<ptrdiff_t>(ox * g.stride_x - g.pad_x) * g.stride_w;
      base[i] = reinterpret_cast<uintptr_t>(run_start) + static_cast<uintptr_t>(p.shift);
      load_mask[i] = inside ? p.mask : 0;
      if (!inside) pad_mask[c] |= p.mask;
    }
  }
  if (plan.chunks == 1 && plan.first[1] <= 4) {
    // One chunk (Kp <= 64, e.g. the 3x3 stem): pieces in registers.
    const __mmask64 k = plan.k_mask[0], pm = pad_mask[0];
    switch (plan.first[1]) {
      case 1: return rows_one_chunk<1>(base, load_mask, k, pm, step, count, g.Kp, d, flip, pad);
      case 2: return rows_one_chunk<2>(base, load_mask, k, pm, step, count, g.Kp, d, flip, pad);
      case 3: return rows_one_chunk<3>(base, load_mask, k, pm, step, count, g.Kp, d, flip, pad);
      default: return rows_one_chunk<4>(base, load_mask, k, pm, step, count, g.Kp, d, flip, pad);
    }
  }
  for (int r = 0; r < count; ++r, d += g.Kp) {
    const uintptr_t offset = static_cast<uintptr_t>(r * step);
    for (int c = 0; c < plan.chunks; ++c) {
      __m512i v = _mm512_setzero_si512();
      for (int i = plan.first[c]; i < plan.first[c + 1]; ++i) {
        v = _mm512_or_si512(v, _mm512_maskz_loadu_epi8(load_mask[i], reinterpret_cast<const void*>(base[i] + offset)));
      }
      // Flip the taps, pad the tap rows outside the image, zero [K, Kp).
      v = _mm512_mask_mov_epi8(_mm512_xor_si512(v, flip), pad_mask[c], pad);
      // The store may spill up to 64 bytes past the row: into the next row
      // (written after) or the caller's slack.
      _mm512_storeu_si512(d + 64 * c, _mm512_maskz_mov_epi8(plan.k_mask[c], v));
    }
  }
}

}  // namespace

void im2col_packed(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst) {
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
  RowPlan plan;
  const bool planned = contiguous && make_row_plan(g, run, &plan);
  // Output columns whose taps are all inside the image horizontally.
  const int ox_lo = (g.pad_x + g.stride_x - 1) / g.stride_x;
  const int last_x = g.width - 1 - (kw - 1) * g.dilation_x + g.pad_x;
  const int ox_hi = last_x < 0 ? -1 : last_x / g.stride_x;
  for (int r = 0; r < count; ++r) {
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    if (planned && ox >= ox_lo && ox <= ox_hi) {
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
