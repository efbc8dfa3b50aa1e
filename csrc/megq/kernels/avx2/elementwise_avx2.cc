// AVX2 quantized add / mul kernel (contract: elementwise.h): 32 values per
// iteration, the same float32 operations as the scalar path (vmulps, vaddps;
// no FMA), scalar tail.
#include <cmath>

#include "megq/kernels/avx2/ops_avx2_util.h"
#include "megq/kernels/elementwise_kernels.h"

namespace megq {
namespace avx2 {
namespace {

using namespace util;

template <bool kAdd, bool kSa, bool kSb, bool kSo>
void run(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  const __m256i za = _mm256_set1_epi32(p.za), zb = _mm256_set1_epi32(p.zb), zo = _mm256_set1_epi32(p.zo);
  const __m256 ma = _mm256_set1_ps(p.ma), mb = _mm256_set1_ps(p.mb);
  const float flo = static_cast<float>(p.lo - p.zo), fhi = static_cast<float>(p.hi - p.zo);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  auto eight = [&](int64_t i) {
    const __m256 fa = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen8(load8(a + i), kSa), za));
    const __m256 fb = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen8(load8(b + i), kSb), zb));
    const __m256 v = kAdd ? _mm256_add_ps(_mm256_mul_ps(fa, ma), _mm256_mul_ps(fb, mb))
                          : _mm256_mul_ps(_mm256_mul_ps(fa, fb), ma);
    return clamp_round_add(v, lo, hi, zo);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i r0 = eight(i), r1 = eight(i + 8), r2 = eight(i + 16), r3 = eight(i + 24);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), pack32(r0, r1, r2, r3, kSo));
  }
  for (; i + 8 <= n; i += 8) store8(y + i, pack8(eight(i), kSo));
  for (; i < n; ++i) {
    const int32_t x = (kSa ? static_cast<int8_t>(a[i]) : a[i]) - p.za;
    const int32_t z = (kSb ? static_cast<int8_t>(b[i]) : b[i]) - p.zb;
    float v;
    if (kAdd) {
      const float va = static_cast<float>(x) * p.ma;
      const float vb = static_cast<float>(z) * p.mb;
      v = va + vb;
    } else {
      const float prod = static_cast<float>(x) * static_cast<float>(z);
      v = prod * p.ma;
    }
    y[i] = static_cast<uint8_t>(clamp_round_add_1(v, flo, fhi, p.zo));
  }
}

}  // namespace

void elementwise_row(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p) {
  with_elementwise_variant(p, [&](auto add, auto sa, auto sb, auto so) {
    run<decltype(add)::value, decltype(sa)::value, decltype(sb)::value, decltype(so)::value>(a, b, y, n, p);
  });
}

}  // namespace avx2
}  // namespace megq
