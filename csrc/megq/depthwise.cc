// Depthwise conv driver: checks, packing, row widening into per-task scratch,
// and the split of the output into (image, band of rows, channel tiles) tasks.
#include "megq/depthwise.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "megq/dcheck.h"
#include "megq/limits.h"
#include "megq/qparams.h"
#include "megq/thread_pool.h"

namespace megq {
namespace {

// How an ISA wants its weights packed and its input rows widened.
enum class DwLayout {
  kPlain,      // scalar: no packed tiles, int16 rows
  kAvx2Pairs,  // int16 rows, AVX2 tap-pair tiles
  kNeonTaps,   // int16 rows, NEON tap-major tiles
  kQuads,      // tap-quad rows and tiles, unsigned bytes (avx512vnni: vpdpbusd)
  kQuadsS8,    // tap-quad rows and tiles, signed bytes (neondot: sdot)
  kVertical,   // vertical-quad units, no widening (avx512vnni, multiplier 1 and KH <= 4)
};

struct DepthwiseIsaEntry {
  void (*row)(const DwRowArgs&);
  void (*widen)(const uint8_t*, ptrdiff_t, int, int, int, bool, int32_t, int, int, int, int16_t*);  // int16 rows
  void (*widen_quads)(const DwQuadWidenArgs&);                                                   // kQuads*
  DwLayout layout;
  void (*row_vertical)(const DwRowArgs&) = nullptr;  // kVertical, where the ISA has it
};

DepthwiseIsaEntry depthwise_entry(Isa isa) {
  switch (isa) {
#ifdef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
      return {avx512vnni::depthwise_row, nullptr, avx512vnni::widen_quads, DwLayout::kQuads,
              avx512vnni::depthwise_row_vertical};
#endif
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2:
#ifndef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:  // AVX2 tiles serve AVX-512 machines when the VNNI kernels were not built
#endif
      return {avx2::depthwise_row, avx2::widen_row, nullptr, DwLayout::kAvx2Pairs};
#endif
#ifdef MEGQ_BUILT_NEONDOT
    case Isa::kNeonDot:
      return {neondot::depthwise_row, nullptr, neondot::widen_quads, DwLayout::kQuadsS8};
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon:
#ifndef MEGQ_BUILT_NEONDOT
    case Isa::kNeonDot:  // the int16 multiply-accumulate kernel when the sdot kernels were not built
#endif
      return {neon::depthwise_row, neon::widen_row, nullptr, DwLayout::kNeonTaps};
#endif
    default:
      return {scalar::depthwise_row, scalar::widen_row, nullptr, DwLayout::kPlain};
  }
}

// The layout packed for these weights: the ISA's, or vertical quads where
// the ISA has them and the window fits one quad per pixel column.
DwLayout layout_of(Isa isa, int KH, int multiplier) {
  const DepthwiseIsaEntry e = depthwise_entry(isa);
  if (e.row_vertical != nullptr && multiplier == 1 && KH <= 4) return DwLayout::kVertical;
  return e.layout;
}

constexpr int kLoChannel[8] = {0, 1, 2, 3, 8, 9, 10, 11};
constexpr int kHiChannel[8] = {4, 5, 6, 7, 12, 13, 14, 15};

// Bytes of one AVX2 tile: pairs x (lo, hi) x 32 bytes, bias lo/hi, multiplier lo/hi.
size_t tile_bytes(int taps) { return static_cast<size_t>((taps + 1) / 2) * 64 + 128; }

void pack_tiles(PackedDepthwiseWeights& p) {
  const int T = p.KH * p.KW, pairs = (T + 1) / 2, tiles = p.Cs / kDwTile;
  const size_t tb = tile_bytes(T);
  p.packed.resize(tiles * tb);
  const int8_t* w = p.weight.as<int8_t>();
  for (int ct = 0; ct < tiles; ++ct) {
    uint8_t* tile = p.packed.as<uint8_t>() + ct * tb;
    int16_t* wv = reinterpret_cast<int16_t*>(tile);
    for (int pr = 0; pr < pairs; ++pr) {
      for (int half = 0; half < 2; ++half) {
        int16_t* v = wv + (pr * 2 + half) * 16;
        for (int k = 0; k < 8; ++k) {
          const int c = ct * kDwTile + (half == 0 ? kLoChannel[k] : kHiChannel[k]);
          for (int e = 0; e < 2; ++e) {
            const int t = 2 * pr + e;
            v[2 * k + e] = (c < p.C_out && t < T) ? w[c * T + t] : 0;
          }
        }
      }
    }
    int32_t* b = reinterpret_cast<int32_t*>(tile + pairs * 64);
    float* m = reinterpret_cast<float*>(tile + pairs * 64 + 64);
    for (int half = 0; half < 2; ++half) {
      for (int k = 0; k < 8; ++k) {
        const int c = ct * kDwTile + (half == 0 ? kLoChannel[k] : kHiChannel[k]);
        b[half * 8 + k] = c < p.C_out ? p.bias.as<int32_t>()[c] : 0;
        m[half * 8 + k] = c < p.C_out ? p.multiplier_values.as<float>()[c] : 0.0f;
      }
    }
  }
}

// NEON tiles (depthwise_kernels.h): T x 16 int16 weights, 16 bias, 16 multipliers.
void pack_neon_tiles(PackedDepthwiseWeights& p) {
  const int T = p.KH * p.KW, tiles = p.Cs / kDwTile;
  const size_t tb = static_cast<size_t>(T) * 32 + 128;
  p.packed.resize(tiles * tb);
  const int8_t* w = p.weight.as<int8_t>();
  for (int ct = 0; ct < tiles; ++ct) {
    uint8_t* tile = p.packed.as<uint8_t>() + ct * tb;
    int16_t* wv = reinterpret_cast<int16_t*>(tile);
    int32_t* b = reinterpret_cast<int32_t*>(tile + T * 32);
    float* m = reinterpret_cast<float*>(tile + T * 32 + 64);
    for (int k = 0; k < kDwTile; ++k) {
      const int c = ct * kDwTile + k;
      for (int t = 0; t < T; ++t) wv[t * kDwTile + k] = c < p.C_out ? w[c * T + t] : 0;
      b[k] = c < p.C_out ? p.bias.as<int32_t>()[c] : 0;
      m[k] = c < p.C_out ? p.multiplier_values.as<float>()[c] : 0.0f;
    }
  }
}

// The input zero point z' in the byte domain of a tap-quad layout: unsigned
// (z_x + 128 for int8 input) or signed (z_x - 128 for uint8 input).
int32_t quad_zero_point(const PackedDepthwiseWeights& p, DwLayout layout) {
  if (layout == DwLayout::kQuadsS8) return p.input_signed ? p.input_zero_point : p.input_zero_point - 128;
  return p.input_signed ? p.input_zero_point + 128 : p.input_zero_point;
}

// Tap-quad tiles (depthwise_kernels.h): KH x Q weight quads, b' = b - z' sum w
// (mod 2^32), multipliers.
void pack_quad_tiles(PackedDepthwiseWeights& p, DwLayout layout) {
  const int T = p.KH * p.KW, Q = (p.KW + 3) / 4, tiles = p.Cs / kDwTile;
  const size_t tb = static_cast<size_t>(p.KH * Q + 2) * 64;
  p.packed.resize(tiles * tb);
  const int8_t* w = p.weight.as<int8_t>();
  const int64_t zq = quad_zero_point(p, layout);
  // Group order for avx512vnni (depthwise_kernels.h); neondot keeps the tile order.
  const int full_tiles = layout == DwLayout::kQuads ? dw_full_group_tiles(p.Cs) : 0;
  for (int ct = 0; ct < tiles; ++ct) {
    uint8_t* tile = p.packed.as<uint8_t>() + ct * tb;
    int32_t* b = reinterpret_cast<int32_t*>(tile + p.KH * Q * 64);
    float* m = reinterpret_cast<float*>(tile + p.KH * Q * 64 + 64);
    for (int k = 0; k < kDwTile; ++k) {
      const int c = dw_quad_channel(ct, k, full_tiles);
      int64_t sum = 0;
      for (int i = 0; i < p.KH; ++i) {
        for (int q = 0; q < Q; ++q) {
          for (int e = 0; e < 4; ++e) {
            const int j = 4 * q + e;
            const int8_t v = (c < p.C_out && j < p.KW) ? w[c * T + i * p.KW + j] : 0;
            tile[(i * Q + q) * 64 + 4 * k + e] = static_cast<uint8_t>(v);
            sum += v;
          }
        }
      }
      const int64_t bc = (c < p.C_out ? p.bias.as<int32_t>()[c] : 0) - zq * sum;
      b[k] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(bc)));  // mod 2^32
      m[k] = c < p.C_out ? p.multiplier_values.as<float>()[c] : 0.0f;
    }
  }
}

