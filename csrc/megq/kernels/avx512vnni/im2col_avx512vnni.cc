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
  for (int r = 0; r < count; ++r) {
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
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
