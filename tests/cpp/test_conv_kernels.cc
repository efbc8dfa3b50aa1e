// Bit-exact tests of megq's conv2d (im2col and 1x1 paths on the GEMM kernels)
// and depthwise conv2d, one run per ISA usable in this build.
//
// Every case packs the weights for an explicit ISA, runs megq::conv2d or
// megq::depthwise_conv2d, and compares each output element with a direct
// convolution written here (int64 accumulation over the taps that fall inside
// the image, padding taps skipped, i.e. contributing 0), followed by
//   y = clamp(round_half_away(float32(acc) * M) + z, lo, hi)   (std::round).
//
// Memory safety: the NHWC input is placed so that its last byte is the last
// byte before a PROT_NONE page (or its first byte the first after one), with
// random junk in the gaps of strided layouts (pixel, row and image strides
// larger than dense); the output is placed the same way, so a read outside the
// input or a write outside the output faults. The test catches the signal and
// names the case and ISA.
//
// Usage: test_conv_kernels [--isa=a,b] [--require=a,b] [--cases=N] [--verbose]
//   --cases  random cases per section (default 300; the scripts lower it under qemu)
// The last line is "N passed, M failed"; the exit code is 1 on any failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "megq/conv2d.h"
#include "megq/depthwise.h"
#include "megq/isa.h"
#include "megq/thread_pool.h"
#include "test_support.h"

namespace {

using megq::Isa;
using megq::OutputType;
using megq_test::GuardedArena;
using megq_test::Rng;

struct Stats {
  long passed = 0, failed = 0;
};

// One convolution problem, shared by conv2d (groups >= 1) and depthwise
// (groups == C_in, channel multiplier cout_g).
struct ConvCase {
  std::string name;
  bool depthwise = false;
  int N = 1, H = 1, W = 1;
  int groups = 1, cin_g = 1, cout_g = 1;  // depthwise: groups = C_in, cin_g = 1, cout_g = multiplier
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  bool x_signed = true;
  int32_t x_zp = 0;
  // Input layout in bytes: channels contiguous; extra bytes after each pixel,
  // row and image (junk that must never be used).
  int pixel_extra = 0, row_extra = 0, image_extra = 0;
  bool narrow_range = true;
  bool has_bias = false;
  OutputType out = OutputType::kInt8;
  int32_t out_zp = 0, out_min = -128, out_max = 127;
  bool per_channel = false;
  int threads = 1;
  std::vector<uint8_t> x;   // N x H x W x Cin, dense
  std::vector<int8_t> w;    // Cout x cin_g x kh x kw (OIHW)
  std::vector<int32_t> bias;

  int cin() const { return groups * cin_g; }
  int cout() const { return groups * cout_g; }
  int oh() const { return static_cast<int>(megq::conv_output_size(H, kh, stride_h, pad_h, dil_h)); }
  int ow() const { return static_cast<int>(megq::conv_output_size(W, kw, stride_w, pad_w, dil_w)); }
};

int out_bytes(OutputType t) { return t == OutputType::kInt32 ? 4 : 1; }
const char* out_name(OutputType t) {
  return t == OutputType::kInt32 ? "int32" : t == OutputType::kInt8 ? "int8" : "uint8";
}

std::string describe(const ConvCase& c) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s %s N=%d H=%d W=%d groups=%d cin_g=%d cout_g=%d k=%dx%d stride=%d,%d pad=%d,%d dil=%d,%d "
                "x=%s zp=%d extra=%d/%d/%d narrow=%d bias=%d out=%s zp=%d [%d,%d] %s threads=%d",
                c.depthwise ? "depthwise" : "conv2d", c.name.c_str(), c.N, c.H, c.W, c.groups, c.cin_g, c.cout_g,
                c.kh, c.kw, c.stride_h, c.stride_w, c.pad_h, c.pad_w, c.dil_h, c.dil_w,
                c.x_signed ? "int8" : "uint8", c.x_zp, c.pixel_extra, c.row_extra, c.image_extra, c.narrow_range,
                c.has_bias, out_name(c.out), c.out_zp, c.out_min, c.out_max,
                c.per_channel ? "per-channel" : "per-tensor", c.threads);
  return buf;
}

