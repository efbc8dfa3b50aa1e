// The interface between megq's GEMM driver (csrc/megq/gemm.cc) and the
// per-ISA GEMM kernels (csrc/megq/kernels/<isa>/gemm_*.cc).
//
// Packed weight layout (built by the driver from an ISA's GemmLayout):
//   N is split into panels of `nr` columns; panel p is one contiguous record of
//   panel_bytes bytes. K is padded with zero weights to Kp (a multiple of kr)
//   and split into groups of kr consecutive k. For each group, the record holds
//   nr columns of kr weights each, column-major within the group ("c<kr>"
//   interleave): element (k, n) of panel p sits at
//     ((k / kr) * nr + (n % nr)) * kr + (k % kr)     [in elements]
//   Columns beyond N and k beyond K hold 0, so kernels run whole groups and
//   whole panels and the tails contribute nothing.
//   Elements are int8, or int16 where the layout says so (AVX2 pre-widens the
//   weights once at pack time for vpmaddwd).
// bias and multiplier arrays are padded to panels * nr entries (+ slack), so
// kernels load whole vectors from them.
//
// How a kernel sees the activations (AInput):
//   kSubtractZeroPoint: it computes sum (a - z_a) * w itself, exactly;
//   kUnsigned / kSigned: it computes sum a' * w with a' = a reinterpreted as
//     u8 / s8 after flipping the sign bit when A's signedness differs
//     (a' = a + delta, delta = +-128 or 0); the driver folds
//     -(z_a + delta) * sum_k w into the packed bias (modulo 2^32: exact
//     whenever the true result fits in int32, which packing checks).
//
// Kernels never read past the caller's rows: they copy each row tile into
// megq-owned scratch (which may be over-read) or handle tails with masks.
#ifndef MEGQ_KERNELS_GEMM_KERNELS_H_
#define MEGQ_KERNELS_GEMM_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "megq/dcheck.h"

