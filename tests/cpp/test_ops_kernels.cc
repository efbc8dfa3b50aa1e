// Bit-exact tests of megq's small operator families -- quantize / dequantize /
// requantize, quantized add / mul, max / average / global-average pooling --
// one run per ISA usable in this build (each forced with set_active_isa), so
// the NEON kernels are tested under qemu (tests/cpp/run_neon_tests.sh) and the
// x86 ones natively.
//
// Every case is compared with a reference written here from the contracts in
// csrc/megq/{quantize,elementwise,pooling}.h (float32 operations in the stated
// order, std::round = round half away from zero), not with megq's scalar
// kernels. Inputs are placed against a PROT_NONE page (end or start, in turn)
// and so are outputs, so any read or write outside the caller's buffers
// faults; the fault handler names the case.
//
// Usage: test_ops_kernels [--isa=a,b] [--require=a,b] [--cases=N] [--verbose]
// The last line is "N passed, M failed"; the exit code is 1 on any failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "megq/elementwise.h"
#include "megq/isa.h"
#include "megq/pooling.h"
#include "megq/quantize.h"
#include "megq/thread_pool.h"
#include "test_support.h"

namespace {

using megq::Isa;
using megq_test::GuardedArena;
using megq_test::Rng;

constexpr size_t kArena = 4u << 20;

struct Ctx {
  std::vector<Isa> isas;
  bool verbose = false;
  long passed = 0, failed = 0;
  long index = 0;
  GuardedArena in_tail{kArena, true}, in_head{kArena, false}, in2_tail{kArena, true}, in2_head{kArena, false};
  GuardedArena out_tail{kArena, true}, out_head{kArena, false};

  // Input and output placements for the next case (alternating guard sides).
  bool tail() const { return index % 2 == 0; }
  uint8_t* in(size_t bytes) { return (tail() ? in_tail : in_head).place(std::max<size_t>(bytes, 1)); }
  uint8_t* in2(size_t bytes) { return (tail() ? in2_head : in2_tail).place(std::max<size_t>(bytes, 1)); }
  uint8_t* out(size_t bytes) { return (tail() ? out_head : out_tail).place(std::max<size_t>(bytes, 1)); }

  // Runs `fn` once per ISA; `fn` returns an empty string on success.
  template <class Fn>
  void each_isa(const std::string& what, Fn fn) {
    for (Isa isa : isas) {
      megq::set_active_isa(isa);
      std::snprintf(megq_test::g_current, sizeof megq_test::g_current, "[%s] %s", megq::isa_name(isa),
                    what.c_str());
      megq_test::g_passed_so_far = passed, megq_test::g_failed_so_far = failed;
      std::string error;
      try {
        error = fn();
      } catch (const std::exception& e) {
        error = std::string("exception: ") + e.what();
      }
      if (error.empty()) {
        ++passed;
        if (verbose) std::printf("ok   [%s] %s\n", megq::isa_name(isa), what.c_str());
      } else {
        ++failed;
        if (failed <= 25) std::printf("FAIL [%s] %s: %s\n", megq::isa_name(isa), what.c_str(), error.c_str());
      }
    }
    ++index;
  }
};

int32_t qmin(bool s) { return s ? -128 : 0; }
int32_t qmax(bool s) { return s ? 127 : 255; }
int32_t val(uint8_t b, bool s) { return s ? static_cast<int8_t>(b) : b; }
int32_t clamp_round(float v, int32_t z, int32_t lo, int32_t hi) {
  const float c = std::fmin(std::fmax(v, static_cast<float>(lo - z)), static_cast<float>(hi - z));
  return static_cast<int32_t>(std::round(c)) + z;
}

std::string compare_bytes(const uint8_t* got, const std::vector<int32_t>& want, bool s) {
  int bad = 0;
  std::string detail;
  for (size_t i = 0; i < want.size(); ++i) {
    if (val(got[i], s) != want[i] && ++bad <= 3) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " [%zu]=%d want %d", i, val(got[i], s), want[i]);
      detail += buf;
    }
  }
  return bad ? std::to_string(bad) + " mismatching byte(s):" + detail : "";
}

float pick_scale(Rng& rng) {
  return rng.coin(20) ? std::ldexp(1.0f, -rng.irange(0, 8))
                      : static_cast<float>(std::exp(rng.uniform() * 8.0 - 6.0));
}