// Vertical-quad units (depthwise_kernels.h): b' = b - z' sum w as for the
// tap quads (z' read outside the image, the same compensation).
void pack_vertical_units(PackedDepthwiseWeights& p) {
  const int T = p.KH * p.KW, tiles = p.Cs / kDwTile;
  const size_t tb = static_cast<size_t>(p.KW + 2) * 64;
  p.packed.resize(tiles * tb);
  std::memset(p.packed.as<uint8_t>(), 0, tiles * tb);
  const int8_t* w = p.weight.as<int8_t>();
  const int64_t zq = quad_zero_point(p, DwLayout::kQuads);
  for (int ct = 0; ct < tiles;) {
    const int nt = tiles - ct >= 4 ? 4 : tiles - ct >= 2 ? 2 : 1, B = 16 * nt;
    uint8_t* unit = p.packed.as<uint8_t>() + ct * tb;
    int32_t* bias = reinterpret_cast<int32_t*>(unit + p.KW * 4 * B);
    float* mult = reinterpret_cast<float*>(unit + (p.KW + 1) * 4 * B);
    for (int k = 0; k < 4; ++k) {
      for (int L = 0; L < nt; ++L) {
        for (int i = 0; i < 4; ++i) {
          const int c = ct * kDwTile + 16 * L + 4 * k + i, slot = k * (B / 4) + 4 * L + i;  // dword index
          if (c >= p.C_out) continue;  // zero weights, bias and multiplier
          int64_t sum = 0;
          for (int dx = 0; dx < p.KW; ++dx) {
            for (int r = 0; r < p.KH; ++r) {
              const int8_t v = w[c * T + r * p.KW + dx];
              unit[(dx * 4 + k) * B + (4 * L + i) * 4 + r] = static_cast<uint8_t>(v);
              sum += v;
            }
          }
          const int64_t bc = p.bias.as<int32_t>()[c] - zq * sum;
          bias[slot] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(bc)));  // mod 2^32
          mult[slot] = p.multiplier_values.as<float>()[c];
        }
      }
    }
    ct += nt;
  }
}

}  // namespace

