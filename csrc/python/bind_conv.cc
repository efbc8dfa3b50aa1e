// megq._C.pack_conv2d_weights / conv2d and the opaque PackedConv2dWeights object.
#include <optional>

#include "bindings.h"
#include "megq/conv2d.h"

namespace megq_python {
namespace {

std::unique_ptr<megq::PackedConv2dWeights> pack(const py::array& weight, std::optional<py::array> bias,
                                                std::optional<py::array> multiplier, int groups,
                                                bool input_signed, int input_zero_point, bool narrow_range,
                                                std::optional<std::string> isa_name) {
  require_dtype<int8_t>(weight, "weight", "int8");
  require_ndim(weight, "weight", 4, "a 4-D (Cout, Cin/groups, kh, kw) array");
  const int cout = dim_int(weight, 0, "weight");
  const int cin_g = dim_int(weight, 1, "weight"), kh = dim_int(weight, 2, "weight"), kw = dim_int(weight, 3, "weight");
  if (static_cast<int64_t>(cin_g) * kh * kw > std::numeric_limits<int>::max()) {
    throw py::value_error("weight: Cin/groups * kh * kw = " + std::to_string(static_cast<int64_t>(cin_g) * kh * kw) +
                          " is more than megq's kernels take (at most 2**31 - 1)");
  }
  PackInputs in(bias, multiplier, cout, "Cout", input_signed, input_zero_point, narrow_range, isa_name);
  // Copied only after the sizes are checked (a stride-0 view may be huge).
  auto w = py::array_t<int8_t, py::array::c_style>::ensure(weight);
  const int8_t* data = w.data();
  py::gil_scoped_release release;
  return megq::pack_conv2d_weights(data, cout, cin_g, kh, kw, groups, in.options, in.isa);
}

std::pair<int, int> pair_arg(const std::vector<int>& v, const char* name) {
  if (v.size() == 1) return {v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1]};
  throw py::value_error(std::string(name) + ": expected an int or a pair of ints");
}

py::array run_conv(const py::array& x, const megq::PackedConv2dWeights& p, std::vector<int> stride,
                   std::vector<int> padding, std::vector<int> dilation, const std::string& out_dtype,
                   int out_zero_point, std::optional<int> out_min, std::optional<int> out_max) {
  const megq::PackedGemmWeights& g0 = *p.group_weights[0];
  if (g0.input_signed) {
    require_dtype<int8_t>(x, "x", "int8 (the weights were packed for int8 inputs)");
  } else {
    require_dtype<uint8_t>(x, "x", "uint8 (the weights were packed for uint8 inputs)");
  }
  require_ndim(x, "x", 4, "a 4-D NHWC array");
  // An empty batch has no memory layout to check (numpy gives it zero strides).
  if (x.size() > 0 && x.shape(3) > 1 && x.strides(3) != 1) {
    throw py::value_error("x: channels must be contiguous (NHWC with stride 1 on the last axis)");
  }
  megq::Conv2dParams c;
  std::tie(c.stride_h, c.stride_w) = pair_arg(stride, "stride");
  std::tie(c.pad_h, c.pad_w) = pair_arg(padding, "padding");
  std::tie(c.dilation_h, c.dilation_w) = pair_arg(dilation, "dilation");
  megq::Conv2dInput in{static_cast<const uint8_t*>(x.data()), dim_int(x, 0, "x"),
                       dim_int(x, 1, "x"),                    dim_int(x, 2, "x"),
                       dim_int(x, 3, "x"),                    x.strides(0),
                       x.strides(1),                          x.strides(2)};
  megq::GemmOutput out = parse_gemm_output(out_dtype, out_zero_point, out_min, out_max);
  // Channels, stride / padding / dilation and the output-size limit, before allocating.
  int oh = 0, ow = 0;
  megq::conv2d_output_hw(p, in, c, out.type, &oh, &ow);
  py::array result = make_output(out.type, {in.batch, oh, ow, p.out_channels});
  if (in.batch == 0) return result;
  uint8_t* y = static_cast<uint8_t*>(result.mutable_data());
  {
    py::gil_scoped_release release;
    megq::conv2d(p, in, c, out, y);
  }
  return result;
}

}  // namespace

void register_conv(py::module_& m) {
  py::class_<megq::PackedConv2dWeights>(m, "PackedConv2dWeights",
                                        "Conv2d weights packed once for megq's int8 kernels (opaque).")
      .def_readonly("out_channels", &megq::PackedConv2dWeights::out_channels)
      .def_readonly("in_channels", &megq::PackedConv2dWeights::in_channels)
      .def_readonly("groups", &megq::PackedConv2dWeights::groups)
      .def_property_readonly("kernel_size",
                             [](const megq::PackedConv2dWeights& p) { return py::make_tuple(p.kernel_h, p.kernel_w); })
      .def_property_readonly("isa", [](const megq::PackedConv2dWeights& p) {
        return std::string(megq::isa_name(p.group_weights[0]->isa));
      })
      .def_property_readonly("input_dtype", [](const megq::PackedConv2dWeights& p) {
        return p.group_weights[0]->input_signed ? "int8" : "uint8";
      })
      .def_property_readonly("input_zero_point",
                             [](const megq::PackedConv2dWeights& p) { return p.group_weights[0]->input_zero_point; });
  m.def("pack_conv2d_weights", &pack, py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("multiplier") = py::none(), py::arg("groups") = 1, py::arg("input_signed") = true,
        py::arg("input_zero_point") = 0, py::arg("narrow_range") = true, py::arg("isa") = py::none());
  m.def("conv2d", &run_conv, py::arg("x"), py::arg("packed"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("out_dtype") = "int8", py::arg("out_zero_point") = 0,
        py::arg("out_min") = py::none(), py::arg("out_max") = py::none());
}

}  // namespace megq_python