// ------------------------------------------------------------- quantize
void quantize_cases(Ctx& ctx, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0x9A47ull + 104723ull * i);
    // C = 1 and C = 3 (RGB images) have kernels of their own.
    const int N = rng.irange(1, 2), C = rng.coin(30) ? 1 : rng.coin(25) ? 3 : rng.irange(1, 40), H = rng.irange(1, 6);
    const int W = rng.irange(1, 45);
    const bool s = rng.coin();
    const float scale = pick_scale(rng);
    const int32_t z = rng.coin(30) ? 0 : rng.irange(qmin(s), qmax(s));
    const ptrdiff_t sh = W + (rng.coin(30) ? rng.irange(1, 5) : 0), sc = H * sh, sn = C * sc;
    const size_t floats = static_cast<size_t>(N - 1) * sn + (C - 1) * sc + (H - 1) * sh + W;
    std::vector<float> x(floats);
    for (auto& v : x) {
      const int kind = rng.irange(0, 99);
      if (kind < 10) {
        v = (static_cast<float>(rng.irange(-300, 300)) + 0.5f) * scale;  // near ties
      } else if (kind < 12) {
        v = rng.coin() ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
      } else if (kind < 15) {
        v = static_cast<float>((rng.uniform() - 0.5) * 1e9);
      } else {
        v = static_cast<float>((rng.uniform() - 0.5) * 300.0) * scale;
      }
    }
    const bool with_nan = rng.coin(8);
    if (with_nan) {  // at an element of the tensor (not in a stride gap)
      x[rng.irange(0, N - 1) * sn + rng.irange(0, C - 1) * sc + rng.irange(0, H - 1) * sh + rng.irange(0, W - 1)] =
          std::numeric_limits<float>::quiet_NaN();
    }
    std::vector<int32_t> want(static_cast<size_t>(N) * H * W * C);
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < C; ++c)
        for (int h = 0; h < H; ++h)
          for (int w = 0; w < W; ++w)
            want[((static_cast<size_t>(n) * H + h) * W + w) * C + c] =
                clamp_round(x[n * sn + c * sc + h * sh + w] / scale, z, qmin(s), qmax(s));
    float* xp = reinterpret_cast<float*>(ctx.in(floats * sizeof(float)));
    std::memcpy(xp, x.data(), floats * sizeof(float));
    uint8_t* yp = ctx.out(want.size());
    megq::set_num_threads(rng.coin(25) ? 2 : 1);
    char what[160];
    std::snprintf(what, sizeof what, "quantize N=%d C=%d H=%d W=%d sh=%td %s z=%d scale=%g%s", N, C, H, W, sh,
                  s ? "int8" : "uint8", z, scale, with_nan ? " NaN" : "");
    ctx.each_isa(what, [&]() -> std::string {
      try {
        megq::quantize_nchw_to_nhwc(xp, N, C, H, W, sn, sc, sh, scale, z, s, yp);
      } catch (const std::exception& e) {
        if (with_nan && std::strstr(e.what(), "NaN")) return "";
        throw;
      }
      if (with_nan) return "NaN input did not raise";
      return compare_bytes(yp, want, s);
    });
  }
}

void dequantize_cases(Ctx& ctx, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xDE9ull + 7919ull * i);
    const int N = rng.irange(1, 2), C = rng.coin(30) ? 1 : rng.irange(1, 40), H = rng.irange(1, 5);
    const int W = rng.irange(1, 45);
    const bool s = rng.coin();
    const float scale = pick_scale(rng);
    const int32_t z = rng.irange(qmin(s), qmax(s));
    const ptrdiff_t sw = C + (rng.coin(25) ? rng.irange(1, 3) : 0);
    const ptrdiff_t sh = W * sw + (rng.coin(25) ? rng.irange(1, 7) : 0), sn = H * sh;
    const size_t bytes = static_cast<size_t>(N - 1) * sn + (H - 1) * sh + (W - 1) * sw + C;
    uint8_t* qp = ctx.in(bytes);
    for (size_t k = 0; k < bytes; ++k) qp[k] = static_cast<uint8_t>(rng.next());
    std::vector<float> want(static_cast<size_t>(N) * C * H * W);
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < H; ++h)
        for (int w = 0; w < W; ++w)
          for (int c = 0; c < C; ++c)
            want[((static_cast<size_t>(n) * C + c) * H + h) * W + w] =
                static_cast<float>(val(qp[n * sn + h * sh + w * sw + c], s) - z) * scale;
    float* yp = reinterpret_cast<float*>(ctx.out(want.size() * sizeof(float)));
    megq::set_num_threads(rng.coin(25) ? 2 : 1);
    char what[160];
    std::snprintf(what, sizeof what, "dequantize N=%d C=%d H=%d W=%d sw=%td sh=%td %s z=%d scale=%g", N, C, H, W,
                  sw, sh, s ? "int8" : "uint8", z, scale);
    ctx.each_isa(what, [&]() -> std::string {
      megq::dequantize_nhwc_to_nchw(qp, N, H, W, C, sn, sh, sw, s, scale, z, yp);
      int bad = 0;
      for (size_t k = 0; k < want.size(); ++k) bad += std::memcmp(&yp[k], &want[k], sizeof(float)) != 0;
      return bad ? std::to_string(bad) + " mismatching float(s)" : "";
    });
  }
}

