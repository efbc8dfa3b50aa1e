#include "megq/dcheck.h"

#include <cstdio>
#include <cstdlib>

namespace megq {

void dcheck_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "megq: MEGQ_DCHECK(%s) failed at %s:%d\n", condition, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace megq
