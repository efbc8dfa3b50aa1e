// megq._C.pool2d / global_avg_pool2d (contract: csrc/megq/pooling.h).
#include <utility>

#include "bindings.h"
#include "megq/pooling.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

py::array pool2d(const py::array& x_in, std::pair<int, int> kernel, std::pair<int, int> stride,
                 std::pair<int, int> padding, std::pair<int, int> dilation, const std::string& mode,
                 int zero_point) {
  const bool is_signed = quantized_dtype(x_in, "x");
  require_ndim(x_in, "x", 4, "a 4-D NHWC array");
  megq::Pool2dParams p;
  if (mode == "max") {
    p.mode = megq::PoolMode::kMax;
  } else if (mode == "average_count_exclude_padding") {
    p.mode = megq::PoolMode::kAvgExcludePadding;
  } else if (mode == "average") {
    p.mode = megq::PoolMode::kAvgIncludePadding;
  } else {
    throw py::value_error("mode: expected 'max', 'average_count_exclude_padding' or 'average', got '" + mode + "'");
  }
  p.kh = kernel.first;
  p.kw = kernel.second;
  p.stride_h = stride.first;
  p.stride_w = stride.second;
  p.pad_h = padding.first;
  p.pad_w = padding.second;
  p.dil_h = dilation.first;
  p.dil_w = dilation.second;
  const int N = dim_int(x_in, 0, "x"), H = dim_int(x_in, 1, "x");
  const int W = dim_int(x_in, 2, "x"), C = dim_int(x_in, 3, "x");
  if (H < 1 || W < 1 || C < 1) {
    throw py::value_error("x: expected H, W, C >= 1, got shape " + std::string(py::str(x_in.attr("shape"))));
  }
  const int OH = megq::pool_output_size(H, p.kh, p.stride_h, p.pad_h, p.dil_h, "H");
  const int OW = megq::pool_output_size(W, p.kw, p.stride_w, p.pad_w, p.dil_w, "W");
  check_output("x", "pool2d", {std::max(N, 1), OH, OW, C}, 1);
  // Sizes first: with_unit_last_axis may copy, and a stride-0 view may be huge.
  const py::array x = is_signed ? with_unit_last_axis<int8_t>(x_in) : with_unit_last_axis<uint8_t>(x_in);
  py::array y = new_quantized(is_signed, {N, OH, OW, C});
  const uint8_t* xp = static_cast<const uint8_t*>(x.data());
  const ptrdiff_t sn = x.strides(0), sh = x.strides(1), sw = x.strides(2);
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  {
    py::gil_scoped_release release;
    megq::pool2d(xp, N, H, W, C, sn, sh, sw, is_signed, zero_point, p, yp);
  }
  return y;
}

py::array global_avg_pool2d(const py::array& x_in) {
  const bool is_signed = quantized_dtype(x_in, "x");
  require_ndim(x_in, "x", 4, "a 4-D NHWC array");
  const int N = dim_int(x_in, 0, "x"), H = dim_int(x_in, 1, "x");
  const int W = dim_int(x_in, 2, "x"), C = dim_int(x_in, 3, "x");
  if (H < 1 || W < 1 || C < 1) {
    throw py::value_error("x: expected H, W, C >= 1, got shape " + std::string(py::str(x_in.attr("shape"))));
  }
  check_output("x", "global_avg_pool2d", {std::max(N, 1), 1, 1, C}, 1);
  const py::array x = is_signed ? with_unit_last_axis<int8_t>(x_in) : with_unit_last_axis<uint8_t>(x_in);
  py::array y = new_quantized(is_signed, {N, 1, 1, C});
  const uint8_t* xp = static_cast<const uint8_t*>(x.data());
  const ptrdiff_t sn = x.strides(0), sh = x.strides(1), sw = x.strides(2);
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  {
    py::gil_scoped_release release;
    megq::global_avg_pool2d(xp, N, H, W, C, sn, sh, sw, is_signed, yp);
  }
  return y;
}

}  // namespace

void register_pooling(py::module_& m) {
  m.def("pool2d", &pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("mode"), py::arg("zero_point") = 0);
  m.def("global_avg_pool2d", &global_avg_pool2d, py::arg("x"));
}

}  // namespace megq_python
