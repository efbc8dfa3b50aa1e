// Bit-exact tests of megq's GEMM kernels, one run per ISA usable in this build.
//
// Every case packs B with megq::pack_gemm_weights for an explicit ISA, runs
// megq::gemm, and compares each output element with an independent reference
// written here: int64 accumulation of (a - z_a) * w + bias, then
//   y = clamp(round_half_away(float32(acc) * M) + z, lo, hi)
// with std::round (requantize.h states the rule; this file does not include it).
//
// It also checks that kernels
//   * never read outside the caller's A rows: A is placed so that its last
//     byte is the last byte before a PROT_NONE page (or its first byte the
//     first byte after one), so an over-read or under-read faults;
//   * never write outside C's rows: C is surrounded and interleaved by
//     canary bytes (row stride > row bytes) that must stay untouched.
//
// Usage: test_gemm_kernels [--isa=a,b] [--require=a,b] [--cube=N] [--verbose]
//   --isa      test only these ISAs (default: every usable one)
//   --require  fail unless these ISAs are usable here (so that a CI run under
//              an emulator cannot skip the path it is meant to test)
//   --cube     M, N, K each in 1..N for the exhaustive small-shape sweep (33)
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

#include "megq/gemm.h"
#include "megq/isa.h"
#include "megq/thread_pool.h"
#include "test_support.h"

namespace {

using megq::Isa;
using megq::OutputType;

using megq_test::GuardedArena;
using megq_test::Rng;
using megq_test::reference_requant;
using megq_test::g_current;
using megq_test::g_failed_so_far;
using megq_test::g_passed_so_far;

// ----------------------------------------------------------------- a case
enum class MultMode { kScaled, kPowerOfTwo, kFixed };

struct Case {
  std::string name;
  int M = 1, N = 1, K = 1;
  bool a_signed = true;
  int32_t a_zp = 0;
  ptrdiff_t a_stride = 0;      // >= K
  int c_extra = 0;             // bytes of canary after each C row
  int c_offset = 0;            // misalignment of C's base
  bool narrow_range = true;
  std::vector<uint8_t> a;      // M x K (dense here; copied to the strided buffer)
  std::vector<int8_t> w;       // K x N
  bool has_bias = false;
  std::vector<int32_t> bias;   // N
  OutputType out = OutputType::kInt8;
  int32_t out_zp = 0, out_min = -128, out_max = 127;
  bool per_channel = false;
  MultMode mult_mode = MultMode::kScaled;
  float fixed_mult = 0.5f;
  int threads = 1;
};

int out_bytes(OutputType t) { return t == OutputType::kInt32 ? 4 : 1; }
const char* out_name(OutputType t) {
  return t == OutputType::kInt32 ? "int32" : t == OutputType::kInt8 ? "int8" : "uint8";
}

// Reference accumulators (int64, exact) -> int32 (packing proved they fit).
std::vector<int32_t> reference_acc(const Case& c) {
  std::vector<int32_t> acc(static_cast<size_t>(c.M) * c.N);
  for (int m = 0; m < c.M; ++m) {
    for (int n = 0; n < c.N; ++n) {
      int64_t s = c.has_bias ? c.bias[n] : 0;
      for (int k = 0; k < c.K; ++k) {
        const uint8_t raw = c.a[static_cast<size_t>(m) * c.K + k];
        const int64_t x = c.a_signed ? static_cast<int64_t>(static_cast<int8_t>(raw)) : static_cast<int64_t>(raw);
        s += (x - c.a_zp) * c.w[static_cast<size_t>(k) * c.N + n];
      }
      if (s < INT32_MIN || s > INT32_MAX) {
        std::fprintf(stderr, "test bug: case %s has an accumulator outside int32\n", c.name.c_str());
        std::exit(2);
      }
      acc[static_cast<size_t>(m) * c.N + n] = static_cast<int32_t>(s);
    }
  }
  return acc;
}

// Multipliers that spread the outputs over the output range.
std::vector<float> choose_multipliers(const Case& c, const std::vector<int32_t>& acc, Rng& rng) {
  std::vector<int64_t> max_abs(c.N, 1);
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < c.N; ++n)
      max_abs[n] = std::max<int64_t>(max_abs[n], std::llabs(acc[static_cast<size_t>(m) * c.N + n]));
  const int count = c.per_channel ? c.N : 1;
  std::vector<float> mult(count);
  int64_t overall = 1;
  for (int64_t v : max_abs) overall = std::max(overall, v);
  for (int i = 0; i < count; ++i) {
    const double range = static_cast<double>(c.per_channel ? max_abs[i] : overall);
    switch (c.mult_mode) {
      case MultMode::kFixed:
        mult[i] = c.fixed_mult;
        break;
      case MultMode::kPowerOfTwo: {
        // 2^-e with 2^e around range/128: many products land on exact .5 ties.
        int e = static_cast<int>(std::ceil(std::log2(range / 128.0)));
        e = std::max(1, e + static_cast<int>(rng.range(-1, 1)));
        mult[i] = std::ldexp(1.0f, -e);
        break;
      }
      case MultMode::kScaled:
        mult[i] = static_cast<float>(140.0 / range * (0.5 + rng.uniform()));
        break;
    }
  }
  return mult;
}