void requantize_cases(Ctx& ctx, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0x7E9ull + 15485863ull * i);
    const int64_t n = rng.coin(10) ? rng.irange(60000, 140000) : rng.irange(1, 200);
    const bool si = rng.coin(), so = rng.coin();
    const float s_in = pick_scale(rng), s_out = pick_scale(rng);
    const int32_t zi = rng.irange(qmin(si), qmax(si)), zo = rng.irange(qmin(so), qmax(so));
    uint8_t* src = ctx.in(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) src[k] = static_cast<uint8_t>(rng.next());
    const float m = s_in / s_out;
    std::vector<int32_t> want(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k)
      want[k] = clamp_round(static_cast<float>(val(src[k], si) - zi) * m, zo, qmin(so), qmax(so));
    uint8_t* dst = ctx.out(static_cast<size_t>(n));
    megq::set_num_threads(rng.coin(25) ? 2 : 1);
    char what[160];
    std::snprintf(what, sizeof what, "requantize n=%lld %s z=%d s=%g -> %s z=%d s=%g", static_cast<long long>(n),
                  si ? "int8" : "uint8", zi, s_in, so ? "int8" : "uint8", zo, s_out);
    ctx.each_isa(what, [&]() -> std::string {
      megq::requantize(src, n, si, s_in, zi, so, s_out, zo, dst);
      return compare_bytes(dst, want, so);
    });
  }
}

// ------------------------------------------------------------ add / mul
void elementwise_cases(Ctx& ctx, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xE1Eull + 49979687ull * i);
    const int64_t n = rng.coin(10) ? rng.irange(40000, 100000) : rng.irange(1, 150);
    const int kind = rng.irange(0, 2);  // add, add + relu, mul
    int64_t period = n;
    if (rng.coin(30)) {
      const int64_t choices[] = {1, 3, 16, 17};
      period = choices[rng.irange(0, 3)];
      if (n % period) period = 1;
    }
    megq::TensorQParams qa{pick_scale(rng), 0, rng.coin()}, qb{pick_scale(rng), 0, rng.coin()};
    megq::TensorQParams qy{pick_scale(rng), 0, rng.coin()};
    qa.zero_point = rng.irange(qmin(qa.is_signed), qmax(qa.is_signed));
    qb.zero_point = rng.irange(qmin(qb.is_signed), qmax(qb.is_signed));
    qy.zero_point = rng.irange(qmin(qy.is_signed), qmax(qy.is_signed));
    if (rng.coin(30)) {  // power-of-two scales: many exact .5 ties before rounding
      qa.scale = std::ldexp(1.0f, -rng.irange(0, 3));
      qb.scale = std::ldexp(1.0f, -rng.irange(0, 3));
      qy.scale = std::ldexp(1.0f, rng.irange(0, 2));
    } else if (rng.coin(10)) {  // huge multipliers: sums far beyond int32 before the clamp
      qy.scale = std::ldexp(1.0f, -rng.irange(20, 40));
    }
    uint8_t* a = ctx.in(static_cast<size_t>(n));
    uint8_t* b = ctx.in2(static_cast<size_t>(period));
    for (int64_t k = 0; k < n; ++k) a[k] = static_cast<uint8_t>(rng.next());
    for (int64_t k = 0; k < period; ++k) b[k] = static_cast<uint8_t>(rng.next());
    const int32_t lo = kind == 1 ? qy.zero_point : qmin(qy.is_signed), hi = qmax(qy.is_signed);
    const float ma = qa.scale / qy.scale, mb = qb.scale / qy.scale;
    const float mm = (qa.scale * qb.scale) / qy.scale;
    std::vector<int32_t> want(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) {
      const int32_t x = val(a[k], qa.is_signed) - qa.zero_point, y = val(b[k % period], qb.is_signed) - qb.zero_point;
      float v;
      if (kind < 2) {
        const float va = static_cast<float>(x) * ma, vb = static_cast<float>(y) * mb;
        v = va + vb;
      } else {
        const float prod = static_cast<float>(x) * static_cast<float>(y);
        v = prod * mm;
      }
      want[k] = clamp_round(v, qy.zero_point, lo, hi);
    }
    uint8_t* y = ctx.out(static_cast<size_t>(n));
    megq::set_num_threads(rng.coin(25) ? 2 : 1);
    char what[200];
    std::snprintf(what, sizeof what, "%s n=%lld period=%lld a=%s b=%s y=%s", kind == 0 ? "add" : kind == 1 ? "add_relu" : "mul",
                  static_cast<long long>(n), static_cast<long long>(period), qa.is_signed ? "int8" : "uint8",
                  qb.is_signed ? "int8" : "uint8", qy.is_signed ? "int8" : "uint8");
    ctx.each_isa(what, [&]() -> std::string {
      if (kind < 2) {
        megq::quantized_add(a, qa, b, qb, y, qy, n, kind == 1, period);
      } else {
        megq::quantized_mul(a, qa, b, qb, y, qy, n, period);
      }
      return compare_bytes(y, want, qy.is_signed);
    });
  }
}