// Direct convolution, int64, padding taps skipped (they read the zero point,
// i.e. add exactly 0). Output order N x OH x OW x Cout.
std::vector<int64_t> reference_acc(const ConvCase& c) {
  const int OH = c.oh(), OW = c.ow(), Cin = c.cin(), Cout = c.cout();
  std::vector<int64_t> acc(static_cast<size_t>(c.N) * OH * OW * Cout);
  for (int n = 0; n < c.N; ++n) {
    for (int oy = 0; oy < OH; ++oy) {
      for (int ox = 0; ox < OW; ++ox) {
        for (int co = 0; co < Cout; ++co) {
          const int g = co / c.cout_g;
          int64_t s = c.has_bias ? c.bias[co] : 0;
          for (int ci = 0; ci < c.cin_g; ++ci) {
            for (int ky = 0; ky < c.kh; ++ky) {
              const int iy = oy * c.stride_h - c.pad_h + ky * c.dil_h;
              if (iy < 0 || iy >= c.H) continue;
              for (int kx = 0; kx < c.kw; ++kx) {
                const int ix = ox * c.stride_w - c.pad_w + kx * c.dil_w;
                if (ix < 0 || ix >= c.W) continue;
                const uint8_t raw = c.x[((static_cast<size_t>(n) * c.H + iy) * c.W + ix) * Cin + g * c.cin_g + ci];
                const int64_t v = c.x_signed ? static_cast<int8_t>(raw) : raw;
                const int8_t wv = c.w[((static_cast<size_t>(co) * c.cin_g + ci) * c.kh + ky) * c.kw + kx];
                s += (v - c.x_zp) * wv;
              }
            }
          }
          acc[((static_cast<size_t>(n) * OH + oy) * OW + ox) * Cout + co] = s;
        }
      }
    }
  }
  return acc;
}

class Runner {
 public:
  explicit Runner(std::vector<Isa> isas, bool verbose)
      : isas_(std::move(isas)),
        verbose_(verbose),
        x_tail_(kArenaBytes, true),
        x_head_(kArenaBytes, false),
        y_tail_(kArenaBytes, true),
        y_head_(kArenaBytes, false) {}

