// megq._C.add / fuse_add_relu / mul (contract: csrc/megq/elementwise.h).
#include <algorithm>
#include <utility>

#include "bindings.h"
#include "megq/elementwise.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

py::array contiguous(const py::array& a, bool is_signed) {
  if (is_signed) return py::array_t<int8_t, py::array::c_style>::ensure(a);
  return py::array_t<uint8_t, py::array::c_style>::ensure(a);
}

// Values of `small` repeat with this period along `big` (numpy broadcasting
// restricted to: same shape, a per-channel vector over the last axis, or a
// single value); -1 if neither. The period of two empty arrays of one shape
// is 0 (nothing repeats, nothing is computed).
int64_t broadcast_period(const py::array& big, const py::array& small) {
  if (small.ndim() == big.ndim() && std::equal(big.shape(), big.shape() + big.ndim(), small.shape())) {
    return static_cast<int64_t>(big.size());
  }
  if (small.size() == 1 && small.ndim() <= big.ndim()) return 1;
  if (big.ndim() >= 1 && small.ndim() >= 1 && small.ndim() <= big.ndim()) {
    for (py::ssize_t i = 0; i + 1 < small.ndim(); ++i) {
      if (small.shape(i) != 1) return -1;
    }
    if (small.shape(small.ndim() - 1) == big.shape(big.ndim() - 1)) return small.shape(small.ndim() - 1);
  }
  return -1;
}

py::array binary(const py::array& a_in, const py::array& b_in, float a_scale, int a_zero_point, float b_scale,
                 int b_zero_point, float out_scale, int out_zero_point, const std::string& out_dtype, int kind) {
  bool a_signed = quantized_dtype(a_in, "a");
  bool b_signed = quantized_dtype(b_in, "b");
  const bool out_signed = parse_quantized_dtype(out_dtype, "out_dtype");
  megq::TensorQParams qa{a_scale, a_zero_point, a_signed}, qb{b_scale, b_zero_point, b_signed};
  const megq::TensorQParams qy{out_scale, out_zero_point, out_signed};
  // The full-size operand goes first; add and mul are exactly commutative in
  // float32 (x + y == y + x, x * y == y * x), so swapping changes no bit.
  const bool swap = broadcast_period(a_in, b_in) < 0 && broadcast_period(b_in, a_in) >= 0;
  const py::array& big_in = swap ? b_in : a_in;
  const py::array& small_in = swap ? a_in : b_in;
  const int64_t period = broadcast_period(big_in, small_in);
  if (period < 0) {
    throw py::value_error("b: shape " + std::string(py::str(b_in.attr("shape"))) + " does not match a's shape " +
                          std::string(py::str(a_in.attr("shape"))) +
                          " and is not a per-channel (last axis) vector or a single value");
  }
  if (swap) {
    std::swap(qa, qb);
    std::swap(a_signed, b_signed);
  }
  std::vector<py::ssize_t> shape(big_in.shape(), big_in.shape() + big_in.ndim());
  check_output(swap ? "b" : "a", kind == 2 ? "mul" : kind == 1 ? "fuse_add_relu" : "add", shape, 1);
  const py::array a = contiguous(big_in, a_signed), b = contiguous(small_in, b_signed);
  py::array y = new_quantized(out_signed, shape);
  const uint8_t* ap = static_cast<const uint8_t*>(a.data());
  const uint8_t* bp = static_cast<const uint8_t*>(b.data());
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  const int64_t n = static_cast<int64_t>(a.size());
  if (n == 0) return y;
  {
    py::gil_scoped_release release;
    if (kind == 2) {
      megq::quantized_mul(ap, qa, bp, qb, yp, qy, n, period);
    } else {
      megq::quantized_add(ap, qa, bp, qb, yp, qy, n, kind == 1, period);
    }
  }
  return y;
}

}  // namespace

void register_elementwise(py::module_& m) {
  for (int kind = 0; kind < 3; ++kind) {
    const char* name = kind == 0 ? "add" : (kind == 1 ? "fuse_add_relu" : "mul");
    m.def(
        name,
        [kind](const py::array& a, const py::array& b, float a_scale, int a_zero_point, float b_scale,
               int b_zero_point, float out_scale, int out_zero_point, const std::string& out_dtype) {
          return binary(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point, out_dtype,
                        kind);
        },
        py::arg("a"), py::arg("b"), py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b_scale"),
        py::arg("b_zero_point"), py::arg("out_scale"), py::arg("out_zero_point"), py::arg("out_dtype"));
  }
}

}  // namespace megq_python