namespace megq {

enum class OutputType { kInt32 = 0, kInt8 = 1, kUint8 = 2 };
enum class AInput { kSubtractZeroPoint, kUnsigned, kSigned };

struct GemmLayout {
  int mr;             // rows per register tile
  int nr;             // columns per panel
  int kr;             // k interleave
  int b_elem_bytes;   // 1 (int8 weights) or 2 (pre-widened int16)
  AInput a_input;
  int scratch_bytes_per_k_row;  // scratch a kernel needs: mr * Kp * this
};

struct GemmArgs {
  const uint8_t* a;        // row 0 of A (int8 or uint8 bytes)
  ptrdiff_t a_stride;      // bytes between rows
  bool a_signed;
  int32_t a_zero_point;
  int K;
  int Kp;                  // K padded to kr
  const uint8_t* packed;   // panel 0
  size_t panel_bytes;
  const int32_t* bias;     // folded bias, padded
  const float* multiplier; // padded; unused for kInt32 output
  OutputType out_type;
  uint8_t* c;              // row 0 of C
  ptrdiff_t c_stride;      // bytes between rows
  int N;
  int32_t out_zero_point, out_min, out_max;
  // Optional: rows already converted by the ISA's pack_a (row r of the block
  // at a_packed + (r - a_packed_row0) * Kp * scratch_bytes_per_k_row). The
  // driver packs a task's rows once and reuses them for every panel block.
  const uint8_t* a_packed = nullptr;
  int a_packed_row0 = 0;
  // Optional, honoured by the avx512vnni kernel only (conv2d's row bands):
  // when a_segments > 0, A is already in the kernel's form (unsigned bytes,
  // K == Kp) and is read in place as a_segments segments of K / a_segments
  // bytes (a multiple of kr): segment s of row r starts at
  // a + s * a_segment_stride + r * a_stride.
  int a_segments = 0;
  ptrdiff_t a_segment_stride = 0;
  // Optional, AVX2 only: the exact 7-bit path (gemm_avx2.cc states the bound).
  // When packed_u7 is set, the same weights are also packed as int8 with
  // nr = 16, kr = 4 (layout above; Kp_u7 = K padded to 4, panel_bytes_u7 =
  // Kp_u7 * 16), and bias_u7 = bias - z_a * sum_k w (modulo 2^32), so that
  // sum_k a * w + bias_u7 == sum_k (a - z_a) * w + bias for rows whose bytes
  // are all < 128 (a read as u8: an int8 a in [0, 127] is the same byte).
  // a_packed_u7: the rows at a_packed are in the 7-bit form (bytes, Kp_u7 per
  // row, zero beyond K, every byte < 128) instead of the int16 form.
  const uint8_t* packed_u7 = nullptr;
  size_t panel_bytes_u7 = 0;
  const int32_t* bias_u7 = nullptr;
  int Kp_u7 = 0;
  bool a_packed_u7 = false;
};

// Each ISA namespace provides:
//   GemmLayout gemm_layout();
//   void gemm_block(const GemmArgs&, int m_begin, int m_end, int panel_begin,
//                   int panel_end, uint8_t* scratch);
//     computes C rows [m_begin, m_end) x panels [panel_begin, panel_end);
//     scratch holds at least layout.mr * Kp * scratch_bytes_per_k_row bytes
//     plus 64 bytes of slack.
//   void pack_a(const GemmArgs&, int m, int rows, uint8_t* dst);
//     converts rows [m, m + rows) of A to the layout the kernel reads (rows of
//     Kp elements of scratch_bytes_per_k_row bytes); a no-op for layouts that
//     read A in place (scratch_bytes_per_k_row == 0);
//   void dot_peak_loop(int64_t iterations, int32_t* sink);  (x86 ISAs)
//     the ISA's best multiply-accumulate instruction mix on independent
//     registers, for measuring the machine's peak; ops per iteration in
//     kPeakOpsPerIteration.
#define MEGQ_DECLARE_GEMM_ISA(ns)                                                    \
  namespace ns {                                                                     \
  GemmLayout gemm_layout();                                                          \
  void gemm_block(const GemmArgs& args, int m_begin, int m_end, int panel_begin,     \
                  int panel_end, uint8_t* scratch);                                  \
  void pack_a(const GemmArgs& args, int m, int rows, uint8_t* dst);                  \
  void dot_peak_loop(int64_t iterations, int32_t* sink);                             \
  extern const int64_t kPeakOpsPerIteration;                                         \
  }

MEGQ_DECLARE_GEMM_ISA(scalar)
MEGQ_DECLARE_GEMM_ISA(avx2)
MEGQ_DECLARE_GEMM_ISA(avx512vnni)
MEGQ_DECLARE_GEMM_ISA(neon)
MEGQ_DECLARE_GEMM_ISA(neondot)

#undef MEGQ_DECLARE_GEMM_ISA

namespace avx2 {
// The 7-bit form of rows [m, m + rows) of A (GemmArgs::a_packed_u7): copies
// them to dst (Kp_u7 bytes per row, zero beyond K) and returns true iff every
// byte is < 128; on false, dst holds no usable rows (the copy may stop early).
bool pack_a_u7(const GemmArgs& args, int m, int rows, uint8_t* dst);
}  // namespace avx2

// Preconditions of gemm_block for a kernel whose panels hold `nr` columns
// (debug builds only, dcheck.h). A macro, not an inline function: each ISA's
// translation unit is compiled with its own flags, and one inline function
// shared between them would be an ODR hazard.
#define MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, nr)                     \
  do {                                                                                           \
    MEGQ_DCHECK((g).a != nullptr && (g).c != nullptr && (g).packed != nullptr);                  \
    MEGQ_DCHECK((g).bias != nullptr);                                                            \
    MEGQ_DCHECK((g).out_type == OutputType::kInt32 || (g).multiplier != nullptr);                \
    MEGQ_DCHECK(MEGQ_ALIGNED((g).packed, 64) && MEGQ_ALIGNED((g).bias, 64));                     \
    MEGQ_DCHECK((g).K >= 1 && (g).Kp >= (g).K && (g).N >= 1);                                    \
    MEGQ_DCHECK(0 <= (m_begin) && (m_begin) <= (m_end));                                         \
    MEGQ_DCHECK(0 <= (panel_begin) && (panel_begin) <= (panel_end));                             \
    MEGQ_DCHECK(static_cast<int64_t>((panel_end) - 1) * (nr) < (g).N || (panel_begin) == (panel_end)); \
    MEGQ_DCHECK((g).a_packed == nullptr || (g).a_packed_row0 <= (m_begin));                      \
  } while (0)

}  // namespace megq

#endif  // MEGQ_KERNELS_GEMM_KERNELS_H_