  void run(const ConvCase& c, Rng& rng) {
    const int OH = c.oh(), OW = c.ow(), Cin = c.cin(), Cout = c.cout();
    const std::vector<int64_t> acc64 = reference_acc(c);
    // Multipliers spreading the outputs over the range (per channel or not).
    std::vector<int64_t> max_abs(Cout, 1);
    for (size_t i = 0; i < acc64.size(); ++i) {
      const int co = static_cast<int>(i % Cout);
      max_abs[co] = std::max<int64_t>(max_abs[co], std::llabs(acc64[i]));
    }
    int64_t overall = 1;
    for (int64_t v : max_abs) overall = std::max(overall, v);
    const bool quantized = c.out != OutputType::kInt32;
    const bool with_mult = quantized || c.depthwise || rng.coin(30);
    std::vector<float> mult;
    if (with_mult) {
      mult.resize(c.per_channel ? Cout : 1);
      for (size_t i = 0; i < mult.size(); ++i) {
        const double range = static_cast<double>(c.per_channel ? max_abs[i] : overall);
        mult[i] = rng.coin(15) ? std::ldexp(1.0f, -rng.irange(1, 8))  // exact .5 ties
                               : static_cast<float>(140.0 / range * (0.5 + rng.uniform()));
      }
    }
    std::vector<int32_t> expect(acc64.size());
    for (size_t i = 0; i < acc64.size(); ++i) {
      const int32_t a = static_cast<int32_t>(acc64[i]);
      expect[i] = quantized ? megq_test::reference_requant(a, mult[c.per_channel ? i % Cout : 0], c.out_zp,
                                                           c.out_min, c.out_max)
                            : a;
    }

    // Input at a guard page, junk in the gaps.
    const ptrdiff_t sw = Cin + c.pixel_extra;
    const ptrdiff_t sh = c.W * sw + c.row_extra;
    const ptrdiff_t sn = c.H * sh + c.image_extra;
    const size_t x_bytes = c.N == 0 ? 0 : static_cast<size_t>(c.N - 1) * sn + (c.H - 1) * sh + (c.W - 1) * sw + Cin;
    const bool tail = case_index_++ % 2 == 0;
    uint8_t* xp = (tail ? x_tail_ : x_head_).place(std::max<size_t>(x_bytes, 1));
    for (size_t i = 0; i < x_bytes; ++i) xp[i] = static_cast<uint8_t>(rng.next());
    for (int n = 0; n < c.N; ++n)
      for (int h = 0; h < c.H; ++h)
        for (int w = 0; w < c.W; ++w)
          std::memcpy(xp + n * sn + h * sh + w * sw, &c.x[((static_cast<size_t>(n) * c.H + h) * c.W + w) * Cin],
                      Cin);
    const int eb = out_bytes(c.out);
    const size_t y_bytes = acc64.size() * eb;
    // The output touches the other guard (a write past the end or before the
    // start faults); with N = 0 nothing may be written at all.
    GuardedArena& ya = tail ? y_head_ : y_tail_;
    uint8_t* yp = ya.place(std::max<size_t>(y_bytes, 64));
    const uint8_t canary = static_cast<uint8_t>(0x5A ^ (case_index_ & 0x3F));

    megq::set_num_threads(c.threads);
    for (Isa isa : isas_) {
      std::memset(yp, canary, std::max<size_t>(y_bytes, 64));
      std::snprintf(megq_test::g_current, sizeof megq_test::g_current, "[%s] %s", megq::isa_name(isa),
                    describe(c).c_str());
      megq_test::g_passed_so_far = stats_.passed, megq_test::g_failed_so_far = stats_.failed;
      std::string error;
      try {
        if (c.depthwise) {
          megq::PackDepthwiseOptions o;
          o.bias = c.has_bias ? c.bias.data() : nullptr;
          o.multiplier = mult.data();
          o.multiplier_count = static_cast<int>(mult.size());
          o.input_signed = c.x_signed;
          o.input_zero_point = c.x_zp;
          o.narrow_range = c.narrow_range;
          auto packed = megq::pack_depthwise_weights(c.w.data(), c.groups, c.cout_g, c.kh, c.kw, o, isa);
          megq::DepthwiseParams dp;
          dp.stride_h = c.stride_h, dp.stride_w = c.stride_w, dp.pad_h = c.pad_h, dp.pad_w = c.pad_w;
          dp.dil_h = c.dil_h, dp.dil_w = c.dil_w;
          dp.out_type = c.out, dp.zero_point = c.out_zp, dp.min = c.out_min, dp.max = c.out_max;
          megq::depthwise_conv2d(*packed, xp, c.N, c.H, c.W, sn, sh, sw, dp, yp);
        } else {
          megq::PackGemmOptions o;
          o.bias = c.has_bias ? c.bias.data() : nullptr;
          o.multiplier = with_mult ? mult.data() : nullptr;
          o.multiplier_count = static_cast<int>(mult.size());
          o.input_signed = c.x_signed;
          o.input_zero_point = c.x_zp;
          o.narrow_range = c.narrow_range;
          auto packed = megq::pack_conv2d_weights(c.w.data(), Cout, c.cin_g, c.kh, c.kw, c.groups, o, isa);
          megq::Conv2dInput in{xp, c.N, c.H, c.W, Cin, sn, sh, sw};
          megq::Conv2dParams cp;
          cp.stride_h = c.stride_h, cp.stride_w = c.stride_w, cp.pad_h = c.pad_h, cp.pad_w = c.pad_w;
          cp.dilation_h = c.dil_h, cp.dilation_w = c.dil_w;
          megq::GemmOutput go;
          go.type = c.out, go.zero_point = c.out_zp, go.min = c.out_min, go.max = c.out_max;
          megq::conv2d(*packed, in, cp, go, yp);
        }
      } catch (const std::exception& e) {
        error = std::string("exception: ") + e.what();
      }
      int bad = 0;
      std::string detail;
      if (error.empty()) {
        for (size_t i = 0; i < expect.size(); ++i) {
          int32_t got;
          if (c.out == OutputType::kInt32) {
            std::memcpy(&got, yp + 4 * i, 4);
          } else if (c.out == OutputType::kInt8) {
            got = static_cast<int8_t>(yp[i]);
          } else {
            got = yp[i];
          }
          if (got != expect[i] && ++bad <= 3) {
            const int co = static_cast<int>(i % Cout);
            const size_t pix = i / Cout;
            char buf[200];
            std::snprintf(buf, sizeof buf, "\n    y[n=%zu, oy=%zu, ox=%zu, c=%d] = %d, expected %d (acc %lld)",
                          pix / (static_cast<size_t>(OH) * OW), pix / OW % OH, pix % OW, co, got, expect[i],
                          static_cast<long long>(acc64[i]));
            detail += buf;
          }
        }
        size_t touched = 0;  // the 64-byte stand-in of an empty output
        for (size_t i = y_bytes; i < std::max<size_t>(y_bytes, 64); ++i) touched += yp[i] != canary;
        if (touched) error = "wrote " + std::to_string(touched) + " byte(s) of an empty output";
      }
      if (bad || !error.empty()) {
        ++stats_.failed;
        if (stats_.failed <= 25) {
          std::printf("FAIL [%s] %s: %s%s%s\n", megq::isa_name(isa), describe(c).c_str(), error.c_str(),
                      bad ? (std::to_string(bad) + " mismatching element(s)").c_str() : "", detail.c_str());
        }
      } else {
        ++stats_.passed;
        if (verbose_) std::printf("ok   [%s] %s\n", megq::isa_name(isa), describe(c).c_str());
      }
    }
  }

