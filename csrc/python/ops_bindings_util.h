// Helpers shared by the binding files of megq's non-GEMM operators
// (bind_quantize.cc, bind_elementwise.cc, bind_pooling.cc, bind_concat.cc,
// bind_depthwise.cc).
#ifndef MEGQ_PYTHON_OPS_BINDINGS_UTIL_H_
#define MEGQ_PYTHON_OPS_BINDINGS_UTIL_H_

#include <string>

#include "bindings.h"

namespace megq_python {
namespace ops {

// True for int8, false for uint8; TypeError naming `name` otherwise.
inline bool quantized_dtype(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<int8_t>())) return true;
  if (a.dtype().is(py::dtype::of<uint8_t>())) return false;
  throw py::type_error(std::string(name) + ": expected dtype int8 or uint8, got " + std::string(py::str(a.dtype())));
}

// "int8" -> true, "uint8" -> false; ValueError naming `name` otherwise.
inline bool parse_quantized_dtype(const std::string& s, const char* name) {
  if (s == "int8") return true;
  if (s == "uint8") return false;
  throw py::value_error(std::string(name) + ": expected 'int8' or 'uint8', got '" + s + "'");
}

inline py::array new_quantized(bool is_signed, const std::vector<py::ssize_t>& shape) {
  if (is_signed) return py::array_t<int8_t>(shape);
  return py::array_t<uint8_t>(shape);
}

// True if the last axis has unit stride (1 element) and every stride is a
// multiple of the item size (so strides can be expressed in elements).
inline bool unit_last_axis(const py::array& a) {
  const py::ssize_t item = a.itemsize();
  if (a.ndim() == 0) return true;
  if (a.shape(a.ndim() - 1) > 1 && a.strides(a.ndim() - 1) != item) return false;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.strides(i) % item != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(a.data()) % item == 0;
}

// `a` itself if its last axis is contiguous, else a C-contiguous copy.
template <typename T>
py::array with_unit_last_axis(const py::array& a) {
  if (unit_last_axis(a)) return a;
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

}  // namespace ops
}  // namespace megq_python

#endif  // MEGQ_PYTHON_OPS_BINDINGS_UTIL_H_
