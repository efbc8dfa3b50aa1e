// megq._C.quantize / dequantize / requantize (contract: csrc/megq/quantize.h).
#include "bindings.h"
#include "megq/quantize.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

py::array quantize(const py::array& x_in, float scale, int zero_point, const std::string& dtype) {
  require_dtype<float>(x_in, "x", "float32");
  require_ndim(x_in, "x", 4, "a 4-D NCHW array");
  const bool out_signed = parse_quantized_dtype(dtype, "dtype");
  const int N = dim_int(x_in, 0, "x"), C = dim_int(x_in, 1, "x");
  const int H = dim_int(x_in, 2, "x"), W = dim_int(x_in, 3, "x");
  if (C < 1) throw py::value_error("x: expected at least one channel, got C=0");
  check_output("x", "quantize", {N, H, W, C}, 1);
  const py::array x = with_unit_last_axis<float>(x_in);
  py::array y = new_quantized(out_signed, {N, H, W, C});
  const float* xp = static_cast<const float*>(x.data());
  const ptrdiff_t sn = x.strides(0) / 4, sc = x.strides(1) / 4, sh = x.strides(2) / 4;
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  {
    py::gil_scoped_release release;
    megq::quantize_nchw_to_nhwc(xp, N, C, H, W, sn, sc, sh, scale, zero_point, out_signed, yp);
  }
  return y;
}

py::array dequantize(const py::array& q_in, float scale, int zero_point) {
  const bool is_signed = quantized_dtype(q_in, "q");
  require_ndim(q_in, "q", 4, "a 4-D NHWC array");
  const int N = dim_int(q_in, 0, "q"), H = dim_int(q_in, 1, "q");
  const int W = dim_int(q_in, 2, "q"), C = dim_int(q_in, 3, "q");
  if (C < 1) throw py::value_error("q: expected at least one channel, got C=0");
  check_output("q", "dequantize", {N, C, H, W}, 4);
  const py::array q = is_signed ? with_unit_last_axis<int8_t>(q_in) : with_unit_last_axis<uint8_t>(q_in);
  py::array_t<float> y({N, C, H, W});
  const uint8_t* qp = static_cast<const uint8_t*>(q.data());
  const ptrdiff_t sn = q.strides(0), sh = q.strides(1), sw = q.strides(2);
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    megq::dequantize_nhwc_to_nchw(qp, N, H, W, C, sn, sh, sw, is_signed, scale, zero_point, yp);
  }
  return y;
}

py::array requantize(const py::array& q_in, float in_scale, int in_zero_point, float out_scale,
                     int out_zero_point, const std::string& out_dtype) {
  const bool in_signed = quantized_dtype(q_in, "q");
  const bool out_signed = parse_quantized_dtype(out_dtype, "out_dtype");
  check_output("q", "requantize", std::vector<py::ssize_t>(q_in.shape(), q_in.shape() + q_in.ndim()), 1);
  const py::array q = in_signed ? py::array(py::array_t<int8_t, py::array::c_style>::ensure(q_in))
                                : py::array(py::array_t<uint8_t, py::array::c_style>::ensure(q_in));
  std::vector<py::ssize_t> shape(q.shape(), q.shape() + q.ndim());
  py::array y = new_quantized(out_signed, shape);
  const uint8_t* qp = static_cast<const uint8_t*>(q.data());
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  const int64_t count = static_cast<int64_t>(q.size());
  {
    py::gil_scoped_release release;
    megq::requantize(qp, count, in_signed, in_scale, in_zero_point, out_signed, out_scale, out_zero_point, yp);
  }
  return y;
}

}  // namespace

void register_quantize(py::module_& m) {
  m.def("quantize", &quantize, py::arg("x"), py::arg("scale"), py::arg("zero_point") = 0,
        py::arg("dtype") = "int8");
  m.def("dequantize", &dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point") = 0);
  m.def("requantize", &requantize, py::arg("q"), py::arg("in_scale"), py::arg("in_zero_point"),
        py::arg("out_scale"), py::arg("out_zero_point"), py::arg("out_dtype") = "int8");
}

}  // namespace megq_python