  const Stats& stats() const { return stats_; }
  static constexpr size_t kArenaBytes = 4u << 20;

 private:
  std::vector<Isa> isas_;
  bool verbose_;
  GuardedArena x_tail_, x_head_, y_tail_, y_head_;
  Stats stats_;
  long case_index_ = 0;
};

// Random data and output configuration for a case whose geometry is set.
void fill(ConvCase& c, Rng& rng) {
  c.x_signed = rng.coin();
  c.x_zp = rng.coin(50) ? 0 : (c.x_signed ? rng.irange(-128, 127) : rng.irange(0, 255));
  c.narrow_range = rng.coin(60);
  c.x.resize(static_cast<size_t>(c.N) * c.H * c.W * c.cin());
  for (auto& v : c.x) v = static_cast<uint8_t>(rng.next());
  c.w.resize(static_cast<size_t>(c.cout()) * c.cin_g * c.kh * c.kw);
  for (auto& v : c.w) v = static_cast<int8_t>(rng.range(c.narrow_range ? -127 : -128, 127));
  c.has_bias = rng.coin(60);
  c.bias.assign(c.cout(), 0);
  if (c.has_bias)
    for (auto& b : c.bias) b = static_cast<int32_t>(rng.range(-30000, 30000));
  const int t = rng.irange(0, 9);
  c.out = (!c.depthwise && t < 2) ? OutputType::kInt32 : t < 6 ? OutputType::kInt8 : OutputType::kUint8;
  const int32_t lo = c.out == OutputType::kUint8 ? 0 : -128, hi = c.out == OutputType::kUint8 ? 255 : 127;
  c.out_zp = c.out == OutputType::kInt32 ? 0 : rng.irange(lo, hi);
  c.out_min = lo, c.out_max = hi;
  if (c.out != OutputType::kInt32 && rng.coin(30)) c.out_min = c.out_zp;  // fused ReLU
  c.per_channel = rng.coin();
  if (rng.coin(40)) {
    c.pixel_extra = rng.irange(0, 5), c.row_extra = rng.irange(0, 9), c.image_extra = rng.irange(0, 33);
  }
}

// A random geometry whose dilated kernel fits the padded input.
void random_geometry(ConvCase& c, Rng& rng, int max_hw) {
  c.N = rng.coin(8) ? 0 : rng.irange(1, 3);
  c.kh = rng.irange(1, 5), c.kw = rng.irange(1, 5);
  c.stride_h = rng.irange(1, 3), c.stride_w = rng.irange(1, 3);
  c.dil_h = rng.coin(70) ? 1 : rng.irange(2, 3), c.dil_w = rng.coin(70) ? 1 : rng.irange(2, 3);
  c.pad_h = rng.coin(40) ? 0 : rng.irange(1, 3), c.pad_w = rng.coin(40) ? 0 : rng.irange(1, 3);
  const int span_h = (c.kh - 1) * c.dil_h + 1, span_w = (c.kw - 1) * c.dil_w + 1;
  c.H = std::max(rng.irange(1, max_hw), span_h - 2 * c.pad_h);
  c.W = std::max(rng.irange(1, max_hw), span_w - 2 * c.pad_w);
  c.H = std::max(c.H, 1), c.W = std::max(c.W, 1);
}

