// megq._C.pack_gemm_weights / gemm and the opaque PackedGemmWeights object.
#include <optional>

#include "bindings.h"
#include "megq/gemm.h"

namespace megq_python {
namespace {

std::unique_ptr<megq::PackedGemmWeights> pack(const py::array& weight, std::optional<py::array> bias,
                                              std::optional<py::array> multiplier, bool input_signed,
                                              int input_zero_point, bool narrow_range,
                                              std::optional<std::string> isa_name) {
  require_dtype<int8_t>(weight, "weight", "int8");
  require_ndim(weight, "weight", 2, "a 2-D (K, N) array");
  const int K = dim_int(weight, 0, "weight"), N = dim_int(weight, 1, "weight");
  if (K > 0 && N > 1 && weight.strides(1) != 1) {  // a single column may have any stride
    throw py::value_error("weight: rows must be contiguous (stride of axis 1 must be 1 byte)");
  }
  PackInputs in(bias, multiplier, N, "N", input_signed, input_zero_point, narrow_range, isa_name);
  const int8_t* w = static_cast<const int8_t*>(weight.data());
  const ptrdiff_t row_stride = weight.strides(0);
  py::gil_scoped_release release;
  return megq::pack_gemm_weights(w, K, N, row_stride, in.options, in.isa);
}

py::array run_gemm(const py::array& a, const megq::PackedGemmWeights& p, const std::string& out_dtype,
                   int out_zero_point, std::optional<int> out_min, std::optional<int> out_max) {
  if (p.input_signed) {
    require_dtype<int8_t>(a, "a", "int8 (the weights were packed for int8 inputs)");
  } else {
    require_dtype<uint8_t>(a, "a", "uint8 (the weights were packed for uint8 inputs)");
  }
  require_ndim(a, "a", 2, "a 2-D (M, K) array");
  if (a.shape(1) != p.K) {
    throw py::value_error("a: has K=" + std::to_string(a.shape(1)) + " columns but the packed weights expect K=" +
                          std::to_string(p.K));
  }
  if (a.shape(0) > 0 && a.shape(1) > 1 && a.strides(1) != 1) {
    throw py::value_error("a: rows must be contiguous (stride of axis 1 must be 1 byte); any row stride is fine");
  }
  const megq::GemmOutput out = parse_gemm_output(out_dtype, out_zero_point, out_min, out_max);
  const int M = dim_int(a, 0, "a");
  check_output("a", "gemm", {M, p.N}, out.type == megq::OutputType::kInt32 ? 4 : 1);
  py::array result = make_output(out.type, {M, p.N});
  if (M == 0) return result;
  const uint8_t* a_ptr = static_cast<const uint8_t*>(a.data());
  const ptrdiff_t a_stride = a.strides(0);
  uint8_t* c_ptr = static_cast<uint8_t*>(result.mutable_data());
  const ptrdiff_t c_stride = result.strides(0);
  {
    py::gil_scoped_release release;
    megq::gemm(p, a_ptr, M, a_stride, out, c_ptr, c_stride);
  }
  return result;
}

}  // namespace

void register_gemm(py::module_& m) {
  py::class_<megq::PackedGemmWeights>(m, "PackedGemmWeights",
                                      "Weights packed once for megq's int8 GEMM (opaque; see megq.kernels).")
      .def_readonly("K", &megq::PackedGemmWeights::K)
      .def_readonly("N", &megq::PackedGemmWeights::N)
      .def_property_readonly("isa", [](const megq::PackedGemmWeights& p) { return std::string(megq::isa_name(p.isa)); })
      .def_property_readonly("input_dtype",
                             [](const megq::PackedGemmWeights& p) { return p.input_signed ? "int8" : "uint8"; })
      .def_readonly("input_zero_point", &megq::PackedGemmWeights::input_zero_point)
      .def_readonly("per_channel", &megq::PackedGemmWeights::per_channel)
      .def_readonly("has_multiplier", &megq::PackedGemmWeights::has_multiplier)
      .def_property_readonly("bias",
                             [](const megq::PackedGemmWeights& p) {
                               return py::array_t<int32_t>(p.N, p.user_bias.as<int32_t>());
                             })
      .def_property_readonly("multiplier",
                             [](const megq::PackedGemmWeights& p) -> py::object {
                               if (!p.has_multiplier) return py::none();
                               return py::array_t<float>(p.N, p.user_multiplier.as<float>());
                             })
      .def_property_readonly("packed_bytes", [](const megq::PackedGemmWeights& p) { return p.packed.size(); });
  m.def("pack_gemm_weights", &pack, py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("multiplier") = py::none(), py::arg("input_signed") = true, py::arg("input_zero_point") = 0,
        py::arg("narrow_range") = true, py::arg("isa") = py::none());
  m.def("gemm", &run_gemm, py::arg("a"), py::arg("packed"), py::arg("out_dtype") = "int8",
        py::arg("out_zero_point") = 0, py::arg("out_min") = py::none(), py::arg("out_max") = py::none());
}

}  // namespace megq_python
