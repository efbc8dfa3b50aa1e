// Interface between the depthwise conv driver (csrc/megq/depthwise.cc) and its
// per-ISA kernels (kernels/<isa>/depthwise_*.cc). Contract: depthwise.h.
//
// The driver widens each needed input row once per task into megq-owned
// scratch: int16 (x - z_x), output-channel order (input channel o / multiplier
// repeated), Wp = W + 2 * pad_w positions of Cs = round_up(C_out, 16) channels,
// zeros at padding positions and channels >= C_out. Rows above/below the image
// point at an all-zero row. So padding taps contribute exactly 0 and kernels
// read whole 16-channel tiles without tails (scratch may be over-read; the
// caller's output is written exactly).
//
// AVX2 packed layout (tile of 16 output channels, T = KH * KW taps, taps
// paired (2p, 2p + 1); an odd T gets a zero-weight last partner):
//   for each pair p: 2 vectors of 16 int16: "lo" holds, per int32 lane k,
//     (w[c][2p], w[c][2p + 1]) for channel c = kLoChannel[k] = {0,1,2,3,8,9,10,11},
//     "hi" the same for kHiChannel = {4,5,6,7,12,13,14,15} -- the order
//     vpunpck{l,h}wd produce from two 16-channel tap vectors;
//   then bias (int32) lo, hi; then multiplier (float) lo, hi  (8 values each).
//
// NEON packed layout (tile of 16 output channels): T vectors of 16 int16
// weights (tap-major: w[c][t] at t * 16 + c), then 16 int32 bias, then 16
// float multipliers.
//
// Tap-quad layout (avx512vnni). Instead of int16 rows, each input row is
// widened into the 4-byte groups one vpdpbusd lane consumes: for output column
// ow, quad q (Q = ceil(KW / 4) quads) and channel c,
//   byte k of the quad = x[ih, ow * stride_w - pad_w + (4q + k) * dil_w, c] ^ flip
// (flip = 0x80 for int8 input, so the byte is x + 128 in both cases; taps
// outside the image hold the flipped zero point z' = z_x ^ flip; bytes for
// 4q + k >= KW are arbitrary, their weight is 0). Layout of one widened row:
// [Cs / 16 tiles][OW][Q][16 channels][4 bytes], 64 bytes per (tile, ow, q),
// 64-byte aligned. Rows above/below the image point at a row filled with z'.
// As every tap reads z' outside the image and x' = x - z_x + z' inside,
//   sum_t (x - z_x) w + b = sum_t x' w + (b - z' sum_t w),
// so the packed bias is b' = b - z' sum_t w, computed modulo 2^32: vpdpbusd
// wraps, so the accumulator is exact modulo 2^32 and hence exact, as the true
// value fits in int32 (checked at pack time).
// Packed tile (16 output channels): KH x Q vectors of 64 bytes (channel c's
// 4 weights w[c][i][4q .. 4q + 3], 0 past KW), then 16 int32 b', then 16
// float multipliers.
// Group order (avx512vnni only): the first dw_full_group_tiles(Cs) tiles form
// groups of 4 (64 channels); in a group, tile k's slot (dword) 4 L + i holds
// channel 64 g + 16 L + 4 k + i (dw_quad_channel), in the packed tiles and in
// the widened rows alike, and a widened row stores the group's tiles
// interleaved per column: [OW][Q][4 tiles][64 bytes] from the group's first
// tile's offset (dw_quad_offset). This is the order a 4 x 4 byte transpose by
// vpunpck{l,h}bw then vpunpck{l,h}wd produces from 64-byte pixels, and the
// order vpackssdw then vpacksswb turn back into 64 channel-ordered bytes.
// The remaining tiles keep the tile order above. Worker tasks split the
// channels at multiples of 4 tiles (depthwise.cc), never inside a group.
// Vertical-quad layout (avx512vnni, channel multiplier 1 and KH <= 4): a
// quad holds the KH kernel rows' bytes of one pixel column instead,
//   byte i of input column iw's quad = x[oh * stride_h - pad_h + i * dil_h, iw, c] ^ flip
// (z' outside the image, anything for i >= KH), built in registers from the
// image rows by the kernel itself; output column ow adds, for each dx, the
// quad of column ow * stride_w - pad_w + dx * dil_w times the weights
// (w[c][0][dx], .., w[c][3][dx]) (0 past KH). Channels go in units of 4, 2
// or 1 tiles (64, 32 or 16 channels: the tiles [ct0, ct1) split greedily,
// 4 while 4 are left; tasks split at multiples of 4 tiles, so every split
// finds the same units), in the group order of the unit's width B = 16 x
// tiles bytes: dword i of 16-byte lane L of vector k holds channel
// c0 + 16 L + 4 k + i. Packed unit (at tile ct0 x (KW + 2) x 64 bytes):
// KW x 4 weight vectors of B bytes (dx major), then 4 vectors of b' (int32)
// and 4 of multipliers (float), same channel order.
// Signed-byte form (neondot, for sdot): the same layout with the flip applied
// to uint8 input instead (byte = x ^ 0x80 = x - 128 as int8; int8 input as
// is), z' = z_x - 128 for uint8 input (z_x for int8) and b' = b - z' sum w.
#ifndef MEGQ_KERNELS_DEPTHWISE_KERNELS_H_
#define MEGQ_KERNELS_DEPTHWISE_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "megq/dcheck.h"