void conv_random(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xC0411ull + 7919ull * i);
    ConvCase c;
    c.name = "random";
    random_geometry(c, rng, 9);
    c.groups = rng.coin(70) ? 1 : rng.irange(2, 3);
    c.cin_g = rng.irange(1, 20);
    c.cout_g = rng.irange(1, 40);  // tails of every panel width (nr 8..32)
    fill(c, rng);
    c.threads = rng.coin(25) ? rng.irange(2, 4) : 1;
    run.run(c, rng);
  }
}

// Wide rows at stride 1 along x (the AVX-512 VNNI row-band path: each output
// row's input rows read in place, from 16 output pixels per row on, channel
// counts a multiple of 4), and their neighbours that take the other paths.
void conv_wide_rows(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xBA7Dull + 6151ull * i);
    ConvCase c;
    c.name = "wide";
    random_geometry(c, rng, 9);
    c.stride_w = 1;
    c.dil_w = rng.coin(85) ? 1 : 2;
    c.W = rng.irange(12, 40);
    c.groups = rng.coin(85) ? 1 : 2;
    c.cin_g = rng.coin(75) ? 4 * rng.irange(1, 12) : rng.irange(1, 20);
    c.cout_g = rng.irange(1, 70);
    fill(c, rng);
    c.threads = rng.coin(25) ? rng.irange(2, 4) : 1;
    run.run(c, rng);
  }
}

// 1x1 kernels: the zero-copy GEMM path (dense input, stride 1) and the
// row-by-row path (stride, groups or strided pixels).
void conv_pointwise(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0x1A1ull + 104729ull * i);
    ConvCase c;
    c.name = "1x1";
    c.N = rng.irange(1, 3), c.H = rng.irange(1, 9), c.W = rng.irange(1, 9);
    c.stride_h = rng.coin() ? 1 : rng.irange(2, 3), c.stride_w = rng.coin() ? 1 : rng.irange(2, 3);
    c.groups = rng.coin(70) ? 1 : rng.irange(2, 4);
    c.cin_g = rng.irange(1, 40), c.cout_g = rng.irange(1, 70);
    fill(c, rng);
    if (rng.coin(60)) c.pixel_extra = c.row_extra = c.image_extra = 0;  // dense: zero-copy path
    c.threads = rng.coin(30) ? 2 : 1;
    run.run(c, rng);
  }
}

// Inputs whose bytes are all < 128 (ReLU outputs): the AVX2 exact 7-bit path.
// Padding taps carry the zero point's byte, so zero points >= 128 as a byte
// (uint8 >= 128, int8 < 0) send the tiles that touch padding back to the
// int16 path; some cases also get one high byte somewhere. Random geometry,
// 1x1 (dense and row-by-row) and wide rows.
void conv_7bit(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0x7B1Cull + 15485863ull * i);
    ConvCase c;
    const int kind = i % 3;
    c.name = kind == 0 ? "7bit" : kind == 1 ? "7bit-1x1" : "7bit-wide";
    random_geometry(c, rng, 9);
    if (kind == 1) c.kh = c.kw = 1, c.pad_h = c.pad_w = 0, c.dil_h = c.dil_w = 1;
    if (kind == 2) c.stride_w = 1, c.dil_w = 1, c.W = rng.irange(12, 40);
    c.groups = rng.coin(80) ? 1 : rng.irange(2, 3);
    c.cin_g = rng.irange(1, 40);
    c.cout_g = rng.irange(1, 40);
    fill(c, rng);
    if (rng.coin(60)) c.pixel_extra = c.row_extra = c.image_extra = 0;
    for (auto& v : c.x) v &= 0x7F;
    const int z = rng.irange(0, 9);  // mostly zero points whose byte is < 128
    c.x_zp = z < 4 ? 0 : z < 7 ? rng.irange(0, 127) : (c.x_signed ? rng.irange(-128, -1) : rng.irange(128, 255));
    if (rng.coin(30) && !c.x.empty()) {
      c.x[static_cast<size_t>(rng.range(0, static_cast<int64_t>(c.x.size()) - 1))] |= 0x80;
    }
    if (rng.coin(20)) {  // largest pair sums
      c.narrow_range = false;
      for (auto& v : c.x) v = (v & 0x80) | 0x7F;
      for (auto& v : c.w) v = static_cast<int8_t>(rng.coin() ? -128 : 127);
    }
    c.threads = rng.coin(25) ? 2 : 1;
    run.run(c, rng);
  }
}