struct Stats {
  long passed = 0, failed = 0;
};

struct Options {
  std::vector<Isa> isas;
  int cube = 33;
  bool verbose = false;
};


// Everything one test run shares: options, arenas, counters.
class Runner {
 public:
  explicit Runner(const Options& o)
      : opt_(o), tail_(kArenaBytes, /*guard_after=*/true), head_(kArenaBytes, /*guard_after=*/false) {}

  // Runs case `c` once per ISA; `rng` draws the multipliers and A's padding.
  void run(const Case& c, Rng& rng) {
    const std::vector<int32_t> acc = reference_acc(c);
    const bool quantized = c.out != OutputType::kInt32;
    const bool with_mult = quantized || rng.coin(30);
    std::vector<float> mult;
    if (with_mult) mult = choose_multipliers(c, acc, rng);

    // Expected C, as int32 values.
    std::vector<int32_t> expect(acc.size());
    for (int m = 0; m < c.M; ++m) {
      for (int n = 0; n < c.N; ++n) {
        const size_t i = static_cast<size_t>(m) * c.N + n;
        expect[i] = quantized ? reference_requant(acc[i], mult[c.per_channel ? n : 0], c.out_zp, c.out_min,
                                                  c.out_max)
                              : acc[i];
      }
    }

    // A at the edge of a guard page; the gaps between rows hold junk.
    GuardedArena& arena = (case_index_++ % 2 == 0) ? tail_ : head_;
    const size_t a_bytes = static_cast<size_t>(c.M - 1) * c.a_stride + c.K;
    uint8_t* a = arena.place(a_bytes);
    for (size_t i = 0; i < a_bytes; ++i) a[i] = static_cast<uint8_t>(rng.next());
    for (int m = 0; m < c.M; ++m) std::memcpy(a + m * c.a_stride, &c.a[static_cast<size_t>(m) * c.K], c.K);

    megq::PackGemmOptions po;
    po.bias = c.has_bias ? c.bias.data() : nullptr;
    po.multiplier = with_mult ? mult.data() : nullptr;
    po.multiplier_count = with_mult ? static_cast<int>(mult.size()) : 0;
    po.input_signed = c.a_signed;
    po.input_zero_point = c.a_zp;
    po.narrow_range = c.narrow_range;

    megq::GemmOutput go;
    go.type = c.out;
    go.zero_point = c.out_zp;
    go.min = c.out_min;
    go.max = c.out_max;

    const int eb = out_bytes(c.out);
    const ptrdiff_t c_stride = static_cast<ptrdiff_t>(c.N) * eb + c.c_extra;
    const size_t c_total = c.c_offset + static_cast<size_t>(c.M) * c_stride + 32;
    const uint8_t canary = static_cast<uint8_t>(0xA5 ^ (case_index_ & 0x3F));

    megq::set_num_threads(c.threads);
    for (Isa isa : opt_.isas) {
      std::string error;
      std::vector<uint8_t> cbuf(c_total, canary);
      uint8_t* cp = cbuf.data() + c.c_offset;
      std::snprintf(g_current, sizeof g_current, "[%s] %s", megq::isa_name(isa), describe(c).c_str());
      g_passed_so_far = stats_.passed, g_failed_so_far = stats_.failed;
      try {
        auto packed = megq::pack_gemm_weights(c.w.data(), c.K, c.N, c.N, po, isa);
        megq::gemm(*packed, a, c.M, c.a_stride, go, cp, c_stride);
      } catch (const std::exception& e) {
        error = std::string("exception: ") + e.what();
      }
      int bad = 0;
      std::string detail;
      if (error.empty()) {
        for (int m = 0; m < c.M; ++m) {
          const uint8_t* row = cp + m * c_stride;
          for (int n = 0; n < c.N; ++n) {
            int32_t got;
            if (c.out == OutputType::kInt32) {
              std::memcpy(&got, row + 4 * n, 4);
            } else if (c.out == OutputType::kInt8) {
              got = static_cast<int8_t>(row[n]);
            } else {
              got = row[n];
            }
            const size_t i = static_cast<size_t>(m) * c.N + n;
            if (got != expect[i]) {
              if (++bad <= 3) {
                char buf[200];
                std::snprintf(buf, sizeof buf, "\n    C[%d,%d] = %d, expected %d (acc %d, multiplier %.9g)", m, n,
                              got, expect[i], acc[i], with_mult ? mult[c.per_channel ? n : 0] : 0.0);
                detail += buf;
              }
            }
          }
        }
        // Canaries: everything outside the M rows of N elements.
        size_t touched = 0;
        for (size_t i = 0; i < c_total; ++i) {
          const ptrdiff_t off = static_cast<ptrdiff_t>(i) - c.c_offset;
          const bool inside = off >= 0 && off < c.M * c_stride && off % c_stride < static_cast<ptrdiff_t>(c.N) * eb;
          if (!inside && cbuf[i] != canary) ++touched;
        }
        if (touched) {
          error = "wrote " + std::to_string(touched) + " byte(s) outside C's rows";
        }
      }
      if (bad || !error.empty()) {
        ++stats_.failed;
        if (stats_.failed <= 25) {
          std::printf("FAIL [%s] %s: %s%s%s\n", megq::isa_name(isa), describe(c).c_str(), error.c_str(),
                      bad ? (std::to_string(bad) + " mismatching element(s)").c_str() : "", detail.c_str());
        }
      } else {
        ++stats_.passed;
        if (opt_.verbose) std::printf("ok   [%s] %s\n", megq::isa_name(isa), describe(c).c_str());
      }
    }
  }