// -------------------------------------------------------------- pooling
int32_t mean_ref(int32_t sum, int32_t count) {
  return static_cast<int32_t>(std::round(static_cast<float>(sum) / static_cast<float>(count)));
}

void pooling_cases(Ctx& ctx, int cases) {
  for (int i = 0; i < cases; ++i) {
    Rng rng(0xB001ull + 32452843ull * i);
    const bool global = rng.coin(25);
    megq::Pool2dParams p;
    p.kh = rng.irange(1, 4), p.kw = rng.irange(1, 4);
    p.stride_h = rng.irange(1, 3), p.stride_w = rng.irange(1, 3);
    p.dil_h = rng.coin(80) ? 1 : 2, p.dil_w = rng.coin(80) ? 1 : 2;
    p.pad_h = rng.irange(0, (p.kh - 1) * p.dil_h / 2), p.pad_w = rng.irange(0, (p.kw - 1) * p.dil_w / 2);
    p.mode = static_cast<megq::PoolMode>(rng.irange(0, 2));
    const int N = rng.irange(1, 2), C = rng.coin(30) ? rng.irange(1, 20) : rng.irange(16, 70);
    const int H = std::max(rng.irange(1, 9), (p.kh - 1) * p.dil_h + 1 - 2 * p.pad_h);
    const int W = std::max(rng.irange(1, 9), (p.kw - 1) * p.dil_w + 1 - 2 * p.pad_w);
    const bool s = rng.coin();
    const int32_t z = rng.irange(qmin(s), qmax(s));
    const ptrdiff_t sw = C + (rng.coin(25) ? rng.irange(1, 3) : 0);
    const ptrdiff_t sh = W * sw + (rng.coin(25) ? rng.irange(1, 5) : 0), sn = H * sh;
    const size_t bytes = static_cast<size_t>(N - 1) * sn + (H - 1) * sh + (W - 1) * sw + C;
    uint8_t* x = ctx.in(bytes);
    for (size_t k = 0; k < bytes; ++k) x[k] = static_cast<uint8_t>(rng.next());
    if (rng.coin(20)) {  // extremes: every tap at the end of the range
      const uint8_t e = s ? (rng.coin() ? 0x80 : 0x7F) : (rng.coin() ? 0x00 : 0xFF);
      std::memset(x, e, bytes);
    }
    auto at = [&](int n, int h, int w, int c) { return val(x[n * sn + h * sh + w * sw + c], s); };
    std::vector<int32_t> want;
    bool empty_window = false;  // the driver rejects such geometry; draw another case
    int OH = 1, OW = 1;
    if (global) {
      for (int n = 0; n < N; ++n)
        for (int c = 0; c < C; ++c) {
          int32_t sum = 0;
          for (int h = 0; h < H; ++h)
            for (int w = 0; w < W; ++w) sum += at(n, h, w, c);
          want.push_back(mean_ref(sum, H * W));
        }
    } else {
      OH = (H + 2 * p.pad_h - (p.kh - 1) * p.dil_h - 1) / p.stride_h + 1;
      OW = (W + 2 * p.pad_w - (p.kw - 1) * p.dil_w - 1) / p.stride_w + 1;
      for (int n = 0; n < N; ++n)
        for (int oh = 0; oh < OH; ++oh)
          for (int ow = 0; ow < OW; ++ow)
            for (int c = 0; c < C; ++c) {
              int32_t m = std::numeric_limits<int32_t>::min(), sum = 0, taps = 0;
              for (int ki = 0; ki < p.kh; ++ki)
                for (int kj = 0; kj < p.kw; ++kj) {
                  const int ih = oh * p.stride_h - p.pad_h + ki * p.dil_h, iw = ow * p.stride_w - p.pad_w + kj * p.dil_w;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  const int32_t v = at(n, ih, iw, c);
                  m = std::max(m, v);
                  sum += v;
                  ++taps;
                }
              if (taps == 0) empty_window = true;
              if (p.mode == megq::PoolMode::kMax) {
                want.push_back(m);
              } else if (p.mode == megq::PoolMode::kAvgExcludePadding) {
                want.push_back(mean_ref(sum, taps));
              } else {
                want.push_back(mean_ref(sum + (p.kh * p.kw - taps) * z, p.kh * p.kw));
              }
            }
    }
    if (empty_window) continue;
    uint8_t* y = ctx.out(want.size());
    megq::set_num_threads(rng.coin(25) ? 2 : 1);
    char what[220];
    std::snprintf(what, sizeof what, "%s N=%d H=%d W=%d C=%d k=%dx%d stride=%d,%d pad=%d,%d dil=%d,%d %s z=%d",
                  global ? "global_avg" : p.mode == megq::PoolMode::kMax ? "max" :
                  p.mode == megq::PoolMode::kAvgExcludePadding ? "avg_exclude" : "avg_include",
                  N, H, W, C, p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
                  s ? "int8" : "uint8", z);
    ctx.each_isa(what, [&]() -> std::string {
      if (global) {
        megq::global_avg_pool2d(x, N, H, W, C, sn, sh, sw, s, y);
      } else {
        megq::pool2d(x, N, H, W, C, sn, sh, sw, s, z, p, y);
      }
      return compare_bytes(y, want, s);
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> only, required;
  int cases = 300;
  Ctx ctx;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--isa=", 0) == 0) {
      only = megq_test::split(arg.substr(6));
    } else if (arg.rfind("--require=", 0) == 0) {
      required = megq_test::split(arg.substr(10));
    } else if (arg.rfind("--cases=", 0) == 0) {
      cases = std::atoi(arg.c_str() + 8);
    } else if (arg == "--verbose") {
      ctx.verbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--isa=a,b] [--require=a,b] [--cases=N] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  megq_test::print_isas("megq C++ quantize / elementwise / pooling kernel tests");
  int setup_failures = 0;
  ctx.isas = megq_test::select_isas(only, required, &setup_failures);
  megq_test::install_fault_handlers();
  struct Section {
    const char* name;
    void (*fn)(Ctx&, int);
  };
  const Section sections[] = {
      {"quantize", quantize_cases},     {"dequantize", dequantize_cases}, {"requantize", requantize_cases},
      {"elementwise", elementwise_cases}, {"pooling", pooling_cases},
  };
  for (const Section& sec : sections) {
    const auto t0 = std::chrono::steady_clock::now();
    const long p0 = ctx.passed, f0 = ctx.failed;
    sec.fn(ctx, cases);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("section %-12s %6ld passed, %ld failed (%.1f s)\n", sec.name, ctx.passed - p0, ctx.failed - f0, secs);
  }
  const long failed = ctx.failed + setup_failures;
  std::printf("%ld passed, %ld failed\n", ctx.passed, failed);
  return failed == 0 ? 0 : 1;
}
