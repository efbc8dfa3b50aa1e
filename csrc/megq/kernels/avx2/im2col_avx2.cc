// Patch gathering for the AVX2 GEMM (compiled with -mavx2 only here): writes
// rows of A in the kernel's packed form (conv_kernels.h), int16 a - z_a, so
// the kernel reads them without widening them again. Padding taps are 0
// (z_a - z_a).
// A 16-byte load is used only where it stays inside the caller's row; other
// tails go byte by byte. Stores are whole 32-byte vectors (16 elements),
// allowed to spill into the rest of the row buffer (later writes overwrite the
// spill, the caller's buffer has 64 bytes of slack).
#include <immintrin.h>

#include "megq/kernels/conv_kernels.h"

namespace megq {
namespace avx2 {
namespace {

struct Widen {
  bool is_signed;
  __m256i zp;
  int32_t zero_point;

  __m256i operator()(__m128i bytes) const {
    const __m256i wide = is_signed ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
    return _mm256_sub_epi16(wide, zp);
  }
  int16_t one(uint8_t b) const {
    return static_cast<int16_t>((is_signed ? static_cast<int32_t>(static_cast<int8_t>(b)) : b) - zero_point);
  }
};

// Writes len elements from len bytes at s; whole 16-byte loads while they end
// at or before `readable_end`.
inline void copy_widen(int16_t* d, const uint8_t* s, int len, const Widen& w, uintptr_t readable_end) {
  for (; len > 0 && reinterpret_cast<uintptr_t>(s) + 16 <= readable_end; len -= 16, s += 16, d += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), w(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s))));
  }
  for (int i = 0; i < len; ++i) d[i] = w.one(s[i]);
}

inline void zero(int16_t* d, int len) {
  for (; len > 0; len -= 16, d += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_setzero_si256());
}

}  // namespace

void im2col_packed(const Im2colArgs& args, int pixel_begin, int count, uint8_t* dst_bytes) {
  // A private copy: the stores below cannot alias it.
  const Im2colArgs g = args;
  const Widen w{g.input_signed, _mm256_set1_epi16(static_cast<int16_t>(g.zero_point)), g.zero_point};
  int16_t* dst = reinterpret_cast<int16_t*>(dst_bytes);
  const int cin = g.channels, kw = g.kernel_w;
  const int run = kw * cin;
  const bool contiguous = g.dilation_x == 1 && g.stride_w == cin;
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(g.width - 1) * g.stride_w + cin;
  const ptrdiff_t tap_row_step = static_cast<ptrdiff_t>(g.dilation_y) * g.stride_h;
  int n = pixel_begin / (g.out_h * g.out_w);
  int oy = (pixel_begin / g.out_w) % g.out_h;
  int ox = pixel_begin % g.out_w;
  for (int r = 0; r < count; ++r) {
    int16_t* d = dst + static_cast<ptrdiff_t>(r) * g.Kp;
    const uint8_t* image = g.x + n * g.stride_n;
    const int ix0 = ox * g.stride_x - g.pad_x;
    const bool x_inside = ix0 >= 0 && ix0 + (kw - 1) * g.dilation_x < g.width;
    const int iy0 = oy * g.stride_y - g.pad_y;
    if (contiguous && x_inside) {
      int ky_begin = 0, ky_end = g.kernel_h;
      while (ky_begin < ky_end && iy0 + ky_begin * g.dilation_y < 0) ++ky_begin;
      while (ky_end > ky_begin && iy0 + (ky_end - 1) * g.dilation_y >= g.height) --ky_end;
      for (int ky = 0; ky < ky_begin; ++ky, d += run) zero(d, run);
      const ptrdiff_t offset = static_cast<ptrdiff_t>(ix0) * g.stride_w;
      const uint8_t* src = image + static_cast<ptrdiff_t>(iy0 + ky_begin * g.dilation_y) * g.stride_h + offset;
      const uintptr_t end_shift = static_cast<uintptr_t>(row_bytes - offset);
      for (int ky = ky_begin; ky < ky_end; ++ky, d += run, src += tap_row_step) {
        copy_widen(d, src, run, w, reinterpret_cast<uintptr_t>(src) + end_shift);
      }
      for (int ky = ky_end; ky < g.kernel_h; ++ky, d += run) zero(d, run);
    } else {
      for (int ky = 0; ky < g.kernel_h; ++ky, d += run) {
        const int iy = iy0 + ky * g.dilation_y;
        if (iy < 0 || iy >= g.height) {
          zero(d, run);
          continue;
        }
        const uint8_t* row = image + iy * g.stride_h;
        const uintptr_t readable_end = g.stride_w > 0 ? reinterpret_cast<uintptr_t>(row + row_bytes) : 0;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ix0 + kx * g.dilation_x;
          if (ix < 0 || ix >= g.width) {
            zero(d + kx * cin, cin);
          } else {
            copy_widen(d + kx * cin, row + ix * g.stride_w, cin, w, readable_end);
          }
        }
      }
    }
    // d is at element K of the row: zero the (at most 1) element up to Kp.
    for (int k = g.K; k < g.Kp; ++k, ++d) *d = 0;
    if (++ox == g.out_w) {
      ox = 0;
      if (++oy == g.out_h) oy = 0, ++n;
    }
  }
}