std::unique_ptr<PackedDepthwiseWeights> pack_depthwise_weights(const int8_t* w, int C_in, int multiplier, int KH,
                                                               int KW, const PackDepthwiseOptions& o, Isa isa) {
  if (C_in < 1) throw ArgumentError("in_channels: expected >= 1, got " + std::to_string(C_in));
  if (multiplier < 1) throw ArgumentError("weight: channel multiplier must be >= 1, got " + std::to_string(multiplier));
  if (KH < 1 || KW < 1) {
    throw ArgumentError("weight: expected a kernel of at least 1 x 1, got " + std::to_string(KH) + " x " +
                        std::to_string(KW));
  }
  if (static_cast<int64_t>(KH) * KW > 65536) throw ArgumentError("weight: kernel larger than 65536 taps");
  if (!isa_usable(isa)) throw ArgumentError(std::string("isa: ") + isa_name(isa) + " is not usable here");
  check_zero_point("input_zero_point", o.input_signed, o.input_zero_point);
  const int64_t C_out64 = static_cast<int64_t>(C_in) * multiplier;
  if (C_out64 > (1 << 24)) throw ArgumentError("weight: too many output channels");
  const int C_out = static_cast<int>(C_out64);
  if (o.multiplier == nullptr) throw ArgumentError("multiplier: required (float32 requantization multipliers)");
  if (o.multiplier_count != 1 && o.multiplier_count != C_out) {
    throw ArgumentError("multiplier: expected 1 or C_out=" + std::to_string(C_out) + " values, got " +
                        std::to_string(o.multiplier_count));
  }
  for (int i = 0; i < o.multiplier_count; ++i) {
    const float m = o.multiplier[i];
    if (!(std::isfinite(m) && m > 0.0f)) {
      throw ArgumentError("multiplier: every value must be finite and > 0, got " + std::to_string(m) +
                          " at index " + std::to_string(i));
    }
  }
  const int T = KH * KW;
  const int64_t lo = qmin_of(o.input_signed), hi = qmax_of(o.input_signed);
  const int64_t max_abs_x = std::max(std::llabs(lo - o.input_zero_point), std::llabs(hi - o.input_zero_point));
  for (int c = 0; c < C_out; ++c) {
    int64_t abs_sum = 0;
    for (int t = 0; t < T; ++t) {
      const int v = w[static_cast<int64_t>(c) * T + t];
      if (o.narrow_range && v == -128) {
        throw ArgumentError("weight: value -128 at (channel " + std::to_string(c) + ", tap " + std::to_string(t) +
                            ") but narrow_range=True expects weights in [-127, 127]");
      }
      abs_sum += v < 0 ? -v : v;
    }
    const int64_t b = o.bias ? o.bias[c] : 0;
    const int64_t bound = max_abs_x * abs_sum + std::llabs(b);
    if (bound > std::numeric_limits<int32_t>::max()) {
      throw ArgumentError("weight: output channel " + std::to_string(c) + " could reach " + std::to_string(bound) +
                          " and overflow the int32 accumulator");
    }
  }

  auto p = std::make_unique<PackedDepthwiseWeights>();
  p->isa = isa;
  p->C_in = C_in;
  p->multiplier = multiplier;
  p->C_out = C_out;
  p->KH = KH;
  p->KW = KW;
  p->Cs = ceil_div_int(C_out, kDwTile) * kDwTile;
  p->input_signed = o.input_signed;
  p->input_zero_point = o.input_zero_point;
  p->per_channel = o.multiplier_count == C_out && C_out > 1;
  p->weight.resize(static_cast<size_t>(C_out) * T);
  std::copy(w, w + static_cast<size_t>(C_out) * T, p->weight.as<int8_t>());
  p->bias.resize(static_cast<size_t>(p->Cs) * sizeof(int32_t));
  p->multiplier_values.resize(static_cast<size_t>(p->Cs) * sizeof(float));
  for (int c = 0; c < C_out; ++c) {
    p->bias.as<int32_t>()[c] = o.bias ? o.bias[c] : 0;
    p->multiplier_values.as<float>()[c] = o.multiplier[o.multiplier_count == 1 ? 0 : c];
  }
  switch (layout_of(isa, KH, multiplier)) {
    case DwLayout::kVertical: pack_vertical_units(*p); break;
    case DwLayout::kAvx2Pairs: pack_tiles(*p); break;
    case DwLayout::kNeonTaps: pack_neon_tiles(*p); break;
    case DwLayout::kQuads:
    case DwLayout::kQuadsS8: pack_quad_tiles(*p, depthwise_entry(isa).layout); break;
    case DwLayout::kPlain: break;
  }
  return p;
}

