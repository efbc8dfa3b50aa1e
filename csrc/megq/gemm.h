// megq's int8 GEMM: C = requantize(A . B + bias).
//
//   A: M x K activations, int8 or uint8 with zero point z_a, rows at any stride;
//   B: K x N int8 weights, symmetric (no zero point), packed once;
//   C: int8/uint8 requantized (requantize.h) or the raw int32 accumulator.
//
// acc[m, n] = sum_k (A[m, k] - z_a) * B[k, n] + bias[n]   (exact, int32)
//
// Overflow: packing proves, per output column n, that
//   max|A - z_a| * sum_k |B[k, n]| + |bias[n]| <= 2^31 - 1,
// so every partial and final sum fits in int32 and all ISA paths are exact.
// Weights that could break this are refused with an error. For int8
// activations with z_a = 0 and narrow-range weights this always holds for
// K <= kMaxSafeK; larger K works when the actual weights allow it.
#ifndef MEGQ_GEMM_H_
#define MEGQ_GEMM_H_

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "megq/aligned_buffer.h"
#include "megq/isa.h"
#include "megq/kernels/gemm_kernels.h"

namespace megq {

// floor((2^31 - 1) / (128 * 127)): the K up to which any int8 A (z_a = 0) times
// any narrow-range weights cannot overflow int32, whatever the values.
constexpr int kMaxSafeK = 132104;

// Thrown for invalid arguments; the message starts with the argument's name.
class ArgumentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct PackedGemmWeights {
  Isa isa;
  GemmLayout layout;
  int K = 0, N = 0, Kp = 0, panels = 0;
  size_t panel_bytes = 0;
  bool input_signed = true;
  int32_t input_zero_point = 0;
  bool has_multiplier = false;
  bool per_channel = false;
  AlignedBuffer packed;      // panels * panel_bytes
  AlignedBuffer bias;        // int32[panels * nr], compensation folded in
  AlignedBuffer multiplier;  // float[panels * nr]
  // The caller's values, kept for inspection and serialisation.
  AlignedBuffer user_bias;        // int32[N]
  AlignedBuffer user_multiplier;  // float[N] (per-tensor: N copies)
  // AVX2 only: the weights again for the exact 7-bit path (GemmArgs::packed_u7).
  int Kp_u7 = 0;
  size_t panel_bytes_u7 = 0;
  AlignedBuffer packed_u7;  // panels * panel_bytes_u7, int8, nr 16, kr 4
  AlignedBuffer bias_u7;    // int32[panels * 16]: bias - z_a * sum_k w
};

struct PackGemmOptions {
  const int32_t* bias = nullptr;      // N values, or null for 0
  const float* multiplier = nullptr;  // 1 or N values, or null (int32 output only)
  int multiplier_count = 0;
  bool input_signed = true;
  int32_t input_zero_point = 0;
  bool narrow_range = true;           // weights must be in [-127, 127]
};

// Packs B (K x N, element (k, n) at w[k * w_row_stride + n]) for `isa`.
std::unique_ptr<PackedGemmWeights> pack_gemm_weights(const int8_t* w, int K, int N,
                                                     ptrdiff_t w_row_stride,
                                                     const PackGemmOptions& options, Isa isa);

struct GemmOutput {
  OutputType type = OutputType::kInt8;
  int32_t zero_point = 0;
  int32_t min = -128, max = 127;  // clamp bounds (fused ReLU / ReLU6)
};

// A: M rows of K bytes, row r at a + r * a_row_stride. C: M x N elements of
// the output type, row r at c + r * c_row_stride bytes. Threads: see
// thread_pool.h. Thread-safe; the packed weights are read-only.
void gemm(const PackedGemmWeights& packed, const uint8_t* a, int M, ptrdiff_t a_row_stride,
          const GemmOutput& output, uint8_t* c, ptrdiff_t c_row_stride);

// How many tasks to split `macs` multiply-adds into at the current thread
// count: 1 below a size where waking a thread does not pay, otherwise between
// one and four per thread, none much smaller than a few microseconds of work.
int wanted_tasks(double macs);

// Building blocks for operators built on the GEMM (conv2d): computes rows
// [0, rows) of A (row r at a + r * a_row_stride) times panels
// [panel_begin, panel_end) of the packed weights into C, on the calling thread.
// scratch must hold gemm_scratch_bytes(packed) bytes (plus the 64 bytes of
// slack an AlignedBuffer has).
size_t gemm_scratch_bytes(const PackedGemmWeights& packed);
void gemm_rows(const PackedGemmWeights& packed, const uint8_t* a, int rows, ptrdiff_t a_row_stride,
               const GemmOutput& output, uint8_t* c, ptrdiff_t c_row_stride, int panel_begin, int panel_end,
               uint8_t* scratch);

// Like gemm_rows, for rows already in the ISA kernel's packed A form
// (GemmArgs::a_packed: rows of Kp elements of layout.scratch_bytes_per_k_row
// bytes, converted as the kernel's AInput says and zero beyond K).
// Used by conv2d, whose patch gatherer writes that form directly.
// u7: the rows are in the AVX2 7-bit form instead (GemmArgs::a_packed_u7).
void gemm_rows_packed(const PackedGemmWeights& packed, const uint8_t* a_packed, int rows,
                      const GemmOutput& output, uint8_t* c, ptrdiff_t c_row_stride, int panel_begin,
                      int panel_end, bool u7 = false);

// Like gemm_rows, for A already in the kernel's form and read in place as
// `segments` pieces per row (GemmArgs::a_segments: piece s of row r at
// a + s * segment_stride + r * a_row_stride). avx512vnni weights only, with
// K a multiple of 4 * segments. Used by conv2d's row bands.
void gemm_rows_segmented(const PackedGemmWeights& packed, const uint8_t* a, int rows, ptrdiff_t a_row_stride,
                         int segments, ptrdiff_t segment_stride, const GemmOutput& output, uint8_t* c,
                         ptrdiff_t c_row_stride, int panel_begin, int panel_end);

// Runs the ISA's peak instruction loop `iterations` times; returns the ops
// (2 per multiply-add) it executed, or 0 if the ISA has no such loop.
int64_t run_peak_loop(Isa isa, int64_t iterations);

}  // namespace megq

#endif  // MEGQ_GEMM_H_
