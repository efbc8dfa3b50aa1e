// megq._C.Plan: a prepared execution plan (contract: csrc/megq/plan.h). Built by
// megq.kernels.plan (the documented wrapper) from a traced Q-model forward.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "megq/plan.h"
#include "ops_bindings_util.h"

namespace megq_python {
namespace {

using namespace ops;

// The plan plus the Python objects owning the packed weights its steps point to.
class PyPlan {
 public:
  megq::Plan plan;

  bool tensor_signed(int id, const char* name) const {
    if (id < 0 || id >= plan.num_tensors()) {
      throw py::value_error(std::string(name) + ": no tensor " + std::to_string(id) + " in this plan");
    }
    return plan.tensor(id).is_signed;
  }
  void keep(py::object o) { keep_alive_.push_back(std::move(o)); }

  py::object run(const std::vector<py::array>& inputs, bool profile, const std::string& split, int chunk) {
    if (!finalized_) throw py::value_error("plan: call finalize() before run()");
    megq::Plan::Split how;
    if (split == "auto") {
      how = megq::Plan::Split::kAuto;
    } else if (split == "layer") {
      how = megq::Plan::Split::kLayer;
    } else if (split == "batch") {
      how = megq::Plan::Split::kBatch;
    } else {
      throw py::value_error("split: expected 'auto', 'layer' or 'batch', got '" + split + "'");
    }
    if (chunk < 0) throw py::value_error("chunk: expected 0 (pick) or a number of images >= 1, got " +
                                         std::to_string(chunk));
    if (static_cast<int>(inputs.size()) != plan.num_inputs()) {
      throw py::value_error("inputs: expected " + std::to_string(plan.num_inputs()) + " array(s), got " +
                            std::to_string(inputs.size()));
    }
    std::vector<const void*> in_ptrs;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const py::array& x = inputs[i];
      const std::string name = "inputs[" + std::to_string(i) + "]";
      const int tensor = plan.input_tensor(static_cast<int>(i));
      bool same = false;
      std::string expected;
      if (tensor < 0) {
        require_dtype<float>(x, name.c_str(), "float32");
        const std::vector<int>& s = plan.input_shape(static_cast<int>(i));
        same = x.ndim() == 4 && x.shape(0) == s[0] && x.shape(1) == s[1] && x.shape(2) == s[2] && x.shape(3) == s[3];
        expected = "(" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) + ", " +
                   std::to_string(s[3]) + ")";
      } else {
        const megq::Plan::TensorDesc& t = plan.tensor(tensor);
        if (quantized_dtype(x, name.c_str()) != t.is_signed) {
          throw py::type_error(name + ": expected dtype " + (t.is_signed ? "int8" : "uint8") + ", got " +
                               std::string(py::str(x.dtype())));
        }
        same = (x.ndim() == 4 && x.shape(0) == t.n && x.shape(1) == t.h && x.shape(2) == t.w && x.shape(3) == t.c) ||
               (x.ndim() == 2 && t.h == 1 && t.w == 1 && x.shape(0) == t.n && x.shape(1) == t.c);
        expected = "(" + std::to_string(t.n) + ", " + std::to_string(t.h) + ", " + std::to_string(t.w) + ", " +
                   std::to_string(t.c) + ")";
      }
      if (!same) {
        throw py::value_error(name + ": expected shape " + expected + ", got " + std::string(py::str(x.attr("shape"))));
      }
      if (!(x.flags() & py::array::c_style)) throw py::value_error(name + ": expected a C-contiguous array");
      in_ptrs.push_back(x.data());
    }
    py::list result;
    std::vector<void*> out_ptrs;
    for (const megq::Plan::OutputSlot& slot : plan.outputs()) {
      const megq::Plan::TensorDesc& t = plan.tensor(slot.tensor);
      py::array a = slot.is_float ? py::array(py::array_t<float>(std::vector<py::ssize_t>{t.n, t.c, t.h, t.w}))
                                  : new_quantized(t.is_signed, {t.n, t.h, t.w, t.c});
      out_ptrs.push_back(a.mutable_data());
      result.append(a);
    }
    std::vector<double> seconds;
    {
      py::gil_scoped_release release;
      plan.run(in_ptrs, out_ptrs, profile ? &seconds : nullptr, how, chunk);
    }
    if (!profile) return std::move(result);
    py::list steps;
    for (size_t i = 0; i < seconds.size(); ++i) {
      steps.append(py::make_tuple(plan.step_name(static_cast<int>(i)), seconds[i]));
    }
    return py::make_tuple(result, steps);
  }

  void finalize() {
    plan.finalize();
    finalized_ = true;
  }

