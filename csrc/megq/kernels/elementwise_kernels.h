// Interface between the quantized elementwise driver (csrc/megq/elementwise.cc)
// and its per-ISA kernels (kernels/<isa>/elementwise_*.cc). Contract:
// elementwise.h. Kernels touch exactly n bytes of each array.
#ifndef MEGQ_KERNELS_ELEMENTWISE_KERNELS_H_
#define MEGQ_KERNELS_ELEMENTWISE_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace megq {

enum class EltOp { kAdd = 0, kMul = 1 };

struct EltParams {
  EltOp op;
  bool a_signed, b_signed, out_signed;
  int32_t za, zb, zo;
  int32_t lo, hi;  // output clamp (fused ReLU raises lo to zo)
  float ma, mb;    // add: M_a, M_b; mul: ma = M (mb unused)
};

#define MEGQ_DECLARE_ELEMENTWISE_ISA(ns)                                                           \
  namespace ns {                                                                                   \
  void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p); \
  }

MEGQ_DECLARE_ELEMENTWISE_ISA(scalar)
MEGQ_DECLARE_ELEMENTWISE_ISA(avx2)
MEGQ_DECLARE_ELEMENTWISE_ISA(avx512vnni)
MEGQ_DECLARE_ELEMENTWISE_ISA(neon)

#undef MEGQ_DECLARE_ELEMENTWISE_ISA

}  // namespace megq

#endif  // MEGQ_KERNELS_ELEMENTWISE_KERNELS_H_
