// Portable quantized add / mul kernel (contract: elementwise.h).
#include <cmath>

#include "megq/kernels/elementwise_kernels.h"

namespace megq {
namespace scalar {

void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  const float lo = static_cast<float>(p.lo - p.zo), hi = static_cast<float>(p.hi - p.zo);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t x = (p.a_signed ? static_cast<int8_t>(a[i]) : a[i]) - p.za;
    const int32_t z = (p.b_signed ? static_cast<int8_t>(b[i]) : b[i]) - p.zb;
    float v;
    if (p.op == EltOp::kAdd) {
      const float va = static_cast<float>(x) * p.ma;
      const float vb = static_cast<float>(z) * p.mb;
      v = va + vb;
    } else {
      const float prod = static_cast<float>(x) * static_cast<float>(z);
      v = prod * p.ma;
    }
    v = v < lo ? lo : (v > hi ? hi : v);
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::round(v)) + p.zo);
  }
}

}  // namespace scalar
}  // namespace megq
