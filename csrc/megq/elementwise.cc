// Driver for quantized add / fuse_add_relu / mul: checks, multipliers, threads.
#include "megq/elementwise.h"

#include <algorithm>
#include <string>
#include <vector>

#include "megq/isa.h"
#include "megq/qparams.h"

namespace megq {
namespace {

using RowFn = void (*)(const uint8_t*, const uint8_t*, uint8_t*, int64_t, const EltParams&);

RowFn elementwise_entry(Isa isa) {
  switch (isa) {
#ifdef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
      return avx512vnni::elementwise_row;
#endif
#ifdef MEGQ_BUILT_AVX2
    case Isa::kAvx2:
#ifndef MEGQ_BUILT_AVX512VNNI
    case Isa::kAvx512Vnni:
#endif
      return avx2::elementwise_row;
#endif
#ifdef MEGQ_BUILT_NEON
    case Isa::kNeon:
    case Isa::kNeonDot:
      return neon::elementwise_row;
#endif
    default:
      return scalar::elementwise_row;
  }
}

void check_q(const char* name, const TensorQParams& q) {
  check_scale(std::string(name) + "_scale", q.scale);
  check_zero_point(std::string(name) + "_zero_point", q.is_signed, q.zero_point);
}

void run(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const EltParams& p, int64_t b_period) {
  if (n <= 0) return;
  if (b_period < 1 || n % b_period != 0) {
    throw ArgumentError("b: " + std::to_string(b_period) + " values cannot be broadcast over " + std::to_string(n));
  }
  const RowFn fn = elementwise_entry(active_isa());
  constexpr int64_t kChunk = 32 * 1024;
  std::vector<uint8_t> tiled;
  int64_t chunk = kChunk;
  if (b_period != n) {
    // b repeated to a whole number of periods of about kChunk values; every
    // chunk of a starts at a multiple of the period, so it pairs with `tiled`.
    chunk = std::max<int64_t>(1, kChunk / b_period) * b_period;
    tiled.resize(static_cast<size_t>(std::min(chunk, n)));
    for (size_t i = 0; i < tiled.size(); ++i) tiled[i] = b[i % b_period];
  }
  const int64_t chunks = (n + chunk - 1) / chunk;
  parallel_units(chunks, 3.0 * chunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t s = c * chunk, e = std::min(n, s + chunk);
      fn(a + s, tiled.empty() ? b + s : tiled.data(), y + s, e - s, p);
    }
  });
}

}  // namespace

void quantized_add(const uint8_t* a, const TensorQParams& qa, const uint8_t* b, const TensorQParams& qb,
                   uint8_t* y, const TensorQParams& qy, int64_t n, bool relu, int64_t b_period) {
  check_q("a", qa);
  check_q("b", qb);
  check_q("out", qy);
  EltParams p;
  p.op = EltOp::kAdd;
  p.a_signed = qa.is_signed;
  p.b_signed = qb.is_signed;
  p.out_signed = qy.is_signed;
  p.za = qa.zero_point;
  p.zb = qb.zero_point;
  p.zo = qy.zero_point;
  p.lo = relu ? std::max(qmin_of(qy.is_signed), qy.zero_point) : qmin_of(qy.is_signed);
  p.hi = qmax_of(qy.is_signed);
  p.ma = qa.scale / qy.scale;
  p.mb = qb.scale / qy.scale;
  run(a, b, y, n, p, b_period);
}

void quantized_mul(const uint8_t* a, const TensorQParams& qa, const uint8_t* b, const TensorQParams& qb,
                   uint8_t* y, const TensorQParams& qy, int64_t n, int64_t b_period) {
  check_q("a", qa);
  check_q("b", qb);
  check_q("out", qy);
  EltParams p;
  p.op = EltOp::kMul;
  p.a_signed = qa.is_signed;
  p.b_signed = qb.is_signed;
  p.out_signed = qy.is_signed;
  p.za = qa.zero_point;
  p.zb = qb.zero_point;
  p.zo = qy.zero_point;
  p.lo = qmin_of(qy.is_signed);
  p.hi = qmax_of(qy.is_signed);
  const float sab = qa.scale * qb.scale;
  p.ma = sab / qy.scale;
  p.mb = 0.0f;
  run(a, b, y, n, p, b_period);
}

}  // namespace megq