int depthwise_output_size(int size, int k, int stride, int pad, int dil, const char* axis) {
  const std::string ax(axis);
  if (stride < 1) throw ArgumentError("stride: expected >= 1 along " + ax + ", got " + std::to_string(stride));
  if (pad < 0) throw ArgumentError("padding: expected >= 0 along " + ax + ", got " + std::to_string(pad));
  if (dil < 1) throw ArgumentError("dilation: expected >= 1 along " + ax + ", got " + std::to_string(dil));
  const int64_t eff = static_cast<int64_t>(k - 1) * dil + 1;
  const int64_t padded = static_cast<int64_t>(size) + 2 * static_cast<int64_t>(pad);
  if (eff > padded) {
    throw ArgumentError("weight: the kernel (" + std::to_string(eff) + " with dilation) is larger than the padded " +
                        "input (" + std::to_string(padded) + ") along " + ax);
  }
  const int64_t out64 = (padded - eff) / stride + 1;
  if (out64 > (1 << 24)) {
    throw ArgumentError("padding: the output would have " + std::to_string(out64) + " positions along " + ax +
                        " (limit 2^24)");
  }
  return static_cast<int>(out64);
}

void depthwise_conv2d(const PackedDepthwiseWeights& p, const uint8_t* x, int N, int H, int W, ptrdiff_t sn,
                      ptrdiff_t sh, ptrdiff_t sw, const DepthwiseParams& dp, uint8_t* y) {
  if (N < 0 || H < 1 || W < 1) {
    throw ArgumentError("x: expected N >= 0 and H, W >= 1, got N=" + std::to_string(N) + " H=" + std::to_string(H) +
                        " W=" + std::to_string(W));
  }
  if (dp.out_type == OutputType::kInt32) throw ArgumentError("out_dtype: expected 'int8' or 'uint8'");
  const bool out_signed = dp.out_type == OutputType::kInt8;
  check_zero_point("out_zero_point", out_signed, dp.zero_point);
  check_clamp("out_min/out_max", out_signed, dp.min, dp.max);
  const int OH = depthwise_output_size(H, p.KH, dp.stride_h, dp.pad_h, dp.dil_h, "H");
  const int OW = depthwise_output_size(W, p.KW, dp.stride_w, dp.pad_w, dp.dil_w, "W");
  check_output_size("x", "depthwise_conv2d", {N > 0 ? N : 1, OH, OW, p.C_out}, 1);
  // A widened row (W + 2 pad_w positions of Cs int16) lives in scratch.
  if ((static_cast<int64_t>(W) + 2 * static_cast<int64_t>(dp.pad_w)) * p.Cs * 2 > kMaxOutputBytes) {
    throw ArgumentError("padding: a padded input row of " + std::to_string(W) + " + 2 x " +
                        std::to_string(dp.pad_w) + " positions is too wide (limit MAX_OUTPUT_BYTES for its scratch)");
  }
  const DepthwiseIsaEntry entry = depthwise_entry(p.isa);
  const bool vertical = layout_of(p.isa, p.KH, p.multiplier) == DwLayout::kVertical;
  const bool quads = !vertical && (entry.layout == DwLayout::kQuads || entry.layout == DwLayout::kQuadsS8);
  const int Q = (p.KW + 3) / 4;
  // A tap-quad row holds OW x Q quads of Cs channels (no larger than an output
  // row times 4 Q; with W's padding already bounded above).
  if (quads && static_cast<int64_t>(OW) * Q * p.Cs * 4 > kMaxOutputBytes) {
    throw ArgumentError("weight: a widened row of " + std::to_string(OW) + " x " + std::to_string(Q) +
                        " tap groups is too wide (limit MAX_OUTPUT_BYTES for its scratch)");
  }
  if (N == 0) return;
  MEGQ_DCHECK(x != nullptr && y != nullptr);
  const int T = p.KH * p.KW;
  const int Wp = W + 2 * dp.pad_w;
  const size_t row_elems = static_cast<size_t>(Wp) * p.Cs;
  const size_t row_bytes = quads ? static_cast<size_t>(OW) * Q * p.Cs * 4 : row_elems * sizeof(int16_t);
  const uint8_t zq = static_cast<uint8_t>(quad_zero_point(p, entry.layout));

  // Tasks: (image, band of output rows, group of channel tiles); one of each
  // per image unless threads need more tasks. Inside a task every input row
  // is widened once (for the task's channels), into a ring of `span` rows
  // (the rows one output row reads, dilation included). Bands re-widen the
  // rows they share (span - stride per band), so they keep at least
  // kMinBandRows output rows. Channel groups (tap-quad kernels only: int16
  // rows are widened whole) widen nothing twice, but tasks on different
  // threads then write bytes of the same output pixels, i.e. the same cache
  // lines, which bounce between the cores: bands come first, and groups are
  // whole multiples of kGroupTiles tiles (64 output bytes) so that only the
  // lines at their edges are shared. (The avx512vnni kernels also rely on
  // this: a 64-channel group of its tap-quad layout is never split.)
  constexpr int kMinBandRows = 4, kGroupTiles = 4;
  const int threads = get_num_threads();
  const double macs = static_cast<double>(N) * OH * OW * p.C_out * T;
  const bool parallel = threads > 1 && macs >= 256.0 * 1024;
  const int tiles = p.Cs / kDwTile;
  const int units = ceil_div_int(tiles, kGroupTiles);
  int bands = 1, groups = 1;
  if (parallel) {
    const int want = ceil_div_int(4 * threads, N);
    if (quads) {
      bands = std::clamp(OH / kMinBandRows, 1, want);
      groups = std::min(units, ceil_div_int(want, bands));
    } else {
      bands = std::min(OH, want);
    }
  }
  const int band = ceil_div_int(OH, bands);
  bands = ceil_div_int(OH, band);
  const int span = (p.KH - 1) * dp.dil_h + 1;

  // The row arguments every task passes alike (each task adds its rows,
  // channel tiles and output).
  DwRowArgs common;
  common.Cs = p.Cs;
  common.C = p.C_out;
  common.KH = p.KH;
  common.KW = p.KW;
  common.stride_w = dp.stride_w;
  common.dil_w = dp.dil_w;
  common.OW = OW;
  common.packed = p.packed.as<uint8_t>();
  common.weights = p.weight.as<int8_t>();
  common.bias = p.bias.as<int32_t>();
  common.multiplier = p.multiplier_values.as<float>();
  common.out_signed = out_signed;
  common.zo = dp.zero_point;
  common.lo = dp.min;
  common.hi = dp.max;

  // Vertical quads: no scratch, each output row reads its image rows.
  auto vertical_task = [&](int t) {
    const int n = t / bands;
    const int oh0 = t % bands * band, oh1 = std::min(OH, oh0 + band);
    const uint8_t* image = x + n * sn;
    const uint8_t* xrows[4] = {};
    DwRowArgs a = common;
    a.rows = nullptr;
    a.qrows = nullptr;
    a.ct0 = 0;
    a.ct1 = tiles;
    a.taps = nullptr;
    a.xrows = xrows;
    a.sw = sw;
    a.W = W;
    a.pad_w = dp.pad_w;
    a.in_signed = p.input_signed;
    a.zq = zq;
    for (int oh = oh0; oh < oh1; ++oh) {
      for (int i = 0; i < p.KH; ++i) {
        const int ih = oh * dp.stride_h - dp.pad_h + i * dp.dil_h;
        xrows[i] = ih < 0 || ih >= H ? nullptr : image + ih * sh;
      }
      a.out = y + ((static_cast<int64_t>(n) * OH + oh) * OW) * p.C_out;
      entry.row_vertical(a);
    }
  };
  if (vertical) {
    const int tasks = N * bands;
    if (parallel && tasks > 1) {
      parallel_for(tasks, vertical_task);
    } else {
      for (int t = 0; t < tasks; ++t) vertical_task(t);
    }
    return;
  }

  auto task = [&](int t) {
    thread_local AlignedBuffer scratch;
    scratch.reserve((static_cast<size_t>(span) + 1) * row_bytes);
    std::vector<const int16_t*> row_ptrs(p.KH);
    std::vector<const uint8_t*> qrow_ptrs(p.KH);
    std::vector<const int16_t*> tap_ptrs(T + 1);
    uint8_t* const zero_bytes = scratch.as<uint8_t>();
    uint8_t* const ring_bytes = zero_bytes + row_bytes;
    // Outside the image: int16 rows read 0 = x - z_x, quad rows z'.
    const int n = t / (bands * groups);
    const int oh0 = (t / groups % bands) * band, oh1 = std::min(OH, oh0 + band);
    const int g = t % groups;
    const int ct0 = std::min(tiles, g * units / groups * kGroupTiles);
    const int ct1 = std::min(tiles, (g + 1) * units / groups * kGroupTiles);
    if (!quads) std::memset(zero_bytes, 0, row_bytes);
    const int16_t* zero_row = reinterpret_cast<const int16_t*>(zero_bytes);
    int16_t* ring = reinterpret_cast<int16_t*>(ring_bytes);
    DwQuadWidenArgs wq;
    wq.sw = sw;
    wq.W = W;
    wq.C_in = p.C_in;
    wq.multiplier = p.multiplier;
    wq.is_signed = p.input_signed;
    wq.zero_point = p.input_zero_point;
    wq.pad_w = dp.pad_w;
    wq.stride_w = dp.stride_w;
    wq.dil_w = dp.dil_w;
    wq.KW = p.KW;
    wq.OW = OW;
    wq.Q = Q;
    wq.Cs = p.Cs;
    wq.ct0 = ct0;
    wq.ct1 = ct1;
    const uint8_t* image = x + n * sn;
    DwRowArgs a = common;
    a.rows = row_ptrs.data();
    a.qrows = quads ? qrow_ptrs.data() : nullptr;
    a.Q = Q;
    a.ct0 = ct0;
    a.ct1 = ct1;
    a.taps = tap_ptrs.data();
    // Cache blocking (avx512vnni tap quads): the task's channels go in
    // blocks of one 64-channel group, each running the band's rows on its
    // own, so that the ring of widened rows, which the kernel reads KH times
    // per widened byte, holds one group's columns only (256 bytes per column
    // and row instead of 4 C_out).
    const bool blocked = entry.layout == DwLayout::kQuads;
    const int block_tiles = blocked ? kGroupTiles : ct1 - ct0;
    if (quads) std::memset(zero_bytes, zq, row_bytes);
    for (int cb = ct0; cb < ct1; cb += block_tiles) {
      a.ct0 = wq.ct0 = cb;
      a.ct1 = wq.ct1 = std::min(ct1, cb + block_tiles);
      int next_ih = 0;  // rows below this are widened (or not needed)
      for (int oh = oh0; oh < oh1; ++oh) {
        const int first = oh * dp.stride_h - dp.pad_h, last = first + span - 1;
        // Row ih goes to slot ih % span; the row it replaces (ih - span or
        // older) lies before `first`, so no longer needed.
        for (int ih = std::max({first, next_ih, 0}); ih <= std::min(last, H - 1); ++ih) {
          if (quads) {
            wq.src = image + ih * sh;
            wq.dst = ring_bytes + static_cast<size_t>(ih % span) * row_bytes;
            entry.widen_quads(wq);
          } else {
            entry.widen(image + ih * sh, sw, W, p.C_in, p.multiplier, p.input_signed, p.input_zero_point,
                        dp.pad_w, Wp, p.Cs, ring + static_cast<size_t>(ih % span) * row_elems);
          }
        }
        next_ih = std::max(next_ih, last + 1);
        for (int i = 0; i < p.KH; ++i) {
          const int ih = first + i * dp.dil_h;
          const bool outside = ih < 0 || ih >= H;
          row_ptrs[i] = outside ? zero_row : ring + static_cast<size_t>(ih % span) * row_elems;
          qrow_ptrs[i] = outside ? zero_bytes : ring_bytes + static_cast<size_t>(ih % span) * row_bytes;
        }
        a.out = y + ((static_cast<int64_t>(n) * OH + oh) * OW) * p.C_out;
        entry.row(a);
      }
    }
  };
  const int tasks = N * bands * groups;
  if (parallel && tasks > 1) {
    parallel_for(tasks, task);
  } else {
    for (int t = 0; t < tasks; ++t) task(t);
  }
}

}  // namespace megq
