// Helpers shared by the binding files.
#include "bindings.h"

namespace megq_python {

megq::GemmOutput parse_gemm_output(const std::string& out_dtype, int out_zero_point, std::optional<int> out_min,
                                   std::optional<int> out_max) {
  megq::GemmOutput out;
  if (out_dtype == "int32") {
    if (out_zero_point != 0 || out_min || out_max) {
      throw py::value_error("out_zero_point: int32 output is the raw accumulator; zero point and clamp bounds "
                            "apply to int8/uint8 output only");
    }
    out.type = megq::OutputType::kInt32;
    return out;
  }
  if (out_dtype != "int8" && out_dtype != "uint8") {
    throw py::value_error("out_dtype: expected 'int8', 'uint8' or 'int32', got '" + out_dtype + "'");
  }
  out.type = out_dtype == "int8" ? megq::OutputType::kInt8 : megq::OutputType::kUint8;
  const int lo = out.type == megq::OutputType::kInt8 ? -128 : 0;
  const int hi = out.type == megq::OutputType::kInt8 ? 127 : 255;
  if (out_zero_point < lo || out_zero_point > hi) {
    throw py::value_error("out_zero_point: " + std::to_string(out_zero_point) + " is outside [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  out.zero_point = out_zero_point;
  out.min = out_min.value_or(lo);
  out.max = out_max.value_or(hi);
  if (out.min < lo || out.max > hi || out.min > out.max) {
    throw py::value_error("out_min/out_max: expected " + std::to_string(lo) + " <= out_min <= out_max <= " +
                          std::to_string(hi) + ", got [" + std::to_string(out.min) + ", " +
                          std::to_string(out.max) + "]");
  }
  return out;
}

py::array make_output(megq::OutputType type, const std::vector<py::ssize_t>& shape) {
  switch (type) {
    case megq::OutputType::kInt32: return py::array_t<int32_t>(shape);
    case megq::OutputType::kUint8: return py::array_t<uint8_t>(shape);
    default: return py::array_t<int8_t>(shape);
  }
}

PackInputs::PackInputs(std::optional<py::array> bias, std::optional<py::array> multiplier, int count,
                       const std::string& count_name, bool input_signed, int input_zero_point, bool narrow_range,
                       const std::optional<std::string>& isa_name) {
  options.input_signed = input_signed;
  options.input_zero_point = input_zero_point;
  options.narrow_range = narrow_range;
  if (bias) {
    require_dtype<int32_t>(*bias, "bias", "int32");
    require_ndim(*bias, "bias", 1, ("a 1-D array of " + count_name + " values").c_str());
    if (bias->shape(0) != count) {
      throw py::value_error("bias: expected " + count_name + "=" + std::to_string(count) + " values, got " +
                            std::to_string(bias->shape(0)));
    }
    bias_ = py::array_t<int32_t, py::array::c_style>::ensure(*bias);
    options.bias = bias_.data();
  }
  if (multiplier) {
    require_dtype<float>(*multiplier, "multiplier", "float32");
    require_ndim(*multiplier, "multiplier", 1, ("a 1-D array of 1 or " + count_name + " values").c_str());
    multiplier_ = py::array_t<float, py::array::c_style>::ensure(*multiplier);
    options.multiplier = multiplier_.data();
    options.multiplier_count = dim_int(multiplier_, 0, "multiplier");
  }
  isa = megq::active_isa();
  if (isa_name && !megq::parse_isa(*isa_name, &isa)) {
    throw py::value_error("isa: unknown ISA name '" + *isa_name + "'");
  }
}

}  // namespace megq_python