 private:
  std::vector<py::object> keep_alive_;
  bool finalized_ = false;
};

std::pair<int, int> pair_of(const std::pair<int, int>& v) { return v; }

megq::GemmOutput gemm_output(const std::string& out_dtype, int zp, std::optional<int> lo, std::optional<int> hi) {
  if (out_dtype != "int8" && out_dtype != "uint8") {
    throw py::value_error("out_dtype: a plan keeps int8/uint8 activations, got '" + out_dtype + "'");
  }
  return parse_gemm_output(out_dtype, zp, lo, hi);
}

}  // namespace

void register_plan(py::module_& m) {
  py::class_<PyPlan>(m, "Plan", "A prepared execution plan of megq kernel calls (use megq.kernels.plan).")
      .def(py::init<>())
      .def("add_tensor",
           [](PyPlan& p, int n, int h, int w, int c, const std::string& dtype) {
             return p.plan.add_tensor(n, h, w, c, parse_quantized_dtype(dtype, "dtype"));
           },
           py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"), py::arg("dtype"))
      .def("add_input", [](PyPlan& p, int n, int c, int h, int w) { return p.plan.add_input(n, c, h, w); },
           py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"))
      .def("add_quantized_input", [](PyPlan& p, int t) { return p.plan.add_quantized_input(t); }, py::arg("t"))
      .def("add_quantize",
           [](PyPlan& p, int input, int out, float scale, int zero_point) {
             p.plan.add_quantize(input, out, scale, zero_point);
           },
           py::arg("input"), py::arg("out"), py::arg("scale"), py::arg("zero_point"))
      .def("add_conv2d",
           [](PyPlan& p, py::object packed, int in, int out, std::pair<int, int> stride, std::pair<int, int> padding,
              std::pair<int, int> dilation, const std::string& out_dtype, int out_zero_point,
              std::optional<int> out_min, std::optional<int> out_max) {
             const auto* w = packed.cast<const megq::PackedConv2dWeights*>();
             megq::Conv2dParams c;
             std::tie(c.stride_h, c.stride_w) = pair_of(stride);
             std::tie(c.pad_h, c.pad_w) = pair_of(padding);
             std::tie(c.dilation_h, c.dilation_w) = pair_of(dilation);
             p.plan.add_conv2d(w, in, out, c, gemm_output(out_dtype, out_zero_point, out_min, out_max));
             p.keep(packed);
           },
           py::arg("packed"), py::arg("x"), py::arg("out"), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("out_dtype"), py::arg("out_zero_point"), py::arg("out_min") = py::none(),
           py::arg("out_max") = py::none())
      .def("add_depthwise",
           [](PyPlan& p, py::object packed, int in, int out, std::pair<int, int> stride,
              std::pair<int, int> padding, std::pair<int, int> dilation, const std::string& out_dtype,
              int out_zero_point, std::optional<int> out_min, std::optional<int> out_max) {
             const auto* w = packed.cast<const megq::PackedDepthwiseWeights*>();
             const bool out_signed = parse_quantized_dtype(out_dtype, "out_dtype");
             megq::DepthwiseParams dp;
             std::tie(dp.stride_h, dp.stride_w) = stride;
             std::tie(dp.pad_h, dp.pad_w) = padding;
             std::tie(dp.dil_h, dp.dil_w) = dilation;
             dp.out_type = out_signed ? megq::OutputType::kInt8 : megq::OutputType::kUint8;
             dp.zero_point = out_zero_point;
             dp.min = out_min.value_or(out_signed ? -128 : 0);
             dp.max = out_max.value_or(out_signed ? 127 : 255);
             p.plan.add_depthwise(w, in, out, dp);
             p.keep(packed);
           },
           py::arg("packed"), py::arg("x"), py::arg("out"), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("out_dtype"), py::arg("out_zero_point"), py::arg("out_min") = py::none(),
           py::arg("out_max") = py::none())
      .def("add_gemm",
           [](PyPlan& p, py::object packed, int in, int out, const std::string& out_dtype, int out_zero_point,
              std::optional<int> out_min, std::optional<int> out_max) {
             const auto* w = packed.cast<const megq::PackedGemmWeights*>();
             p.plan.add_gemm(w, in, out, gemm_output(out_dtype, out_zero_point, out_min, out_max));
             p.keep(packed);
           },
           py::arg("packed"), py::arg("a"), py::arg("out"), py::arg("out_dtype"), py::arg("out_zero_point"),
           py::arg("out_min") = py::none(), py::arg("out_max") = py::none())
      .def("add_elementwise",
           [](PyPlan& p, const std::string& method, int a, float a_scale, int a_zero_point, int b, float b_scale,
              int b_zero_point, int out, float out_scale, int out_zero_point) {
             int kind = 0;
             if (method == "ADD") {
               kind = 0;
             } else if (method == "FUSE_ADD_RELU") {
               kind = 1;
             } else if (method == "MUL") {
               kind = 2;
             } else {
               throw py::value_error("method: expected 'ADD', 'FUSE_ADD_RELU' or 'MUL', got '" + method + "'");
             }
             const megq::TensorQParams qa{a_scale, a_zero_point, p.tensor_signed(a, "a")};
             const megq::TensorQParams qb{b_scale, b_zero_point, p.tensor_signed(b, "b")};
             const megq::TensorQParams qy{out_scale, out_zero_point, p.tensor_signed(out, "out")};
             p.plan.add_elementwise(kind, a, qa, b, qb, out, qy);
           },
           py::arg("method"), py::arg("a"), py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b"),
           py::arg("b_scale"), py::arg("b_zero_point"), py::arg("out"), py::arg("out_scale"),
           py::arg("out_zero_point"))
      .def("add_pool",
           [](PyPlan& p, int in, int out, std::pair<int, int> kernel, std::pair<int, int> stride,
              std::pair<int, int> padding, const std::string& mode, int zero_point) {
             megq::Pool2dParams pp;
             if (mode == "max") {
               pp.mode = megq::PoolMode::kMax;
             } else if (mode == "average_count_exclude_padding") {
               pp.mode = megq::PoolMode::kAvgExcludePadding;
             } else if (mode == "average") {
               pp.mode = megq::PoolMode::kAvgIncludePadding;
             } else {
               throw py::value_error("mode: expected 'max', 'average_count_exclude_padding' or 'average', got '" +
                                     mode + "'");
             }
             std::tie(pp.kh, pp.kw) = kernel;
             std::tie(pp.stride_h, pp.stride_w) = stride;
             std::tie(pp.pad_h, pp.pad_w) = padding;
             p.plan.add_pool(in, out, pp, zero_point);
           },
           py::arg("x"), py::arg("out"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
           py::arg("mode"), py::arg("zero_point") = 0)
      .def("add_global_avg_pool", [](PyPlan& p, int in, int out) { p.plan.add_global_avg_pool(in, out); },
           py::arg("x"), py::arg("out"))
      .def("add_concat",
           [](PyPlan& p, const std::vector<int>& ins, const std::vector<float>& scales,
              const std::vector<int32_t>& zero_points, int out, float out_scale, int out_zero_point) {
             p.plan.add_concat(ins, scales, zero_points, out, out_scale, out_zero_point);
           },
           py::arg("inputs"), py::arg("scales"), py::arg("zero_points"), py::arg("out"), py::arg("out_scale"),
           py::arg("out_zero_point"))
      .def("add_clamp", [](PyPlan& p, int in, int out, int lo, int hi) { p.plan.add_clamp(in, out, lo, hi); },
           py::arg("x"), py::arg("out"), py::arg("lo"), py::arg("hi"))
      .def("add_flatten", [](PyPlan& p, int in, int out) { p.plan.add_flatten(in, out); }, py::arg("x"),
           py::arg("out"))
      .def("add_dequantize",
           [](PyPlan& p, int in, float scale, int zero_point) { return p.plan.add_dequantize(in, scale, zero_point); },
           py::arg("q"), py::arg("scale"), py::arg("zero_point"))
      .def("add_quantized_output", [](PyPlan& p, int t) { return p.plan.add_quantized_output(t); }, py::arg("t"))
      .def("finalize", &PyPlan::finalize)
      .def("run", &PyPlan::run, py::arg("inputs"), py::arg("profile") = false, py::arg("split") = "auto",
           py::arg("chunk") = 0,
           "Runs every step (GIL released); returns the outputs: float32 NCHW arrays for dequantized outputs, "
           "NHWC int8/uint8 arrays for quantized ones. profile=True returns (outputs, [(step name, seconds)]) "
           "from a layer-split run. split: 'auto', 'layer' (each kernel splits its layer over the threads) or "
           "'batch' (threads run slices of whole images); chunk: images run through all the steps at a time "
           "(0 picks). Every split gives the same bytes.")
      .def_property_readonly("splittable", [](const PyPlan& p) { return p.plan.splittable(); })
      .def_property_readonly("arena_bytes", [](const PyPlan& p) { return p.plan.arena_bytes(); })
      .def_property_readonly("num_steps", [](const PyPlan& p) { return p.plan.num_steps(); })
      .def_property_readonly("num_tensors", [](const PyPlan& p) { return p.plan.num_tensors(); });
}

}  // namespace megq_python
