// The row loop every SIMD GEMM kernel shares: rows [m_begin, m_end) in tiles of
// MR; each tile's converted rows come from GemmArgs::a_packed (the driver
// converted a task's rows once) or are converted into scratch here; then the
// ISA's row_tile runs the tile against its panels with the row count as a
// compile-time constant.
//
// Included by the per-ISA translation units. Everything here is in an
// anonymous namespace (internal linkage): each ISA's copy is compiled with that
// ISA's flags and the linker can never pick one for another (the ODR hazard of
// per-ISA flags). No std templates are instantiated, for the same reason.
#ifndef MEGQ_KERNELS_GEMM_BLOCK_LOOP_H_
#define MEGQ_KERNELS_GEMM_BLOCK_LOOP_H_

#include <cstddef>
#include <cstdint>

#include "megq/kernels/gemm_kernels.h"

namespace megq {
namespace {

template <int R>
struct RowCount {
  static constexpr int value = R;
};

// Calls f(RowCount<rows>{}) for 1 <= rows <= MR.
template <int MR, typename F>
inline void with_row_count(int rows, F&& f) {
  if constexpr (MR == 1) {
    f(RowCount<1>{});
  } else if (rows >= MR) {
    f(RowCount<MR>{});
  } else {
    with_row_count<MR - 1>(rows, f);
  }
}

// pack_rows(g, m, rows, T* dst) converts rows of A; row_tile(RowCount<R>, const
// T* rows, int row0) computes R rows against the caller's panels.
template <int MR, typename T, typename PackRows, typename RowTile>
inline void for_each_row_tile(const GemmArgs& g, int m_begin, int m_end, uint8_t* scratch, PackRows pack_rows,
                              RowTile row_tile) {
  T* buffer = reinterpret_cast<T*>(scratch);
  for (int m = m_begin; m < m_end; m += MR) {
    const int rows = m_end - m < MR ? m_end - m : MR;
    const T* a = buffer;
    if (g.a_packed != nullptr) {
      a = reinterpret_cast<const T*>(g.a_packed) + static_cast<ptrdiff_t>(m - g.a_packed_row0) * g.Kp;
    } else {
      pack_rows(g, m, rows, buffer);
    }
    with_row_count<MR>(rows, [&](auto count) { row_tile(count, a, m); });
  }
}

}  // namespace
}  // namespace megq

#endif  // MEGQ_KERNELS_GEMM_BLOCK_LOOP_H_