  const Stats& stats() const { return stats_; }
  // Records the outcome of a check that is not a GEMM case.
  void count(bool ok) { ok ? ++stats_.passed : ++stats_.failed; }

  static std::string describe(const Case& c) {
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "%s M=%d N=%d K=%d A=%s zp=%d a_stride=%td narrow=%d bias=%d out=%s zp=%d [%d,%d] %s "
                  "mult=%s threads=%d",
                  c.name.c_str(), c.M, c.N, c.K, c.a_signed ? "int8" : "uint8", c.a_zp, c.a_stride,
                  c.narrow_range, c.has_bias, out_name(c.out), c.out_zp, c.out_min, c.out_max,
                  c.per_channel ? "per-channel" : "per-tensor",
                  c.mult_mode == MultMode::kScaled ? "scaled" : c.mult_mode == MultMode::kPowerOfTwo ? "pow2" : "fixed",
                  c.threads);
    return buf;
  }

  static constexpr size_t kArenaBytes = 4u << 20;

 private:
  Options opt_;
  GuardedArena tail_, head_;
  Stats stats_;
  long case_index_ = 0;
};

// ------------------------------------------------------------ case builders
// Fills A and W with random values and picks a random configuration.
void randomize(Case& c, Rng& rng) {
  c.a_signed = rng.coin();
  c.a_zp = rng.coin(60) ? 0 : static_cast<int32_t>(c.a_signed ? rng.range(-128, 127) : rng.range(0, 255));
  c.a_stride = c.K + (rng.coin(35) ? rng.range(1, 70) : 0);
  c.narrow_range = rng.coin(60);
  c.a.resize(static_cast<size_t>(c.M) * c.K);
  for (auto& v : c.a) v = static_cast<uint8_t>(rng.next());
  c.w.resize(static_cast<size_t>(c.K) * c.N);
  for (auto& v : c.w) v = static_cast<int8_t>(rng.range(c.narrow_range ? -127 : -128, 127));
  c.has_bias = rng.coin(60);
  c.bias.assign(c.N, 0);
  if (c.has_bias) {
    const int64_t range = rng.coin(80) ? 20000 : 1000000;
    for (auto& b : c.bias) b = static_cast<int32_t>(rng.range(-range, range));
  }
  const int t = static_cast<int>(rng.range(0, 9));
  c.out = t < 2 ? OutputType::kInt32 : t < 6 ? OutputType::kInt8 : OutputType::kUint8;
  const int32_t tlo = c.out == OutputType::kUint8 ? 0 : -128, thi = c.out == OutputType::kUint8 ? 255 : 127;
  c.out_zp = rng.coin() ? (c.out == OutputType::kUint8 ? 128 : 0) : static_cast<int32_t>(rng.range(tlo, thi));
  const int b = static_cast<int>(rng.range(0, 9));
  if (b < 6) {
    c.out_min = tlo, c.out_max = thi;
  } else if (b < 8) {  // fused ReLU
    c.out_min = c.out_zp, c.out_max = thi;
  } else {
    const int32_t x = static_cast<int32_t>(rng.range(tlo, thi)), y = static_cast<int32_t>(rng.range(tlo, thi));
    c.out_min = std::min(x, y), c.out_max = std::max(x, y);
  }
  c.per_channel = rng.coin();
  const int mm = static_cast<int>(rng.range(0, 9));
  c.mult_mode = mm < 6 ? MultMode::kScaled : mm < 9 ? MultMode::kPowerOfTwo : MultMode::kFixed;
  c.fixed_mult = 0.5f;
  c.c_extra = static_cast<int>(rng.range(0, 9));
  c.c_offset = static_cast<int>(rng.range(0, 3));
  c.threads = rng.coin(15) ? 2 : 1;
}