// Larger problems: several im2col tiles, panel ranges split between tasks
// (few pixels, many output channels: at 4 threads the driver wants more tasks
// than there are pixel tiles), at 1, 2 and 4 threads.
void conv_large(Runner& run) {
  struct G {
    int N, H, W, groups, cin_g, cout_g, k, stride, pad, dil;
  };
  const G gs[] = {
      {1, 4, 4, 1, 8, 300, 3, 1, 1, 1},   // 16 pixels, 300 channels: panel split
      {2, 17, 13, 1, 16, 40, 3, 1, 1, 1}, // many tiles
      {1, 23, 19, 1, 3, 24, 7, 2, 3, 1},  // stem-like, 3-byte taps
      {1, 12, 12, 2, 24, 33, 3, 2, 1, 2}, // groups, dilation, stride
      {1, 6, 6, 1, 64, 130, 1, 1, 0, 1},  // 1x1 zero-copy, panel split
      {2, 9, 11, 4, 8, 20, 1, 2, 0, 1},   // 1x1 strided, grouped
      {1, 31, 5, 1, 5, 9, 5, 1, 2, 1},    // tall
      {1, 2, 9, 4, 64, 256, 1, 2, 0, 1},  // 1x1 strided, one output row: panel split
      {1, 3, 3, 1, 32, 200, 3, 1, 1, 1},  // 9 pixels: panel split
  };
  int i = 0;
  for (const G& g : gs) {
    for (int threads : {1, 2, 4}) {
      Rng rng(0x1A26Eull + 31 * i++);
      ConvCase c;
      c.name = "large";
      c.N = g.N, c.H = g.H, c.W = g.W, c.groups = g.groups, c.cin_g = g.cin_g, c.cout_g = g.cout_g;
      c.kh = c.kw = g.k, c.stride_h = c.stride_w = g.stride, c.pad_h = c.pad_w = g.pad, c.dil_h = c.dil_w = g.dil;
      fill(c, rng);
      c.threads = threads;
      run.run(c, rng);
    }
  }
}

void depthwise_random(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xD3E9ull + 15485863ull * i);
    ConvCase c;
    c.name = "random";
    c.depthwise = true;
    random_geometry(c, rng, 11);
    c.groups = rng.irange(1, 80);  // C_in: tails of the 16-channel tiles and of the 64 / 32-channel units
    c.cin_g = 1;
    c.cout_g = rng.coin(75) ? 1 : rng.irange(2, 3);  // channel multiplier
    fill(c, rng);
    c.threads = rng.coin(25) ? 2 : 1;
    run.run(c, rng);
  }
}

// Big enough for the driver to split rows into bands between threads.
void depthwise_large(Runner& run) {
  struct G {
    int N, H, W, C, m, k, stride, pad, dil;
  };
  const G gs[] = {
      {1, 40, 40, 32, 1, 3, 1, 1, 1}, {2, 28, 31, 48, 1, 3, 2, 1, 1}, {1, 20, 20, 17, 2, 5, 1, 2, 1},
      {1, 33, 30, 64, 1, 3, 1, 2, 2}, {3, 14, 14, 24, 1, 7, 1, 3, 1},
      {1, 14, 14, 200, 1, 3, 1, 1, 1}, {1, 9, 9, 120, 1, 3, 2, 1, 1},  // many tiles, few rows
  };
  int i = 0;
  for (const G& g : gs) {
    for (int threads : {1, 2, 4}) {  // 4: more tasks than tiles for narrow layers (bands and tile groups)
      Rng rng(0xD1A26Eull + 17 * i++);
      ConvCase c;
      c.name = "large";
      c.depthwise = true;
      c.N = g.N, c.H = g.H, c.W = g.W, c.groups = g.C, c.cin_g = 1, c.cout_g = g.m;
      c.kh = c.kw = g.k, c.stride_h = c.stride_w = g.stride, c.pad_h = c.pad_w = g.pad, c.dil_h = c.dil_w = g.dil;
      fill(c, rng);
      c.threads = threads;
      run.run(c, rng);
    }
  }
}

