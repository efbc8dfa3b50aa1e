#include "megq/qparams.h"

#include <algorithm>
#include <cmath>

#include "megq/thread_pool.h"

namespace megq {

void check_zero_point(const std::string& name, bool is_signed, int32_t z) {
  const int32_t lo = qmin_of(is_signed), hi = qmax_of(is_signed);
  if (z < lo || z > hi) {
    throw ArgumentError(name + ": " + std::to_string(z) + " is outside the dtype's range [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  }
}

void check_scale(const std::string& name, float s) {
  if (!(std::isfinite(s) && s > 0.0f)) {
    throw ArgumentError(name + ": expected a finite scale > 0, got " + std::to_string(s));
  }
}

void check_clamp(const std::string& name, bool is_signed, int32_t lo, int32_t hi) {
  const int32_t dlo = qmin_of(is_signed), dhi = qmax_of(is_signed);
  if (lo < dlo || hi > dhi || lo > hi) {
    throw ArgumentError(name + ": expected " + std::to_string(dlo) + " <= out_min <= out_max <= " +
                        std::to_string(dhi) + ", got [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}

float ratio_multiplier(float s_in, float s_out) {
  return s_in / s_out;  // one float32 division (x86-64/AArch64 float is IEEE binary32)
}

void parallel_units(int64_t units, double bytes_per_unit, const std::function<void(int64_t, int64_t)>& fn) {
  if (units <= 0) return;
  const int threads = get_num_threads();
  const double total = bytes_per_unit * static_cast<double>(units);
  if (threads <= 1 || units == 1 || total < 64.0 * 1024) {
    fn(0, units);
    return;
  }
  const int64_t chunks = std::min<int64_t>(units, 4 * static_cast<int64_t>(threads));
  const int64_t per = (units + chunks - 1) / chunks;
  const int64_t n = (units + per - 1) / per;
  parallel_for(static_cast<int>(n), [&](int i) {
    const int64_t b = i * per, e = std::min(units, b + per);
    fn(b, e);
  });
}

}  // namespace megq