// Every (M, N, K) in 1..n: all row, column and depth tails of every tile size.
void cube_cases(Runner& run, int n) {
  for (int M = 1; M <= n; ++M) {
    for (int N = 1; N <= n; ++N) {
      for (int K = 1; K <= n; ++K) {
        Rng rng(0x1234567ull * M + 0x9876543ull * N + 0x55555ull * K);
        Case c;
        c.name = "cube";
        c.M = M, c.N = N, c.K = K;
        randomize(c, rng);
        run.run(c, rng);
      }
    }
  }
}

// Larger shapes (several panel blocks, thread splits, GEMV), 1 and 2 threads.
void large_cases(Runner& run) {
  const int shapes[][3] = {{67, 129, 300}, {128, 256, 512}, {1, 1000, 2000}, {2, 515, 1031}, {200, 37, 1000},
                           {9, 2000, 64},  {33, 64, 4096},  {3, 4099, 17},  {50, 1, 777}};
  int i = 0;
  for (const auto& s : shapes) {
    for (int threads = 1; threads <= 2; ++threads) {
      for (int variant = 0; variant < 2; ++variant) {
        Rng rng(0xABCDEFull + 1000 * i++);
        Case c;
        c.name = "large";
        c.M = s[0], c.N = s[1], c.K = s[2];
        randomize(c, rng);
        c.threads = threads;
        if (variant == 1) c.a_stride = c.K + 4096 + 3;  // rows far apart
        run.run(c, rng);
      }
    }
  }
}

