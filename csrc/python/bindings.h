// Shared helpers for megq._C's binding files (one file per kernel family).
#ifndef MEGQ_PYTHON_BINDINGS_H_
#define MEGQ_PYTHON_BINDINGS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "megq/gemm.h"
#include "megq/limits.h"

namespace megq_python {

namespace py = pybind11;

// Raises TypeError naming `name` unless `array` has dtype T.
template <typename T>
void require_dtype(const py::array& array, const char* name, const char* expected) {
  if (!array.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": expected dtype " + expected + ", got " +
                         std::string(py::str(array.dtype())));
  }
}

inline void require_ndim(const py::array& array, const char* name, int ndim, const char* what) {
  if (array.ndim() != ndim) {
    throw py::value_error(std::string(name) + ": expected " + what + ", got an array with " +
                          std::to_string(array.ndim()) + " dimension(s)");
  }
}

// Dimension `axis` of `array` as the int the C++ core takes. numpy sizes are
// 64-bit (and a stride-0 view can be huge without memory behind it); a
// silent static_cast would keep only the low 32 bits (2**32 + 3 rows -> 3).
inline int dim_int(const py::array& array, py::ssize_t axis, const char* name) {
  const py::ssize_t d = array.shape(axis);
  if (d > std::numeric_limits<int>::max()) {
    throw py::value_error(std::string(name) + ": dimension " + std::to_string(axis) + " has size " +
                          std::to_string(d) + ", more than megq's kernels take (at most 2**31 - 1 = " +
                          std::to_string(std::numeric_limits<int>::max()) + ")");
  }
  return static_cast<int>(d);
}

// Any count (list length, total size) as int, with the same check.
inline int count_int(py::ssize_t n, const std::string& what) {
  if (n > std::numeric_limits<int>::max()) {
    throw py::value_error(what + ": " + std::to_string(n) + " is more than megq's kernels take (at most 2**31 - 1)");
  }
  return static_cast<int>(n);
}

// ValueError (megq::ArgumentError) naming `argument` unless the output fits
// megq::kMaxOutputBytes; called before allocating any output.
inline void check_output(const char* argument, const char* op, const std::vector<py::ssize_t>& shape,
                         int elem_bytes) {
  megq::check_output_size(argument, op, std::vector<int64_t>(shape.begin(), shape.end()), elem_bytes);
}

// Output type, zero point and clamp bounds of an int8 kernel call, checked
// (int32 output takes neither zero point nor bounds).
megq::GemmOutput parse_gemm_output(const std::string& out_dtype, int out_zero_point, std::optional<int> out_min,
                                   std::optional<int> out_max);
// A new C-contiguous array of the output type.
py::array make_output(megq::OutputType type, const std::vector<py::ssize_t>& shape);

// Checked bias / multiplier arrays and options shared by the weight-packing bindings; the arrays stay
// alive (and C-contiguous) as long as this object.
class PackInputs {
 public:
  PackInputs(std::optional<py::array> bias, std::optional<py::array> multiplier, int count,
             const std::string& count_name, bool input_signed, int input_zero_point, bool narrow_range,
             const std::optional<std::string>& isa_name);
  megq::PackGemmOptions options;
  megq::Isa isa;

 private:
  py::array_t<int32_t> bias_;
  py::array_t<float> multiplier_;
};

void register_runtime(py::module_& m);
void register_gemm(py::module_& m);
void register_quantize(py::module_& m);
void register_elementwise(py::module_& m);
void register_pooling(py::module_& m);
void register_concat(py::module_& m);
void register_depthwise(py::module_& m);
void register_conv(py::module_& m);
void register_plan(py::module_& m);

}  // namespace megq_python

#endif  // MEGQ_PYTHON_BINDINGS_H_
