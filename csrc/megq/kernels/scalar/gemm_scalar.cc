// Portable GEMM kernel: the path every build has and the fallback on CPUs
// without a SIMD path. Layout: nr = 8, kr = 1, int8 weights; it subtracts the
// activation zero point itself and reads A in place (no over-read: it touches
// exactly K bytes of each row).
#include <algorithm>
#include <cstring>

#include "megq/kernels/gemm_kernels.h"
#include "megq/requantize.h"

namespace megq {
namespace scalar {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

inline int32_t load_a(const uint8_t* p, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(*p)) : static_cast<int32_t>(*p);
}

// Writes one accumulator row segment [col0, col0 + count) of C.
void store_row(const GemmArgs& g, int row, int col0, int count, const int32_t* acc) {
  uint8_t* c = g.c + row * g.c_stride;
  for (int j = 0; j < count; ++j) {
    const int n = col0 + j;
    const int32_t v = acc[j] + g.bias[n];
    switch (g.out_type) {
      case OutputType::kInt32:
        std::memcpy(c + 4 * static_cast<ptrdiff_t>(n), &v, 4);
        break;
      case OutputType::kInt8:
        c[n] = static_cast<uint8_t>(static_cast<int8_t>(
            requantize_rha(v, g.multiplier[n], g.out_zero_point, g.out_min, g.out_max)));
        break;
      case OutputType::kUint8:
        c[n] = static_cast<uint8_t>(
            requantize_rha(v, g.multiplier[n], g.out_zero_point, g.out_min, g.out_max));
        break;
    }
  }
}

}  // namespace

GemmLayout gemm_layout() { return GemmLayout{kMR, kNR, 1, 1, AInput::kSubtractZeroPoint, 0}; }

void gemm_block(const GemmArgs& g, int m_begin, int m_end, int panel_begin, int panel_end,
                uint8_t* /*scratch*/) {
  MEGQ_DCHECK_GEMM_BLOCK(g, m_begin, m_end, panel_begin, panel_end, kNR);
  for (int m = m_begin; m < m_end; m += kMR) {
    const int rows = std::min(kMR, m_end - m);
    for (int p = panel_begin; p < panel_end; ++p) {
      const int8_t* b = reinterpret_cast<const int8_t*>(g.packed + p * g.panel_bytes);
      int32_t acc[kMR][kNR] = {};
      for (int r = 0; r < rows; ++r) {
        const uint8_t* a = g.a + (m + r) * g.a_stride;
        for (int k = 0; k < g.K; ++k) {
          const int32_t x = load_a(a + k, g.a_signed) - g.a_zero_point;
          for (int j = 0; j < kNR; ++j) acc[r][j] += x * b[k * kNR + j];
        }
      }
      const int col0 = p * kNR;
      const int count = std::min(kNR, g.N - col0);
      for (int r = 0; r < rows; ++r) store_row(g, m + r, col0, count, acc[r]);
    }
  }
}

// Reads A in place: nothing to convert.
void pack_a(const GemmArgs&, int, int, uint8_t*) {}

// The scalar path has no peak of interest; it exists for completeness.
const int64_t kPeakOpsPerIteration = 0;
void dot_peak_loop(int64_t, int32_t* sink) { *sink = 0; }

}  // namespace scalar
}  // namespace megq
