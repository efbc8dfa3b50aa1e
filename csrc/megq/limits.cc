#include "megq/limits.h"

#include <cstdio>
#include <string>

#include "megq/gemm.h"  // ArgumentError

namespace megq {

void check_output_size(const char* argument, const char* op, const std::vector<int64_t>& shape,
                       int elem_bytes) {
  // The product in double: the exact int64 product of several large
  // dimensions could itself overflow. Products below 2^53 are exact, so the
  // comparison with 2^30 is exact too.
  double bytes = elem_bytes;
  for (int64_t d : shape) {
    if (d < 0) {
      throw ArgumentError(std::string(argument) + ": " + op + " output dimension " + std::to_string(d) + " < 0");
    }
    bytes *= static_cast<double>(d);
  }
  if (bytes <= static_cast<double>(kMaxOutputBytes)) return;
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  text += shape.size() == 1 ? ",)" : ")";
  char size[64];
  std::snprintf(size, sizeof size, "%.0f", bytes);
  throw ArgumentError(std::string(argument) + ": the " + op + " output of shape " + text + " would take " + size +
                      " bytes, more than megq's limit of " + std::to_string(kMaxOutputBytes) +
                      " bytes (MAX_OUTPUT_BYTES)");
}

}  // namespace megq
