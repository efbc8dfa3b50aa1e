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
  auto w = py::array_t<int8_t, py::array::c_style>::ensure(weight);
  const int cout = static_cast<int>(w.shape(0));
  PackInputs in(bias, multiplier, cout, "Cout", input_signed, input_zero_point, narrow_range, isa_name);
  const int cin_g = static_cast<int>(w.shape(1)), kh = static_cast<int>(w.shape(2)),
            kw = static_cast<int>(w.shape(3));
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
  if (x.shape(3) > 1 && x.strides(3) != 1) {
    throw py::value_error("x: channels must be contiguous (NHWC with stride 1 on the last axis)");
  }
  megq::Conv2dParams c;
  std::tie(c.stride_h, c.stride_w) = pair_arg(stride, "stride");
  std::tie(c.pad_h, c.pad_w) = pair_arg(padding, "padding");
  std::tie(c.dilation_h, c.dilation_w) = pair_arg(dilation, "dilation");
  megq::Conv2dInput in{static_cast<const uint8_t*>(x.data()), static_cast<int>(x.shape(0)),
                       static_cast<int>(x.shape(1)),          static_cast<int>(x.shape(2)),
                       static_cast<int>(x.shape(3)),          x.strides(0),
                       x.strides(1),                          x.strides(2)};
  if (in.channels != p.in_channels) {
    throw py::value_error("x: has " + std::to_string(in.channels) + " channels but the weights expect " +
                          std::to_string(p.in_channels));
  }
  if (c.stride_h < 1 || c.stride_w < 1) throw py::value_error("stride: must be >= 1");
  if (c.dilation_h < 1 || c.dilation_w < 1) throw py::value_error("dilation: must be >= 1");
  if (c.pad_h < 0 || c.pad_w < 0) throw py::value_error("padding: must be >= 0");
  const int oh = megq::conv_output_size(in.height, p.kernel_h, c.stride_h, c.pad_h, c.dilation_h);
  const int ow = megq::conv_output_size(in.width, p.kernel_w, c.stride_w, c.pad_w, c.dilation_w);
  if (oh < 1 || ow < 1) {
    throw py::value_error("x: the kernel (with dilation) is larger than the padded input");
  }
  megq::GemmOutput out = parse_gemm_output(out_dtype, out_zero_point, out_min, out_max);
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
