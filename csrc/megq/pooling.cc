// Driver for NHWC pooling: argument checks, output sizes, threads.
#include "megq/pooling.h"

#include <algorithm>
#include <string>
#include <vector>

#include "megq/aligned_buffer.h"
#include "megq/dcheck.h"
#include "megq/limits.h"
#include "megq/gemm.h"
#include "megq/isa.h"
#include "megq/qparams.h"

namespace megq {
namespace {

struct PoolingIsaEntry {
  void (*row)(const PoolRowArgs&, int, uint8_t*);
  void (*global)(const uint8_t*, ptrdiff_t, ptrdiff_t, int, int, int, int, bool, int32_t*, uint8_t*);
};

PoolingIsaEntry pooling_entry(Isa isa) {
  switch (isa) {
#ifdef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
      return {avx512vnni::pool_row, avx512vnni::global_avg_pool};
#endif
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2:
#ifndef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
#endif
      return {avx2::pool_row, avx2::global_avg_pool};
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon:
    case Isa::kNeonDot:
      return {neon::pool_row, neon::global_avg_pool};
#endif
    default:
      return {scalar::pool_row, scalar::global_avg_pool};
  }
}

constexpr int64_t kMaxPositions = 2147483647LL / 255;

}  // namespace

int pool_output_size(int size, int k, int stride, int pad, int dil, const char* axis) {
  const std::string ax(axis);
  if (k < 1) throw ArgumentError("kernel_size: expected >= 1 along " + ax + ", got " + std::to_string(k));
  if (stride < 1) throw ArgumentError("stride: expected >= 1 along " + ax + ", got " + std::to_string(stride));
  if (pad < 0) throw ArgumentError("padding: expected >= 0 along " + ax + ", got " + std::to_string(pad));
  if (dil < 1) throw ArgumentError("dilation: expected >= 1 along " + ax + ", got " + std::to_string(dil));
  const int64_t eff = static_cast<int64_t>(k - 1) * dil + 1;
  const int64_t padded = static_cast<int64_t>(size) + 2 * static_cast<int64_t>(pad);
  if (eff > padded) {
    throw ArgumentError("kernel_size: the window (" + std::to_string(eff) + " with dilation) is larger than the " +
                        "padded input (" + std::to_string(padded) + ") along " + ax);
  }
  const int64_t out64 = (padded - eff) / stride + 1;
  if (out64 > (1 << 24)) {
    throw ArgumentError("padding: the output would have " + std::to_string(out64) + " positions along " + ax +
                        " (limit 2^24)");
  }
  const int out = static_cast<int>(out64);
  for (int o = 0; o < out; ++o) {
    int i0, i1;
    valid_taps(o, k, stride, pad, dil, size, &i0, &i1);
    if (i0 >= i1) {
      throw ArgumentError("padding: output position " + std::to_string(o) + " along " + ax +
                          " has a window that covers only padding (padding " + std::to_string(pad) +
                          " is too large for kernel " + std::to_string(k) + ")");
    }
  }
  return out;
}

void pool2d(const uint8_t* x, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw, bool is_signed,
            int32_t zero_point, const Pool2dParams& p, uint8_t* y) {
  if (N < 0 || H < 1 || W < 1 || C < 1) {
    throw ArgumentError("x: expected N >= 0 and H, W, C >= 1, got N=" + std::to_string(N) + " H=" +
                        std::to_string(H) + " W=" + std::to_string(W) + " C=" + std::to_string(C));
  }
  check_zero_point("zero_point", is_signed, zero_point);
  const int OH = pool_output_size(H, p.kh, p.stride_h, p.pad_h, p.dil_h, "H");
  const int OW = pool_output_size(W, p.kw, p.stride_w, p.pad_w, p.dil_w, "W");
  if (static_cast<int64_t>(p.kh) * p.kw > kMaxPositions) {
    throw ArgumentError("kernel_size: a window of " + std::to_string(static_cast<int64_t>(p.kh) * p.kw) +
                        " taps could overflow the int32 sum");
  }
  check_output_size("x", "pool2d", {N > 0 ? N : 1, OH, OW, C}, 1);
  if (N == 0) return;
  MEGQ_DCHECK(x != nullptr && y != nullptr);
  const PoolingIsaEntry entry = pooling_entry(active_isa());
  const int taps = p.kh * p.kw;
  const int64_t rows = static_cast<int64_t>(N) * OH;
  const double bytes_per_row = static_cast<double>(OW) * C * (1 + std::min(taps, 4));
  parallel_units(rows, bytes_per_row, [&](int64_t r0, int64_t r1) {
    std::vector<const uint8_t*> tap_ptrs(taps);
    PoolRowArgs a;
    a.sh = sh;
    a.sw = sw;
    a.H = H;
    a.W = W;
    a.C = C;
    a.kh = p.kh;
    a.kw = p.kw;
    a.stride_h = p.stride_h;
    a.stride_w = p.stride_w;
    a.pad_h = p.pad_h;
    a.pad_w = p.pad_w;
    a.dil_h = p.dil_h;
    a.dil_w = p.dil_w;
    a.OW = OW;
    a.is_signed = is_signed;
    a.mode = p.mode;
    a.zero_point = zero_point;
    a.taps = tap_ptrs.data();
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / OH;
      const int oh = static_cast<int>(r % OH);
      a.src = x + n * sn;
      entry.row(a, oh, y + r * OW * C);
    }
  });
}

void global_avg_pool2d(const uint8_t* x, int N, int H, int W, int C, ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw,
                       bool is_signed, uint8_t* y) {
  if (N < 0 || H < 1 || W < 1 || C < 1) {
    throw ArgumentError("x: expected N >= 0 and H, W, C >= 1, got N=" + std::to_string(N) + " H=" +
                        std::to_string(H) + " W=" + std::to_string(W) + " C=" + std::to_string(C));
  }
  if (static_cast<int64_t>(H) * W > kMaxPositions) {
    throw ArgumentError("x: H * W = " + std::to_string(static_cast<int64_t>(H) * W) +
                        " positions could overflow the int32 sum (limit " + std::to_string(kMaxPositions) + ")");
  }
  check_output_size("x", "global_avg_pool2d", {N > 0 ? N : 1, 1, 1, C}, 1);
  if (N == 0) return;
  MEGQ_DCHECK(x != nullptr && y != nullptr);
  const PoolingIsaEntry entry = pooling_entry(active_isa());
  constexpr int kChannelBlock = 256;
  const int blocks = ceil_div_int(C, kChannelBlock);
  parallel_units(static_cast<int64_t>(N) * blocks, static_cast<double>(H) * W * std::min(C, kChannelBlock),
                 [&](int64_t u0, int64_t u1) {
                   AlignedBuffer acc(kChannelBlock * sizeof(int32_t));
                   for (int64_t u = u0; u < u1; ++u) {
                     const int64_t n = u / blocks;
                     const int c0 = static_cast<int>(u % blocks) * kChannelBlock;
                     const int c1 = std::min(C, c0 + kChannelBlock);
                     entry.global(x + n * sn, sh, sw, H, W, c0, c1, is_signed, acc.as<int32_t>(), y + n * C + c0);
                   }
                 });
}

}  // namespace megq
