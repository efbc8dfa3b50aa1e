// The GEMM driver: argument checks, weight packing, bias folding, and the
// split of C into tasks for the thread pool. The arithmetic lives in the
// per-ISA kernels (kernels/<isa>/gemm_*.cc), selected through gemm_entry().
#include "megq/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "megq/thread_pool.h"

namespace megq {
namespace {

struct GemmIsaEntry {
  GemmLayout (*layout)();
  void (*block)(const GemmArgs&, int, int, int, int, uint8_t*);
  void (*pack_a)(const GemmArgs&, int, int, uint8_t*);
  void (*peak)(int64_t, int32_t*);
  const int64_t* peak_ops;
};

GemmIsaEntry gemm_entry(Isa isa) {
  switch (isa) {
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2:
      return {avx2::gemm_layout, avx2::gemm_block, avx2::pack_a, avx2::dot_peak_loop, &avx2::kPeakOpsPerIteration};
#endif
#ifdef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
      return {avx512vnni::gemm_layout, avx512vnni::gemm_block, avx512vnni::pack_a, avx512vnni::dot_peak_loop,
              &avx512vnni::kPeakOpsPerIteration};
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon:
      return {neon::gemm_layout, neon::gemm_block, neon::pack_a, neon::dot_peak_loop, &neon::kPeakOpsPerIteration};
#endif
#ifdef MEGQ_BUILT_NEONDOT
    case Isa::kNeonDot:
      return {neondot::gemm_layout, neondot::gemm_block, neondot::pack_a, neondot::dot_peak_loop,
              &neondot::kPeakOpsPerIteration};
#endif
    default:
      return {scalar::gemm_layout, scalar::gemm_block, scalar::pack_a, scalar::dot_peak_loop,
              &scalar::kPeakOpsPerIteration};
  }
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Weights of one task's panels are kept to about this many bytes so that they
// stay in L2 while the task walks down its rows.
constexpr size_t kPanelBlockBytes = 256 * 1024;
// A task's rows of A, once converted for the kernel, take about this much.
// Every chunk of rows streams all the weights once, so when the weights
// exceed what the last-level cache holds, fewer and larger chunks win.
constexpr size_t kPackedRowsBytes = 512 * 1024;
constexpr size_t kPackedRowsBytesLargeWeights = 2 * 1024 * 1024;
constexpr size_t kLargeWeightsBytes = 8 * 1024 * 1024;
// Below this many multiply-adds one thread is faster than waking another.
constexpr double kParallelMinMacs = 64.0 * 1024;
// Tasks per thread when splitting, to even out uneven tiles, but no task
// smaller than this many multiply-adds (a few microseconds: handing a task to
// another thread costs about as much).
constexpr int kTasksPerThread = 4;
constexpr double kMinMacsPerTask = 512.0 * 1024;

void check_input_zero_point(bool input_signed, int32_t z) {
  const int32_t lo = input_signed ? -128 : 0, hi = input_signed ? 127 : 255;
  if (z < lo || z > hi) {
    throw ArgumentError("input_zero_point: " + std::to_string(z) + " is outside the input dtype's range [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}

}  // namespace

std::unique_ptr<PackedGemmWeights> pack_gemm_weights(const int8_t* w, int K, int N,
                                                     ptrdiff_t w_row_stride,
                                                     const PackGemmOptions& o, Isa isa) {
  if (K < 1 || N < 1) {
    throw ArgumentError("weight: expected a K x N matrix with K, N >= 1, got " + std::to_string(K) + " x " +
                        std::to_string(N));
  }
  if (!isa_usable(isa)) throw ArgumentError(std::string("isa: ") + isa_name(isa) + " is not usable here");
  check_input_zero_point(o.input_signed, o.input_zero_point);
  if (o.multiplier != nullptr && o.multiplier_count != 1 && o.multiplier_count != N) {
    throw ArgumentError("multiplier: expected 1 or N=" + std::to_string(N) + " values, got " +
                        std::to_string(o.multiplier_count));
  }
  for (int i = 0; o.multiplier != nullptr && i < o.multiplier_count; ++i) {
    const float m = o.multiplier[i];
    if (!(std::isfinite(m) && m > 0.0f)) {
      throw ArgumentError("multiplier: every value must be finite and > 0, got " + std::to_string(m) +
                          " at index " + std::to_string(i));
    }
  }

  // Column sums (for the bias compensation) and the overflow bound.
  std::vector<int64_t> col_sum(N, 0), col_abs_sum(N, 0);
  for (int k = 0; k < K; ++k) {
    const int8_t* row = w + k * w_row_stride;
    for (int n = 0; n < N; ++n) {
      const int v = row[n];
      if (o.narrow_range && v == -128) {
        throw ArgumentError("weight: value -128 at (k=" + std::to_string(k) + ", n=" + std::to_string(n) +
                            ") but narrow_range=True expects weights in [-127, 127]");
      }
      col_sum[n] += v;
      col_abs_sum[n] += v < 0 ? -v : v;
    }
  }
  const int64_t a_lo = o.input_signed ? -128 : 0, a_hi = o.input_signed ? 127 : 255;
  const int64_t max_abs_a = std::max(std::llabs(a_lo - o.input_zero_point), std::llabs(a_hi - o.input_zero_point));
  const int64_t int32_max = std::numeric_limits<int32_t>::max();
  for (int n = 0; n < N; ++n) {
    const int64_t b = o.bias ? o.bias[n] : 0;
    const int64_t bound = max_abs_a * col_abs_sum[n] + std::llabs(b);
    if (bound > int32_max) {
      throw ArgumentError("weight: K=" + std::to_string(K) + " is too deep for these weights: output column " +
                          std::to_string(n) + " could reach " + std::to_string(bound) +
                          " and overflow the int32 accumulator (limit 2^31-1; any weights are safe for K <= " +
                          std::to_string(kMaxSafeK) + " with int8 inputs at zero point 0)");
    }
  }

  auto p = std::make_unique<PackedGemmWeights>();
  const GemmIsaEntry entry = gemm_entry(isa);
  const GemmLayout L = entry.layout();
  p->isa = isa;
  p->layout = L;
  p->K = K;
  p->N = N;
  p->Kp = ceil_div(K, L.kr) * L.kr;
  p->panels = ceil_div(N, L.nr);
  p->panel_bytes = static_cast<size_t>(p->Kp) * L.nr * L.b_elem_bytes;
  p->input_signed = o.input_signed;
  p->input_zero_point = o.input_zero_point;
  p->has_multiplier = o.multiplier != nullptr;
  p->per_channel = o.multiplier != nullptr && o.multiplier_count == N && N > 1;

  // Weights into panels (layout in kernels/gemm_kernels.h); padding stays 0.
  p->packed.resize(p->panels * p->panel_bytes);
  for (int k = 0; k < K; ++k) {
    const int8_t* row = w + k * w_row_stride;
    const size_t k_offset = static_cast<size_t>(k / L.kr) * L.nr * L.kr + k % L.kr;
    for (int n = 0; n < N; ++n) {
      const size_t index = (n / L.nr) * (p->panel_bytes / L.b_elem_bytes) + k_offset + (n % L.nr) * L.kr;
      if (L.b_elem_bytes == 1) {
        p->packed.as<int8_t>()[index] = row[n];
      } else {
        p->packed.as<int16_t>()[index] = row[n];
      }
    }
  }

  // Bias with the activation offset folded in (see AInput in gemm_kernels.h).
  int64_t delta = 0;
  if (L.a_input == AInput::kUnsigned && o.input_signed) delta = 128;
  if (L.a_input == AInput::kSigned && !o.input_signed) delta = -128;
  const int64_t offset = L.a_input == AInput::kSubtractZeroPoint ? 0 : o.input_zero_point + delta;
  const size_t padded = static_cast<size_t>(p->panels) * L.nr;
  p->bias.resize(padded * sizeof(int32_t));
  p->multiplier.resize(padded * sizeof(float));
  p->user_bias.resize(N * sizeof(int32_t));
  p->user_multiplier.resize(N * sizeof(float));
  for (int n = 0; n < N; ++n) {
    const int64_t b = o.bias ? o.bias[n] : 0;
    // Wraps modulo 2^32 on purpose: the kernel's sum carries the matching
    // offset, and the true result fits (checked above).
    p->bias.as<int32_t>()[n] = static_cast<int32_t>(static_cast<uint32_t>(b - offset * col_sum[n]));
    p->user_bias.as<int32_t>()[n] = static_cast<int32_t>(b);
    const float m = o.multiplier == nullptr ? 0.0f : o.multiplier[o.multiplier_count == 1 ? 0 : n];
    p->multiplier.as<float>()[n] = m;
    p->user_multiplier.as<float>()[n] = m;
  }

  // AVX2: a second, int8 copy for the exact 7-bit path (GemmArgs::packed_u7;
  // nr = 16, kr = 4). Its kernel computes sum a * w, so the whole input
  // offset z_a is folded into its bias (modulo 2^32, as above).
  if (isa == Isa::kAvx2) {
    constexpr int kNr = 16, kKr = 4;
    MEGQ_DCHECK(L.nr == kNr);
    p->Kp_u7 = ceil_div(K, kKr) * kKr;
    p->panel_bytes_u7 = static_cast<size_t>(p->Kp_u7) * kNr;
    p->packed_u7.resize(p->panels * p->panel_bytes_u7);
    p->bias_u7.resize(padded * sizeof(int32_t));
    for (int k = 0; k < K; ++k) {
      const int8_t* row = w + k * w_row_stride;
      const size_t k_offset = static_cast<size_t>(k / kKr) * kNr * kKr + k % kKr;
      for (int n = 0; n < N; ++n) {
        p->packed_u7.as<int8_t>()[(n / kNr) * p->panel_bytes_u7 + k_offset + (n % kNr) * kKr] = row[n];
      }
    }
    for (int n = 0; n < N; ++n) {
      const int64_t b = o.bias ? o.bias[n] : 0;
      p->bias_u7.as<int32_t>()[n] =
          static_cast<int32_t>(static_cast<uint32_t>(b - static_cast<int64_t>(o.input_zero_point) * col_sum[n]));
    }
  }
  return p;
}

namespace {

void check_output(const PackedGemmWeights& p, const GemmOutput& out) {
  if (out.type != OutputType::kInt32 && !p.has_multiplier) {
    throw ArgumentError("packed: these weights were packed without a multiplier; pass one to pack them for "
                        "int8/uint8 output, or ask for int32 output");
  }
}

GemmArgs make_args(const PackedGemmWeights& p, const uint8_t* a, ptrdiff_t a_row_stride, const GemmOutput& out,
                   uint8_t* c, ptrdiff_t c_row_stride) {
  GemmArgs g;
  g.a = a;
  g.a_stride = a_row_stride;
  g.a_signed = p.input_signed;
  g.a_zero_point = p.input_zero_point;
  g.K = p.K;
  g.Kp = p.Kp;
  g.packed = p.packed.as<uint8_t>();
  g.panel_bytes = p.panel_bytes;
  g.bias = p.bias.as<int32_t>();
  g.multiplier = p.multiplier.as<float>();
  g.out_type = out.type;
  g.c = c;
  g.c_stride = c_row_stride;
  g.N = p.N;
  g.out_zero_point = out.zero_point;
  g.out_min = out.min;
  g.out_max = out.max;
  if (p.Kp_u7 > 0) {
    g.packed_u7 = p.packed_u7.as<uint8_t>();
    g.panel_bytes_u7 = p.panel_bytes_u7;
    g.bias_u7 = p.bias_u7.as<int32_t>();
    g.Kp_u7 = p.Kp_u7;
  }
  return g;
}

}  // namespace

int wanted_tasks(double macs) {
  const int threads = get_num_threads();
  if (threads <= 1 || macs < kParallelMinMacs) return 1;
  return std::clamp(static_cast<int>(macs / kMinMacsPerTask), threads, kTasksPerThread * threads);
}

size_t gemm_scratch_bytes(const PackedGemmWeights& p) {
  return static_cast<size_t>(p.layout.mr) * p.Kp * p.layout.scratch_bytes_per_k_row;
}

void gemm_rows(const PackedGemmWeights& p, const uint8_t* a, int rows, ptrdiff_t a_row_stride,
               const GemmOutput& out, uint8_t* c, ptrdiff_t c_row_stride, int panel_begin, int panel_end,
               uint8_t* scratch) {
  check_output(p, out);
  const GemmArgs g = make_args(p, a, a_row_stride, out, c, c_row_stride);
  gemm_entry(p.isa).block(g, 0, rows, panel_begin, panel_end, scratch);
}

void gemm_rows_packed(const PackedGemmWeights& p, const uint8_t* a_packed, int rows, const GemmOutput& out,
                      uint8_t* c, ptrdiff_t c_row_stride, int panel_begin, int panel_end, bool u7) {
  check_output(p, out);
  MEGQ_DCHECK(p.layout.scratch_bytes_per_k_row > 0);
  MEGQ_DCHECK(!u7 || p.Kp_u7 > 0);
  GemmArgs g = make_args(p, a_packed, static_cast<ptrdiff_t>(p.Kp) * p.layout.scratch_bytes_per_k_row, out, c,
                         c_row_stride);
  g.a_packed = a_packed;
  g.a_packed_row0 = 0;
  g.a_packed_u7 = u7;
  gemm_entry(p.isa).block(g, 0, rows, panel_begin, panel_end, nullptr);
}

void gemm_rows_segmented(const PackedGemmWeights& p, const uint8_t* a, int rows, ptrdiff_t a_row_stride,
                         int segments, ptrdiff_t segment_stride, const GemmOutput& out, uint8_t* c,
                         ptrdiff_t c_row_stride, int panel_begin, int panel_end) {
  check_output(p, out);
  MEGQ_DCHECK(p.isa == Isa::kAvx512Vnni && segments > 0 && p.K == p.Kp && p.K % (4 * segments) == 0);
  GemmArgs g = make_args(p, a, a_row_stride, out, c, c_row_stride);
  g.a_segments = segments;
  g.a_segment_stride = segment_stride;
  gemm_entry(p.isa).block(g, 0, rows, panel_begin, panel_end, nullptr);
}

void gemm(const PackedGemmWeights& p, const uint8_t* a, int M, ptrdiff_t a_row_stride, const GemmOutput& out,
          uint8_t* c, ptrdiff_t c_row_stride) {
  if (M < 1) return;
  check_output(p, out);
  const GemmIsaEntry entry = gemm_entry(p.isa);
  const GemmLayout& L = p.layout;
  const GemmArgs g = make_args(p, a, a_row_stride, out, c, c_row_stride);

  // Tasks: chunks of rows x groups of panels. A task converts its rows of A
  // once (pack_a), then walks its panels in L2-sized blocks, running every
  // row tile against a block before moving on. Each task covers the full K,
  // so the requantizing epilogue stays in the kernel and the result does not
  // depend on how the work is split.
  const int m_tiles = ceil_div(M, L.mr);
  const double macs = static_cast<double>(M) * p.N * p.K;
  const int wanted = wanted_tasks(macs);
  const size_t a_row_bytes = static_cast<size_t>(p.Kp) * L.scratch_bytes_per_k_row;
  const bool prepack = L.scratch_bytes_per_k_row > 0;
  // Rows per chunk: converted rows stay within the budget. Every chunk streams
  // all the weights; when they exceed the last-level cache, threads split the
  // panels (each streams its share once) rather than the rows.
  const bool large_weights = static_cast<size_t>(p.panels) * p.panel_bytes > kLargeWeightsBytes;
  const size_t rows_budget = large_weights ? kPackedRowsBytesLargeWeights : kPackedRowsBytes;
  int tiles_per_chunk = prepack ? static_cast<int>(std::max<size_t>(1, rows_budget / (a_row_bytes * L.mr)))
                                : m_tiles;
  tiles_per_chunk = std::min(tiles_per_chunk, m_tiles);
  int m_chunks = ceil_div(m_tiles, tiles_per_chunk);
  if (m_chunks < wanted && !large_weights) {  // more, smaller chunks so that every thread has work
    m_chunks = std::min(m_tiles, wanted);
    tiles_per_chunk = ceil_div(m_tiles, m_chunks);
    m_chunks = ceil_div(m_tiles, tiles_per_chunk);
  }
  // Few rows (e.g. GEMV) or large weights: split the panels between tasks.
  const int n_groups = std::min(p.panels, std::max(1, ceil_div(wanted, m_chunks)));
  const int panels_per_group = ceil_div(p.panels, n_groups);
  const int panels_per_block =
      static_cast<int>(std::clamp<size_t>(kPanelBlockBytes / p.panel_bytes, 1, static_cast<size_t>(p.panels)));
  const size_t kernel_scratch = gemm_scratch_bytes(p);
  const size_t packed_rows_bytes = prepack ? static_cast<size_t>(tiles_per_chunk) * L.mr * a_row_bytes : 0;

  parallel_for(n_groups * m_chunks, [&](int task) {
    thread_local AlignedBuffer scratch, packed_rows;
    scratch.reserve(kernel_scratch);
    const int group = task / m_chunks, chunk = task % m_chunks;
    const int m0 = chunk * tiles_per_chunk * L.mr, m1 = std::min(M, m0 + tiles_per_chunk * L.mr);
    const int g0 = group * panels_per_group, g1 = std::min(p.panels, g0 + panels_per_group);
    GemmArgs args = g;
    if (prepack) {
      packed_rows.reserve(packed_rows_bytes);
      // AVX2: the exact 7-bit form when every byte of these rows is < 128
      // (Kp_u7 bytes per row fit in the Kp int16 elements reserved), else
      // the int16 form.
#ifdef MEGQ_BUILT_AVX2
      args.a_packed_u7 = g.packed_u7 != nullptr && avx2::pack_a_u7(g, m0, m1 - m0, packed_rows.as<uint8_t>());
#endif
      if (!args.a_packed_u7) entry.pack_a(g, m0, m1 - m0, packed_rows.as<uint8_t>());
      args.a_packed = packed_rows.as<uint8_t>();
      args.a_packed_row0 = m0;
    }
    for (int b0 = g0; b0 < g1; b0 += panels_per_block) {
      entry.block(args, m0, m1, b0, std::min(g1, b0 + panels_per_block), scratch.as<uint8_t>());
    }
  });
}

int64_t run_peak_loop(Isa isa, int64_t iterations) {
  if (!isa_usable(isa)) return 0;
  const GemmIsaEntry entry = gemm_entry(isa);
  int32_t sink = 0;
  entry.peak(iterations, &sink);
  volatile int32_t keep = sink;
  (void)keep;
  return *entry.peak_ops * iterations;
}

}  // namespace megq
