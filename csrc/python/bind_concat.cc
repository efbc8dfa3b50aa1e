// megq._C.concat (contract: csrc/megq/concat.h).
#include <algorithm>

#include "bindings.h"
#include "megq/concat.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

py::array concat(const std::vector<py::array>& inputs, const std::vector<float>& scales,
                 const std::vector<int>& zero_points, float out_scale, int out_zero_point,
                 const std::string& out_dtype) {
  if (inputs.empty()) throw py::value_error("inputs: expected at least one tensor");
  if (scales.size() != inputs.size()) {
    throw py::value_error("scales: expected " + std::to_string(inputs.size()) + " values (one per input), got " +
                          std::to_string(scales.size()));
  }
  if (zero_points.size() != inputs.size()) {
    throw py::value_error("zero_points: expected " + std::to_string(inputs.size()) +
                          " values (one per input), got " + std::to_string(zero_points.size()));
  }
  const bool out_signed = parse_quantized_dtype(out_dtype, "out_dtype");
  std::vector<py::array> keep;
  std::vector<megq::ConcatInput> ins;
  const py::array& first = inputs[0];
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "inputs[" + std::to_string(i) + "]";
    quantized_dtype(inputs[i], name.c_str());  // TypeError unless int8 / uint8
    const py::array& a = inputs[i];
    if (a.ndim() < 1) throw py::value_error(name + ": expected at least 1 dimension");
    if (a.ndim() != first.ndim() || !std::equal(a.shape(), a.shape() + a.ndim() - 1, first.shape())) {
      throw py::value_error(name + ": shape " + std::string(py::str(a.attr("shape"))) +
                            " differs from inputs[0]'s " + std::string(py::str(first.attr("shape"))) +
                            " outside the last (channel) axis");
    }
    count_int(a.shape(a.ndim() - 1), name + ": channels");
    total += a.shape(a.ndim() - 1);
  }
  std::vector<py::ssize_t> shape(first.shape(), first.shape() + first.ndim());
  shape.back() = static_cast<py::ssize_t>(count_int(total, "inputs: total channels"));
  check_output("inputs", "concat", shape, 1);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool is_signed = inputs[i].dtype().is(py::dtype::of<int8_t>());
    const py::array& a = inputs[i];
    keep.push_back(is_signed ? py::array(py::array_t<int8_t, py::array::c_style>::ensure(a))
                             : py::array(py::array_t<uint8_t, py::array::c_style>::ensure(a)));
    const py::array& c = keep.back();
    const int channels = static_cast<int>(c.shape(c.ndim() - 1));
    ins.push_back(megq::ConcatInput{static_cast<const uint8_t*>(c.data()), channels, channels, scales[i],
                                    zero_points[i], is_signed});
  }
  int64_t P = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) P *= shape[d];
  py::array y = new_quantized(out_signed, shape);
  uint8_t* yp = static_cast<uint8_t*>(y.mutable_data());
  {
    py::gil_scoped_release release;
    megq::concat_channels(ins, P, out_scale, out_zero_point, out_signed, yp);
  }
  return y;
}

}  // namespace

void register_concat(py::module_& m) {
  m.def("concat", &concat, py::arg("inputs"), py::arg("scales"), py::arg("zero_points"), py::arg("out_scale"),
        py::arg("out_zero_point"), py::arg("out_dtype"));
}

}  // namespace megq_python
