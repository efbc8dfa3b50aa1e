// megq._C.pack_depthwise_weights / depthwise_conv2d and the opaque
// PackedDepthwiseWeights object (contract: csrc/megq/depthwise.h).
#include <algorithm>
#include <optional>
#include <utility>

#include "bindings.h"
#include "megq/depthwise.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

std::unique_ptr<megq::PackedDepthwiseWeights> pack(const py::array& weight, int in_channels,
                                                   std::optional<py::array> bias, const py::array& multiplier,
                                                   bool input_signed, int input_zero_point, bool narrow_range,
                                                   std::optional<std::string> isa_name) {
  require_dtype<int8_t>(weight, "weight", "int8");
  require_ndim(weight, "weight", 3, "a 3-D (C_out, KH, KW) array");
  const int C_out = dim_int(weight, 0, "weight"), KH = dim_int(weight, 1, "weight");
  const int KW = dim_int(weight, 2, "weight");
  if (in_channels < 1 || C_out % in_channels != 0) {
    throw py::value_error("in_channels: " + std::to_string(in_channels) + " does not divide the weight's C_out=" +
                          std::to_string(C_out));
  }
  const auto w = py::array_t<int8_t, py::array::c_style>::ensure(weight);
  megq::PackDepthwiseOptions o;
  o.input_signed = input_signed;
  o.input_zero_point = input_zero_point;
  o.narrow_range = narrow_range;
  py::array_t<int32_t> bias_c;
  if (bias) {
    require_dtype<int32_t>(*bias, "bias", "int32");
    require_ndim(*bias, "bias", 1, "a 1-D array of C_out values");
    if (bias->shape(0) != C_out) {
      throw py::value_error("bias: expected C_out=" + std::to_string(C_out) + " values, got " +
                            std::to_string(bias->shape(0)));
    }
    bias_c = py::array_t<int32_t, py::array::c_style>::ensure(*bias);
    o.bias = bias_c.data();
  }
  require_dtype<float>(multiplier, "multiplier", "float32");
  require_ndim(multiplier, "multiplier", 1, "a 1-D array of 1 or C_out values");
  const auto mult_c = py::array_t<float, py::array::c_style>::ensure(multiplier);
  o.multiplier = mult_c.data();
  o.multiplier_count = dim_int(mult_c, 0, "multiplier");
  megq::Isa isa = megq::active_isa();
  if (isa_name && !megq::parse_isa(*isa_name, &isa)) throw py::value_error("isa: unknown ISA name '" + *isa_name + "'");
  const int8_t* wp = w.data();
  py::gil_scoped_release release;
  return megq::pack_depthwise_weights(wp, in_channels, C_out / in_channels, KH, KW, o, isa);
}