namespace megq {

constexpr int kDwTile = 16;

struct DwRowArgs {
  const int16_t* const* rows;  // KH widened rows for this output row (int16 layout)
  const uint8_t* const* qrows; // KH widened rows (tap-quad layout), else null
  int Q = 1;                   // quads per kernel row (tap-quad layout)
  int ct0 = 0, ct1 = 0;        // tap-quad layout: the 16-channel tiles [ct0, ct1) to compute
  int Cs, C;                   // channel stride in the rows; real output channels
  int KH, KW, stride_w, dil_w, OW;
  const uint8_t* packed;       // ISA layout (AVX2 above)
  const int8_t* weights;       // plain C x (KH * KW) (scalar kernel)
  const int32_t* bias;         // plain, C values
  const float* multiplier;     // plain, C values
  bool out_signed;
  int32_t zo, lo, hi;
  uint8_t* out;                // OW x C bytes
  const int16_t** taps;        // scratch for KH * KW + 1 pointers
  // Vertical-quad layout (avx512vnni, no widening): the KH image rows
  // (null above / below the image), their pixel stride and width, the
  // padding in front of column 0, the input sign and z' (the byte read
  // outside the image, in the unsigned domain).
  const uint8_t* const* xrows = nullptr;
  ptrdiff_t sw = 0;
  int W = 0, pad_w = 0;
  bool in_signed = false;
  uint8_t zq = 0;
};

// Each ISA namespace provides:
//   depthwise_row: one output row.
//   widen_row: image row (W positions at src + w * sw, C_in contiguous bytes)
//     -> dst (Wp x Cs int16, as described above).
#define MEGQ_DECLARE_DEPTHWISE_ISA(ns)                                                            \
  namespace ns {                                                                                  \
  void depthwise_row(const DwRowArgs& a);                                                         \
  void widen_row(const uint8_t* src, ptrdiff_t sw, int W, int C_in, int multiplier, bool is_signed, \
                 int32_t zero_point, int pad_w, int Wp, int Cs, int16_t* dst);                    \
  }

MEGQ_DECLARE_DEPTHWISE_ISA(scalar)
MEGQ_DECLARE_DEPTHWISE_ISA(avx2)
MEGQ_DECLARE_DEPTHWISE_ISA(neon)

#undef MEGQ_DECLARE_DEPTHWISE_ISA

// One image row -> one tap-quad row (layout above).
struct DwQuadWidenArgs {
  const uint8_t* src;  // W positions at src + w * sw, C_in contiguous bytes each
  ptrdiff_t sw;
  int W, C_in, multiplier;
  bool is_signed;
  int32_t zero_point;
  int pad_w, stride_w, dil_w, KW, OW, Q, Cs;
  int ct0, ct1;  // the 16-channel tiles [ct0, ct1) to widen (the others are left alone)
  uint8_t* dst;  // Cs * OW * Q * 4 bytes, 64-byte aligned
};

// Tiles in full 64-channel groups (group order, avx512vnni; above).
inline int dw_full_group_tiles(int Cs) { return Cs / (4 * kDwTile) * 4; }

// Channel held by slot s (0..15) of tile ct (avx512vnni layout).
inline int dw_quad_channel(int ct, int s, int full_tiles) {
  if (ct < full_tiles) return (ct / 4) * 4 * kDwTile + kDwTile * (s / 4) + 4 * (ct % 4) + s % 4;
  return ct * kDwTile + s;
}

// Byte offset of tile ct's 64-byte quad vector (column ow, quad q) in a
// widened row (avx512vnni layout).
inline ptrdiff_t dw_quad_offset(int ct, int ow, int q, int OW, int Q, int full_tiles) {
  if (ct < full_tiles) {
    return (static_cast<ptrdiff_t>(ct / 4 * 4) * OW * Q + (static_cast<ptrdiff_t>(ow) * Q + q) * 4 + ct % 4) * 64;
  }
  return ((static_cast<ptrdiff_t>(ct) * OW + ow) * Q + q) * 64;
}

namespace avx512vnni {
void depthwise_row(const DwRowArgs& a);  // reads a.qrows
void widen_quads(const DwQuadWidenArgs& w);
void depthwise_row_vertical(const DwRowArgs& a);  // reads a.xrows (vertical-quad layout)
}  // namespace avx512vnni
namespace neondot {
void depthwise_row(const DwRowArgs& a);  // reads a.qrows (signed-byte form)
void widen_quads(const DwQuadWidenArgs& w);
}  // namespace neondot

// Preconditions of the kernels above (debug builds only, dcheck.h); macros
// for the same ODR reason as MEGQ_DCHECK_GEMM_BLOCK.
#define MEGQ_DCHECK_DEPTHWISE_ROW(a)                                                      \
  do {                                                                                   \
    MEGQ_DCHECK((a).rows != nullptr && (a).out != nullptr && (a).taps != nullptr);       \
    MEGQ_DCHECK((a).bias != nullptr && (a).multiplier != nullptr);                       \
    MEGQ_DCHECK((a).Cs % kDwTile == 0 && 1 <= (a).C && (a).C <= (a).Cs);                 \
    MEGQ_DCHECK((a).KH >= 1 && (a).KW >= 1 && (a).OW >= 1);                              \
    MEGQ_DCHECK((a).stride_w >= 1 && (a).dil_w >= 1);                                    \
    MEGQ_DCHECK((a).lo <= (a).hi);                                                       \
  } while (0)
#define MEGQ_DCHECK_WIDEN_ROW(src, W, C_in, multiplier, pad_w, Wp, Cs, dst)               \
  do {                                                                                   \
    MEGQ_DCHECK((src) != nullptr && (dst) != nullptr);                                   \
    MEGQ_DCHECK((W) >= 1 && (pad_w) >= 0 && (Wp) >= (W) + 2 * (pad_w));                  \
    MEGQ_DCHECK((C_in) >= 1 && (multiplier) >= 1);                                       \
    MEGQ_DCHECK(static_cast<int64_t>(C_in) * (multiplier) <= (Cs) && (Cs) % kDwTile == 0); \
  } while (0)

}  // namespace megq

#endif  // MEGQ_KERNELS_DEPTHWISE_KERNELS_H_