// Extreme values: every product at its largest magnitude, K as deep as the
// int32 accumulator allows; with unsigned-shift kernels (VNNI) the running
// sum passes through wrap-around before the folded bias brings it back.
void extreme_cases(Runner& run) {
  struct X {
    bool a_signed;
    int a_val, a_zp, w_val;  // w_val 0: alternate +-127/-128 and a in {-128, 127}
    int K;
  };
  const X xs[] = {
      {true, -128, 0, -128, 131071},  // 128*128*K = 2^31 - 2^14
      {true, 127, 0, -128, 131071},   // most negative
      {true, 127, 0, 127, 132104},    // kMaxSafeK
      {true, -128, 0, 127, 132104},
      {false, 255, 0, -128, 65793},   // 255*128*K just below 2^31
      {false, 0, 255, -128, 65793},   // (0 - 255) * -128
      {false, 255, 0, 127, 66311},
      {true, -128, 127, -128, 65535},  // (a - z) = -255
      {true, 0, 0, 0, 131071},        // alternating signs
      {true, -128, 0, -128, 300},
      {false, 255, 0, -128, 33},
      {true, 127, -128, 127, 17},
  };
  int i = 0;
  for (const X& x : xs) {
    const bool deep = x.K > 10000;
    const int Ms[] = {1, 3, 9};
    const int Ns[] = {1, 17, 40};
    for (int mi = 0; mi < 3; ++mi) {
      for (int out = 0; out < 3; ++out) {
        Rng rng(0xE7E7E7ull + 77 * i++);
        Case c;
        c.name = "extreme";
        c.M = deep ? std::min(Ms[mi], 3) : Ms[mi];
        c.N = Ns[mi];
        c.K = x.K;
        c.a_signed = x.a_signed;
        c.a_zp = x.a_zp;
        c.a_stride = c.K + (mi == 1 ? 5 : 0);
        c.narrow_range = false;
        c.a.assign(static_cast<size_t>(c.M) * c.K, static_cast<uint8_t>(x.a_val));
        c.w.assign(static_cast<size_t>(c.K) * c.N, static_cast<int8_t>(x.w_val));
        if (x.w_val == 0) {
          for (auto& v : c.a) v = static_cast<uint8_t>(rng.coin() ? 0x80 : 0x7F);
          for (auto& v : c.w) v = static_cast<int8_t>(rng.coin() ? -128 : 127);
        }
        c.has_bias = false;
        c.bias.assign(c.N, 0);
        c.out = out == 0 ? OutputType::kInt32 : out == 1 ? OutputType::kInt8 : OutputType::kUint8;
        c.out_zp = out == 2 ? 128 : 0;
        c.out_min = out == 2 ? 0 : -128;
        c.out_max = out == 2 ? 255 : 127;
        c.per_channel = rng.coin();
        c.mult_mode = MultMode::kScaled;  // |acc| beyond 2^24: float32(acc) rounding matters
        c.threads = 1 + (i % 2);
        run.run(c, rng);
      }
    }
  }
}