py::array run(const py::array& x_in, const megq::PackedDepthwiseWeights& p, std::pair<int, int> stride,
              std::pair<int, int> padding, std::pair<int, int> dilation, const std::string& out_dtype,
              int out_zero_point, std::optional<int> out_min, std::optional<int> out_max) {
  const bool is_signed = quantized_dtype(x_in, "x");
  if (is_signed != p.input_signed) {
    throw py::type_error(std::string("x: expected dtype ") + (p.input_signed ? "int8" : "uint8") +
                         " (the weights were packed for it), got " + std::string(py::str(x_in.dtype())));
  }
  require_ndim(x_in, "x", 4, "a 4-D NHWC array");
  if (x_in.shape(3) != p.C_in) {
    throw py::value_error("x: has C=" + std::to_string(x_in.shape(3)) + " channels but the packed weights expect " +
                          std::to_string(p.C_in));
  }
  const bool out_signed = parse_quantized_dtype(out_dtype, "out_dtype");
  megq::DepthwiseParams dp;
  dp.stride_h = stride.first;
  dp.stride_w = stride.second;
  dp.pad_h = padding.first;
  dp.pad_w = padding.second;
  dp.dil_h = dilation.first;
  dp.dil_w = dilation.second;
  dp.out_type = out_signed ? megq::OutputType::kInt8 : megq::OutputType::kUint8;
  dp.zero_point = out_zero_point;
  dp.min = out_min.value_or(out_signed ? -128 : 0);
  dp.max = out_max.value_or(out_signed ? 127 : 255);
  const int N = dim_int(x_in, 0, "x"), H = dim_int(x_in, 1, "x"), W = dim_int(x_in, 2, "x");
  if (H < 1 || W < 1) throw py::value_error("x: expected H, W >= 1, got shape " + std::string(py::str(x_in.attr("shape"))));
  const int OH = megq::depthwise_output_size(H, p.KH, dp.stride_h, dp.pad_h, dp.dil_h, "H");
  const int OW = megq::depthwise_output_size(W, p.KW, dp.stride_w, dp.pad_w, dp.dil_w, "W");
  check_output("x", "depthwise_conv2d", {std::max(N, 1), OH, OW, p.C_out}, 1);
  // Sizes first: with_unit_last_axis may copy, and a stride-0 view may be huge.
  const py::array x = is_signed ? with_unit_last_axis<int8_t>(x_in) : with_unit_last_axis<uint8_t>(x_in);
  py::array y = new_quantized(out_signed, {N, OH, OW, p.C_out});
  const uint8_t* xp = static_cast<const uint8_t*>(x.data());
  const ptrdiff_t sn = x.strides(0), sh = x.strides(1), sw = x.strides(2);
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  {
    py::gil_scoped_release release;
    megq::depthwise_conv2d(p, xp, N, H, W, sn, sh, sw, dp, yp);
  }
  return y;
}

}  // namespace

void register_depthwise(py::module_& m) {
  using P = megq::PackedDepthwiseWeights;
  py::class_<P>(m, "PackedDepthwiseWeights",
                "Depthwise conv weights packed once for megq's int8 kernels (opaque; see megq.kernels).")
      .def_readonly("in_channels", &P::C_in)
      .def_readonly("out_channels", &P::C_out)
      .def_readonly("channel_multiplier", &P::multiplier)
      .def_property_readonly("kernel_size", [](const P& p) { return std::make_pair(p.KH, p.KW); })
      .def_property_readonly("isa", [](const P& p) { return std::string(megq::isa_name(p.isa)); })
      .def_property_readonly("input_dtype", [](const P& p) { return p.input_signed ? "int8" : "uint8"; })
      .def_readonly("input_zero_point", &P::input_zero_point)
      .def_readonly("per_channel", &P::per_channel)
      .def_property_readonly("weight",
                             [](const P& p) {
                               py::array_t<int8_t> w({p.C_out, p.KH, p.KW});
                               std::copy(p.weight.as<int8_t>(), p.weight.as<int8_t>() + p.weight.size(),
                                         w.mutable_data());
                               return w;
                             })
      .def_property_readonly("bias", [](const P& p) { return py::array_t<int32_t>(p.C_out, p.bias.as<int32_t>()); })
      .def_property_readonly("multiplier",
                             [](const P& p) { return py::array_t<float>(p.C_out, p.multiplier_values.as<float>()); })
      .def_property_readonly("packed_bytes", [](const P& p) { return p.packed.size(); });
  m.def("pack_depthwise_weights", &pack, py::arg("weight"), py::arg("in_channels"), py::arg("bias"),
        py::arg("multiplier"), py::arg("input_signed") = true, py::arg("input_zero_point") = 0,
        py::arg("narrow_range") = true, py::arg("isa") = py::none());
  m.def("depthwise_conv2d", &run, py::arg("x"), py::arg("packed"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("out_dtype") = "int8", py::arg("out_zero_point") = 0,
        py::arg("out_min") = py::none(), py::arg("out_max") = py::none());
}

}  // namespace megq_python
