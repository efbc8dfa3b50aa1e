// Interface between the quantized elementwise driver (csrc/megq/elementwise.cc)
// and its per-ISA kernels (kernels/<isa>/elementwise_*.cc). Contract:
// elementwise.h. Kernels touch exactly n bytes of each array.
#ifndef MEGQ_KERNELS_ELEMENTWISE_KERNELS_H_
#define MEGQ_KERNELS_ELEMENTWISE_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace megq {

enum class EltOp { kAdd = 0, kMul = 1 };

struct EltParams {
  EltOp op;
  bool a_signed, b_signed, out_signed;
  int32_t za, zb, zo;
  int32_t lo, hi;  // output clamp (fused ReLU raises lo to zo)
  float ma, mb;    // add: M_a, M_b; mul: ma = M (mb unused)
};

// Calls fn(is_add, a_signed, b_signed, out_signed), each a std::integral_constant<bool>, for p's op and
// signedness: a kernel instantiates one loop per combination (no per-vector branches on them), e.g.
//   with_elementwise_variant(p, [&](auto add, auto sa, auto sb, auto so) {
//     run<decltype(add)::value, decltype(sa)::value, decltype(sb)::value, decltype(so)::value>(...);
//   });
template <typename Fn>
inline void with_elementwise_variant(const EltParams& p, Fn&& fn) {
  using T = std::true_type;
  using F = std::false_type;
  auto by_signedness = [&](auto add) {
    const int key = (p.a_signed ? 4 : 0) | (p.b_signed ? 2 : 0) | (p.out_signed ? 1 : 0);
    switch (key) {
      case 0: fn(add, F{}, F{}, F{}); break;
      case 1: fn(add, F{}, F{}, T{}); break;
      case 2: fn(add, F{}, T{}, F{}); break;
      case 3: fn(add, F{}, T{}, T{}); break;
      case 4: fn(add, T{}, F{}, F{}); break;
      case 5: fn(add, T{}, F{}, T{}); break;
      case 6: fn(add, T{}, T{}, F{}); break;
      default: fn(add, T{}, T{}, T{}); break;
    }
  };
  if (p.op == EltOp::kAdd) {
    by_signedness(T{});
  } else {
    by_signedness(F{});
  }
}

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