// Activations whose bytes are all < 128 (int8 in [0, 127], uint8 <= 127):
// the AVX2 kernel runs its exact 7-bit vpmaddubsw path on them (bound proved
// in kernels/avx2/gemm_avx2.cc). Every M, N, K tail, any zero point, with the
// largest pair sums (127 against -128 / 127 weights) in part of the cases;
// then the same with one byte >= 128 somewhere, which must fall back.
void seven_bit_cases(Runner& run, int n) {
  const int Ns[] = {1, 15, 16, 17, 33};
  for (int M = 1; M <= std::min(n, 13); ++M) {
    for (int N : Ns) {
      for (int K = 1; K <= n; ++K) {
        for (int variant = 0; variant < 3; ++variant) {
          Rng rng(0x7B17ull * M + 0x3131ull * N + 0x77ull * K + variant);
          Case c;
          c.name = variant == 0 ? "7bit" : variant == 1 ? "7bit-max" : "7bit-one-high";
          c.M = M, c.N = N, c.K = K;
          randomize(c, rng);
          for (auto& v : c.a) v &= 0x7F;
          if (variant == 1) {
            c.narrow_range = false;
            for (auto& v : c.a) v = 0x7F;
            for (auto& v : c.w) v = static_cast<int8_t>(rng.coin() ? -128 : 127);
          }
          if (variant == 2) c.a[static_cast<size_t>(rng.range(0, static_cast<int64_t>(c.a.size()) - 1))] |= 0x80;
          run.run(c, rng);
        }
      }
    }
  }
  // Larger: several tasks at 2 threads, one of them holding the high byte.
  for (int i = 0; i < 8; ++i) {
    Rng rng(0x7B17B17ull + i);
    Case c;
    c.name = "7bit-large";
    c.M = 300 + 7 * i, c.N = 70 + i, c.K = 515 + i;
    randomize(c, rng);
    for (auto& v : c.a) v &= 0x7F;
    if (i % 2 == 1) c.a[static_cast<size_t>(rng.range(0, static_cast<int64_t>(c.a.size()) - 1))] |= 0x80;
    c.threads = 1 + i % 2;
    run.run(c, rng);
  }
#if defined(__x86_64__) || defined(_M_X64)
  // The path is really taken: pack_a_u7 accepts exactly the rows whose bytes
  // are all < 128 and copies them (zero up to Kp_u7).
  if (megq::isa_usable(Isa::kAvx2)) {
    for (int K = 1; K <= 70; ++K) {
      std::vector<int8_t> w(static_cast<size_t>(K) * 3, 1);
      megq::PackGemmOptions po;
      auto packed = megq::pack_gemm_weights(w.data(), K, 3, 3, po, Isa::kAvx2);
      megq::GemmArgs g{};
      const int rows = 7;
      std::vector<uint8_t> a(static_cast<size_t>(rows) * K);
      Rng rng(0x9A9Aull + K);
      for (auto& v : a) v = static_cast<uint8_t>(rng.next() & 0x7F);
      g.a = a.data(), g.a_stride = K, g.K = K, g.Kp = packed->Kp;
      g.packed_u7 = packed->packed_u7.as<uint8_t>(), g.Kp_u7 = packed->Kp_u7;
      std::vector<uint8_t> dst(static_cast<size_t>(rows) * packed->Kp_u7 + 64, 0xEE);
      bool ok = packed->Kp_u7 == (K + 3) / 4 * 4 && megq::avx2::pack_a_u7(g, 0, rows, dst.data());
      for (int r = 0; ok && r < rows; ++r) {
        for (int k = 0; k < packed->Kp_u7; ++k) {
          ok = ok && dst[static_cast<size_t>(r) * packed->Kp_u7 + k] == (k < K ? a[static_cast<size_t>(r) * K + k] : 0);
        }
      }
      for (size_t i = 0; i < a.size(); i += 1 + i % 5) {  // one high byte anywhere -> rejected
        a[i] |= 0x80;
        ok = ok && !megq::avx2::pack_a_u7(g, 0, rows, dst.data());
        a[i] &= 0x7F;
      }
      if (!ok) std::printf("FAIL avx2::pack_a_u7 K=%d: accepted/rejected the wrong rows or copied them wrong\n", K);
      run.count(ok);
    }
  }
#endif
}

// Rounding ties: multipliers 2^-e make every odd accumulator an exact .5;
// the neighbours of 0.5 catch "add 0.5 and truncate" epilogues.
void rounding_cases(Runner& run) {
  const float mults[] = {0.5f, 0.25f, 0.125f, 1.5f, std::nextafter(0.5f, 0.0f), std::nextafter(0.5f, 1.0f),
                         2.5f, 1000.0f, 1.0f / 65536.0f};
  int i = 0;
  for (float mult : mults) {
    for (int out = 0; out < 2; ++out) {
      for (int K = 1; K <= 3; ++K) {
        Rng rng(0x7157ull + 31 * i++);
        Case c;
        c.name = "ties";
        c.M = 37, c.N = 35, c.K = K;
        randomize(c, rng);
        for (auto& v : c.w) v = static_cast<int8_t>(rng.coin() ? 1 : -1);
        c.a_zp = 0;
        c.has_bias = true;
        for (auto& b : c.bias) b = static_cast<int32_t>(rng.range(-100, 100));
        c.out = out == 0 ? OutputType::kInt8 : OutputType::kUint8;
        c.out_zp = out == 0 ? static_cast<int32_t>(rng.range(-20, 20)) : static_cast<int32_t>(rng.range(100, 150));
        c.out_min = out == 0 ? -128 : 0;
        c.out_max = out == 0 ? 127 : 255;
        c.mult_mode = MultMode::kFixed;
        c.fixed_mult = mult;
        c.per_channel = false;
        run.run(c, rng);
      }
    }
  }
  // Per-channel powers of two on random data (ties wherever acc has the bit).
  for (int j = 0; j < 40; ++j) {
    Rng rng(0x7158ull + 13 * j);
    Case c;
    c.name = "ties-pow2";
    c.M = static_cast<int>(rng.range(1, 20)), c.N = static_cast<int>(rng.range(1, 70));
    c.K = static_cast<int>(rng.range(1, 100));
    randomize(c, rng);
    if (c.out == OutputType::kInt32) c.out = OutputType::kInt8, c.out_min = -128, c.out_max = 127, c.out_zp = 0;
    c.mult_mode = MultMode::kPowerOfTwo;
    c.per_channel = true;
    run.run(c, rng);
  }
}

