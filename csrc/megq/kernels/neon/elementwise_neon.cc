// AArch64 NEON quantized add / mul kernel (contract: elementwise.h): 16 values
// per iteration, the same float32 operations as the scalar path (fmul, fadd;
// no fused multiply-add), clamp in float, fcvtas (round half away from zero,
// the contract's rounding), + z, saturating narrows of in-range values. The
// last n % 16 values go through a stack buffer, so exactly n bytes of each
// array are touched.
#include <arm_neon.h>

#include <cstring>

#include "megq/kernels/elementwise_kernels.h"
#include "megq/kernels/neon/ops_neon_util.h"

namespace megq {
namespace neon {
namespace {

using neon_util::narrow16;
using neon_util::widen16;

template <bool kAdd, bool kSa, bool kSb, bool kSo>
void run(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  const int32x4_t za = vdupq_n_s32(p.za), zb = vdupq_n_s32(p.zb), zo = vdupq_n_s32(p.zo);
  const float32x4_t ma = vdupq_n_f32(p.ma), mb = vdupq_n_f32(p.mb);
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(p.lo - p.zo));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(p.hi - p.zo));
  auto sixteen = [&](const uint8_t* pa, const uint8_t* pb, uint8_t* py) {
    int32x4_t xa[4], xb[4], q[4];
    widen16<kSa>(vld1q_u8(pa), za, xa);
    widen16<kSb>(vld1q_u8(pb), zb, xb);
    for (int k = 0; k < 4; ++k) {
      const float32x4_t fa = vcvtq_f32_s32(xa[k]), fb = vcvtq_f32_s32(xb[k]);
      float32x4_t v = kAdd ? vaddq_f32(vmulq_f32(fa, ma), vmulq_f32(fb, mb)) : vmulq_f32(vmulq_f32(fa, fb), ma);
      q[k] = neon_util::clamp_round_add(v, lo, hi, zo);
    }
    vst1q_u8(py, narrow16<kSo>(q));
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) sixteen(a + i, b + i, y + i);
  if (i < n) {
    const size_t rest = static_cast<size_t>(n - i);
    uint8_t ta[16] = {}, tb[16] = {}, ty[16];
    std::memcpy(ta, a + i, rest);
    std::memcpy(tb, b + i, rest);
    sixteen(ta, tb, ty);
    std::memcpy(y + i, ty, rest);
  }
}

}  // namespace

void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  with_elementwise_variant(p, [&](auto add, auto sa, auto sb, auto so) {
    run<decltype(add)::value, decltype(sa)::value, decltype(sb)::value, decltype(so)::value>(a, b, y, n, p);
  });
}

}  // namespace neon
}  // namespace megq