// MobileNetV2-like 3x3 layers (pad 1, stride 1 and 2) with whole and partial
// 16-channel tiles, narrow and wide rows (the vector kernels' interior and
// edge columns, 4-column blocks and their tails), and a few 5x5 / 7x7 and
// dilated ones (several tap groups per kernel row).
void depthwise_mobilenet(Runner& run, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0x30B11Eull + 7717ull * i);
    ConvCase c;
    c.name = "mobilenet";
    c.depthwise = true;
    c.N = rng.coin(85) ? 1 : 2;
    const int kinds[] = {3, 3, 3, 3, 5, 7};
    c.kh = c.kw = kinds[rng.irange(0, 5)];
    c.stride_h = c.stride_w = rng.irange(1, 2);
    c.pad_h = c.pad_w = c.kh / 2;
    c.dil_h = c.dil_w = rng.coin(85) ? 1 : 2;
    const int span = (c.kh - 1) * c.dil_h + 1;
    c.H = std::max(rng.irange(1, 12), span - 2 * c.pad_h);
    c.W = std::max(rng.irange(1, 24), span - 2 * c.pad_w);
    const int channels[] = {16, 32, 48, 96, 144, 5, 17, 33, 100, 64, 80, 112, 200};
    c.groups = channels[rng.irange(0, 12)];
    c.cin_g = 1;
    c.cout_g = rng.coin(90) ? 1 : 2;
    fill(c, rng);
    c.threads = rng.coin(25) ? 2 : 1;
    run.run(c, rng);
  }
}

// Extremes: -128 weights (narrow_range off) against inputs at the far end of
// their range, so every product has its largest magnitude.
void extreme_cases(Runner& run) {
  for (int i = 0; i < 8; ++i) {
    Rng rng(0xE77ull + i);
    ConvCase c;
    c.name = "extreme";
    c.depthwise = i % 2 == 1;
    c.N = 1, c.H = 6, c.W = 7, c.kh = c.kw = 3, c.pad_h = c.pad_w = 1;
    c.groups = c.depthwise ? 19 : 1, c.cin_g = c.depthwise ? 1 : 19, c.cout_g = c.depthwise ? 1 : 21;
    fill(c, rng);
    c.narrow_range = false;
    c.x_signed = i % 4 < 2;
    c.x_zp = c.x_signed ? (i < 4 ? 127 : 0) : (i < 4 ? 255 : 0);
    for (auto& v : c.x) v = c.x_signed ? 0x80 : 0x00;  // -128 or 0: |x - z| up to 255
    for (auto& v : c.w) v = rng.coin() ? -128 : 127;
    run.run(c, rng);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> only, required;
  int cases = 300;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--isa=", 0) == 0) {
      only = megq_test::split(arg.substr(6));
    } else if (arg.rfind("--require=", 0) == 0) {
      required = megq_test::split(arg.substr(10));
    } else if (arg.rfind("--cases=", 0) == 0) {
      cases = std::atoi(arg.c_str() + 8);
    } else if (arg == "--verbose") {
      verbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--isa=a,b] [--require=a,b] [--cases=N] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  megq_test::print_isas("megq C++ conv2d / depthwise kernel tests");
  int setup_failures = 0;
  const std::vector<Isa> isas = megq_test::select_isas(only, required, &setup_failures);
  megq_test::install_fault_handlers();
  Runner run(isas, verbose);
  struct Section {
    const char* name;
    void (*fn)(Runner&, int);
  };
  const Section sections[] = {
      {"conv2d", [](Runner& r, int n) { conv_random(r, n); }},
      {"conv1x1", [](Runner& r, int n) { conv_pointwise(r, n / 2); }},
      {"conv-wide", [](Runner& r, int n) { conv_wide_rows(r, n / 2); }},
      {"conv-large", [](Runner& r, int) { conv_large(r); }},
      {"conv-7bit", [](Runner& r, int n) { conv_7bit(r, n); }},
      {"depthwise", [](Runner& r, int n) { depthwise_random(r, n); }},
      {"dw-large", [](Runner& r, int) { depthwise_large(r); }},
      {"dw-mobilenet", [](Runner& r, int n) { depthwise_mobilenet(r, n / 3); }},
      {"extreme", [](Runner& r, int) { extreme_cases(r); }},
  };
  for (const Section& s : sections) {
    const auto t0 = std::chrono::steady_clock::now();
    const Stats before = run.stats();
    s.fn(run, cases);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("section %-12s %6ld passed, %ld failed (%.1f s)\n", s.name, run.stats().passed - before.passed,
                run.stats().failed - before.failed, secs);
  }
  const long failed = run.stats().failed + setup_failures;
  std::printf("%ld passed, %ld failed\n", run.stats().passed, failed);
  return failed == 0 ? 0 : 1;
}