// The AVX-512 VNNI epilogue rounds a clamped float v (|v| <= 255) half away
// from zero by truncating v + copysign(0.49999997f, v) (the float below 0.5;
// the argument is in kernels/avx512vnni/gemm_avx512vnni.cc). Checked here for
// every float with |v| <= 256, both signs, against std::round (sampled when the
// test runs under an emulator, where the full sweep takes minutes).
void rounding_identity(Runner& run) {
#if defined(__x86_64__)
  const uint32_t step = 1;
#else
  const uint32_t step = 4099;
#endif
  const uint32_t last = 0x43800000u;  // bits of 256.0f
  const float h = std::nextafter(0.5f, 0.0f);
  long bad = 0;
  uint32_t first_bad = 0;
  for (uint32_t bits = 0; bits <= last; bits += step) {
    float v;
    std::memcpy(&v, &bits, 4);
    for (int s = 0; s < 2; ++s, v = -v) {
      const int32_t fast = static_cast<int32_t>(v + std::copysign(h, v));  // vaddps, then vcvttps2dq
      // Reference: truncate, then step away from zero when the dropped
      // fraction (exact: |v| < 2^24) is at least one half.
      const int32_t t = static_cast<int32_t>(v);
      const float frac = v - static_cast<float>(t);
      const int32_t expect = t + (frac >= 0.5f) - (frac <= -0.5f);
      if (fast != expect && bad++ == 0) first_bad = bits;
    }
  }
  if (bad != 0) {
    float v;
    std::memcpy(&v, &first_bad, 4);
    std::printf("FAIL rounding identity: %ld floats round differently, first %.9g\n", bad, v);
  }
  run.count(bad == 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep output if a fault ends the run
  Options opt;
  std::vector<std::string> only, required;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--isa=", 0) == 0) {
      only = megq_test::split(arg.substr(6));
    } else if (arg.rfind("--require=", 0) == 0) {
      required = megq_test::split(arg.substr(10));
    } else if (arg.rfind("--cube=", 0) == 0) {
      opt.cube = std::atoi(arg.c_str() + 7);
    } else if (arg == "--verbose") {
      opt.verbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--isa=a,b] [--require=a,b] [--cube=N] [--verbose]\n", argv[0]);
      return 2;
    }
  }

  megq_test::print_isas("megq C++ GEMM kernel tests");
  int setup_failures = 0;
  opt.isas = megq_test::select_isas(only, required, &setup_failures);

  megq_test::install_fault_handlers();
  Runner run(opt);
  struct Section {
    const char* name;
    void (*fn)(Runner&, int);
  };
  const Section sections[] = {
      {"cube", [](Runner& r, int n) { cube_cases(r, n); }},
      {"large", [](Runner& r, int) { large_cases(r); }},
      {"extreme", [](Runner& r, int) { extreme_cases(r); }},
      {"7bit", [](Runner& r, int n) { seven_bit_cases(r, n); }},
      {"rounding", [](Runner& r, int) { rounding_cases(r); }},
      {"round-id", [](Runner& r, int) { rounding_identity(r); }},
  };
  for (const Section& s : sections) {
    const auto t0 = std::chrono::steady_clock::now();
    const Stats before = run.stats();
    s.fn(run, opt.cube);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("section %-9s %7ld passed, %ld failed (%.1f s)\n", s.name, run.stats().passed - before.passed,
                run.stats().failed - before.failed, secs);
    std::fflush(stdout);
  }

  const long failed = run.stats().failed + setup_failures;
  std::printf("%ld passed, %ld failed\n", run.stats().passed, failed);
  return failed == 0 ? 0 : 1;
}
