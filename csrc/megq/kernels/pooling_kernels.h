// Interface between the NHWC pooling driver (csrc/megq/pooling.cc) and its
// per-ISA kernels (kernels/<isa>/pooling_*.cc). Contract: pooling.h.
// Kernels read only the window taps inside the image (the driver guarantees
// every window has at least one) and write exactly the output bytes given.
#ifndef MEGQ_KERNELS_POOLING_KERNELS_H_
#define MEGQ_KERNELS_POOLING_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "megq/dcheck.h"

namespace megq {

enum class PoolMode { kMax = 0, kAvgExcludePadding = 1, kAvgIncludePadding = 2 };

struct PoolRowArgs {
  const uint8_t* src;   // image n, (h, w, c) at src[h * sh + w * sw + c]
  ptrdiff_t sh, sw;     // bytes
  int H, W, C;
  int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int OW;
  bool is_signed;
  PoolMode mode;
  int32_t zero_point;   // include-padding average: each padding tap adds z
  const uint8_t** taps; // scratch for kh * kw pointers
};

// Each ISA namespace provides:
//   pool_row: output row oh (OW x C bytes at dst).
//   global_avg_pool: channels [c0, c1) of one image (H x W positions at
//     src[h * sh + w * sw + c]) -> dst[c - c0]; acc: scratch of c1 - c0 int32.
#define MEGQ_DECLARE_POOLING_ISA(ns)                                                               \
  namespace ns {                                                                                   \
  void pool_row(const PoolRowArgs& a, int oh, uint8_t* dst);                                       \
  void global_avg_pool(const uint8_t* src, ptrdiff_t sh, ptrdiff_t sw, int H, int W, int c0, int c1, \
                       bool is_signed, int32_t* acc, uint8_t* dst);                                \
  }

MEGQ_DECLARE_POOLING_ISA(scalar)
MEGQ_DECLARE_POOLING_ISA(avx2)
MEGQ_DECLARE_POOLING_ISA(avx512vnni)
MEGQ_DECLARE_POOLING_ISA(neon)

#undef MEGQ_DECLARE_POOLING_ISA

// Preconditions of pool_row (debug builds only, dcheck.h).
#define MEGQ_DCHECK_POOL_ROW(a, oh, dst)                                                  \
  do {                                                                                   \
    MEGQ_DCHECK((a).src != nullptr && (dst) != nullptr && (a).taps != nullptr);          \
    MEGQ_DCHECK((a).H >= 1 && (a).W >= 1 && (a).C >= 1 && (a).OW >= 1 && (oh) >= 0);     \
    MEGQ_DCHECK((a).kh >= 1 && (a).kw >= 1 && (a).stride_h >= 1 && (a).stride_w >= 1);   \
    MEGQ_DCHECK((a).pad_h >= 0 && (a).pad_w >= 0 && (a).dil_h >= 1 && (a).dil_w >= 1);   \
  } while (0)

// Valid tap range helpers shared by the kernels: the taps i in [0, k) with
// 0 <= o * stride - pad + i * dil < size.
inline void valid_taps(int o, int k, int stride, int pad, int dil, int size, int* i0, int* i1) {
  const int start = o * stride - pad;
  int b = 0;
  while (b < k && start + b * dil < 0) ++b;
  int e = k;
  while (e > b && start + (e - 1) * dil >= size) --e;
  *i0 = b;
  *i1 = e;
}

}  // namespace megq

#endif  // MEGQ_KERNELS_POOLING_KERNELS_H_
