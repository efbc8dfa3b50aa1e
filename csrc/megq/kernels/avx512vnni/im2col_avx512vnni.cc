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
// ends before `readable_end` (inside the image's bytes: the spill is read but
// never used), and masked otherwise.
inline void copy_flip(uint8_t* d, const uint8_t* s, int len, __m512i flip, uintptr_t readable_end) {
  for (; len > 64; len -= 64, s += 64, d += 64) {
    _mm512_storeu_si512(d, _mm512_xor_si512(_mm512_loadu_si512(s), flip));
  }
  const __m512i v = reinterpret_cast<uintptr_t>(s) + 64 <= readable_end ? _mm512_loadu_si512(s)
                                                                        : _mm512_maskz_loadu_epi8(first_bytes(len), s);
  _mm512_storeu_si512(d, _mm512_xor_si512(v, flip));
}

inline void fill(uint8_t* d, int len, __m512i v) {
  for (; len > 0; len -= 64, d += 64) _mm512_storeu_si512(d, v);
}

}  // namespace

void im2col_packed(const Im2colArgs& g, int pixel_begin, int count, uint8_t* dst) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(g.flip));
  const __m512i pad = _mm512_set1_epi8(static_cast<char>(g.pad_value));
  const int cin = g.channels, kw = g.kernel_w;
  const int run = kw * cin;  // bytes of one row of taps
  // Adjacent taps are adjacent in memory: a row of taps inside the image is
  // one run of kw * cin bytes.
  const bool contiguous = g.dilation_x == 1 && g.stride_w == cin;
  int n = pixel_begin / (g.out_h * g.out_w);
  int oy = (pixel_begin / g.out_w) % g.out_h;
  int ox = pixel_begin % g.out_w;
  for (int r = 0; r < count; ++r) {
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    const uint8_t* image = g.x + n * g.stride_n;
    const int ix0 = ox * g.stride_x - g.pad_x;
    const bool x_inside = ix0 >= 0 && ix0 + (kw - 1) * g.dilation_x < g.width;
    for (int ky = 0; ky < g.kernel_h; ++ky, d += run) {
      const int iy = oy * g.stride_y - g.pad_y + ky * g.dilation_y;
      if (iy < 0 || iy >= g.height) {
        fill(d, run, pad);
        continue;
      }
      const uint8_t* row = image + iy * g.stride_h;
      // One past the row's last byte (for a positive pixel stride): reading
      // below it stays inside the caller's row.
      const uintptr_t readable_end =
          g.stride_w > 0 ? reinterpret_cast<uintptr_t>(row + (g.width - 1) * g.stride_w + cin) : 0;
      if (contiguous && x_inside) {
        copy_flip(d, row + ix0 * g.stride_w, run, flip, readable_end);
        continue;
      }
      for (int kx = 0; kx < kw; ++kx) {
        const int ix = ix0 + kx * g.dilation_x;
        if (ix < 0 || ix >= g.width) {
          fill(d + kx * cin, cin, pad);
        } else {
          copy_flip(d + kx * cin, row + ix * g.stride_w, cin, flip, readable_end);
        }
      }
    }
    // d is at byte K of the row now.
    fill(d, g.Kp - g.K, _mm512_setzero_si512());
    if (++ox == g.out_w) {
      ox = 0;
      if (++oy == g.out_h) oy = 0, ++n;
    }
  }
}

}  // namespace avx512vnni
}  // namespace megq