namespace {

// Copies len bytes from s to d, ORing them into acc; whole 32/16-byte loads
// while they end at or before `readable_end`, whole 32-byte stores (may spill
// past len into the row buffer, like copy_widen).
inline __m256i copy_or(uint8_t* d, const uint8_t* s, int len, uintptr_t readable_end, __m256i acc) {
  for (; len > 0 && reinterpret_cast<uintptr_t>(s) + 32 <= readable_end; len -= 32, s += 32, d += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
    if (len < 32) {  // bytes past len are the next taps' or other pixels': keep them out of the OR
      const __m256i lane = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                                            20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
      v = _mm256_and_si256(v, _mm256_cmpgt_epi8(_mm256_set1_epi8(static_cast<char>(len)), lane));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), v);
    acc = _mm256_or_si256(acc, v);
  }
  uint32_t tail = 0;
  for (int i = 0; i < len; ++i) {
    d[i] = s[i];
    tail |= s[i];
  }
  return _mm256_or_si256(acc, _mm256_set1_epi32(static_cast<int32_t>(tail)));
}

inline void fill(uint8_t* d, int len, uint8_t value) {
  const __m256i v = _mm256_set1_epi8(static_cast<char>(value));
  for (; len > 0; len -= 32, d += 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), v);
}

}  // namespace

bool im2col_u7(const Im2colArgs& args, int Kp_u7, int pixel_begin, int count, uint8_t* dst) {
  const Im2colArgs g = args;
  const uint8_t pad = static_cast<uint8_t>(g.zero_point);
  const int cin = g.channels, kw = g.kernel_w;
  const int run = kw * cin;
  const bool contiguous = g.dilation_x == 1 && g.stride_w == cin;
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(g.width - 1) * g.stride_w + cin;
  const ptrdiff_t tap_row_step = static_cast<ptrdiff_t>(g.dilation_y) * g.stride_h;
  // The padding byte enters the OR only where padding is written.
  const __m256i pad_seen = _mm256_set1_epi8(static_cast<char>(pad));
  int n = pixel_begin / (g.out_h * g.out_w);
  int oy = (pixel_begin / g.out_w) % g.out_h;
  int ox = pixel_begin % g.out_w;
  for (int r = 0; r < count; ++r) {
    __m256i seen = _mm256_setzero_si256();
    uint8_t* d = dst + static_cast<ptrdiff_t>(r) * Kp_u7;
    const uint8_t* image = g.x + n * g.stride_n;
    const int ix0 = ox * g.stride_x - g.pad_x;
    const bool x_inside = ix0 >= 0 && ix0 + (kw - 1) * g.dilation_x < g.width;
    const int iy0 = oy * g.stride_y - g.pad_y;
    if (contiguous && x_inside) {
      int ky_begin = 0, ky_end = g.kernel_h;
      while (ky_begin < ky_end && iy0 + ky_begin * g.dilation_y < 0) ++ky_begin;
      while (ky_end > ky_begin && iy0 + (ky_end - 1) * g.dilation_y >= g.height) --ky_end;
      if (ky_begin > 0 || ky_end < g.kernel_h) seen = pad_seen;
      for (int ky = 0; ky < ky_begin; ++ky, d += run) fill(d, run, pad);
      const ptrdiff_t offset = static_cast<ptrdiff_t>(ix0) * g.stride_w;
      const uint8_t* src = image + static_cast<ptrdiff_t>(iy0 + ky_begin * g.dilation_y) * g.stride_h + offset;
      const uintptr_t end_shift = static_cast<uintptr_t>(row_bytes - offset);
      for (int ky = ky_begin; ky < ky_end; ++ky, d += run, src += tap_row_step) {
        seen = copy_or(d, src, run, reinterpret_cast<uintptr_t>(src) + end_shift, seen);
      }
      for (int ky = ky_end; ky < g.kernel_h; ++ky, d += run) fill(d, run, pad);
    } else {
      for (int ky = 0; ky < g.kernel_h; ++ky, d += run) {
        const int iy = iy0 + ky * g.dilation_y;
        if (iy < 0 || iy >= g.height) {
          fill(d, run, pad);
          seen = _mm256_or_si256(seen, pad_seen);
          continue;
        }
        const uint8_t* row = image + iy * g.stride_h;
        const uintptr_t readable_end = g.stride_w > 0 ? reinterpret_cast<uintptr_t>(row + row_bytes) : 0;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ix0 + kx * g.dilation_x;
          if (ix < 0 || ix >= g.width) {
            fill(d + kx * cin, cin, pad);
            seen = _mm256_or_si256(seen, pad_seen);
          } else {
            seen = copy_or(d + kx * cin, row + ix * g.stride_w, cin, readable_end, seen);
          }
        }
      }
    }
    // d is at element K of the row: zero the (at most 3) bytes up to Kp_u7.
    for (int k = g.K; k < Kp_u7; ++k, ++d) *d = 0;
    if (_mm256_movemask_epi8(seen) != 0) return false;  // a byte >= 128: not exact in 7 bits
    if (++ox == g.out_w) {
      ox = 0;
      if (++oy == g.out_h) oy = 0, ++n;
    }
  }
  return true;
}

}  // namespace avx2
}  // namespace megq
