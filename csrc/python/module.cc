// megq._C: the compiled kernels. The public, documented API is the Python
// package megq.kernels, which wraps these functions.
#include "bindings.h"
#include "megq/gemm.h"
#include "megq/isa.h"
#include "megq/thread_pool.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "megq's int8 CPU kernels (use megq.kernels, the documented wrapper)";
  // Argument errors from the C++ core become ValueError.
  py::register_exception<megq::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  megq_python::register_runtime(m);
  megq_python::register_gemm(m);
  megq_python::register_quantize(m);
  megq_python::register_elementwise(m);
  megq_python::register_pooling(m);
  megq_python::register_concat(m);
  megq_python::register_depthwise(m);
  megq_python::register_conv(m);
  megq_python::register_plan(m);
  // Read MEGQ_ISA and MEGQ_NUM_THREADS now, so that a bad value fails the
  // import (ImportError with the variable's name and what it accepts)
  // instead of the first kernel call.
  megq::active_isa();
  megq::get_num_threads();
}
