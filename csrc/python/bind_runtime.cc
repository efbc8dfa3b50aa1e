// ISA selection, CPU features and threads.
#include "bindings.h"
#include "megq/gemm.h"
#include "megq/isa.h"
#include "megq/limits.h"
#include "megq/thread_pool.h"

namespace megq_python {

void register_runtime(py::module_& m) {
  m.def("cpu_features", [] {
    const megq::CpuFeatures& f = megq::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["avx512vnni"] = f.avx512vnni;
    d["neon"] = f.neon;
    d["neondot"] = f.neondot;
    return d;
  });
  m.def("built_isas", [] {
    py::list out;
    for (megq::Isa isa : {megq::Isa::kScalar, megq::Isa::kAvx2, megq::Isa::kAvx512Vnni, megq::Isa::kNeon,
                          megq::Isa::kNeonDot}) {
      if (megq::isa_built(isa)) out.append(megq::isa_name(isa));
    }
    return out;
  });
  m.def("usable_isas", [] {
    py::list out;
    for (megq::Isa isa : megq::usable_isas()) out.append(megq::isa_name(isa));
    return out;
  });
  m.def("best_isa", [] { return std::string(megq::isa_name(megq::best_isa())); });
  m.def("active_isa", [] { return std::string(megq::isa_name(megq::active_isa())); });
  m.def("set_active_isa", [](const std::string& name) {
    megq::Isa isa;
    if (!megq::parse_isa(name, &isa)) throw py::value_error("isa: unknown ISA name '" + name + "'");
    if (!megq::set_active_isa(isa)) throw py::value_error("isa: '" + name + "' is not usable on this CPU/build");
  });
  m.def("get_num_threads", &megq::get_num_threads);
  // Range-checked by megq::set_num_threads (1..kMaxThreads, ArgumentError).
  m.def("set_num_threads", [](int n) { megq::set_num_threads(n); }, py::arg("n"));
  m.attr("MAX_NUM_THREADS") = megq::kMaxThreads;
  m.attr("MAX_OUTPUT_BYTES") = megq::kMaxOutputBytes;
  m.attr("MAX_SAFE_K") = megq::kMaxSafeK;
  m.def(
      "run_peak_loop",
      [](const std::string& name, int64_t iterations) {
        megq::Isa isa;
        if (!megq::parse_isa(name, &isa)) throw py::value_error("isa: unknown ISA name '" + name + "'");
        py::gil_scoped_release release;
        return megq::run_peak_loop(isa, iterations);
      },
      py::arg("isa"), py::arg("iterations"));
}

}  // namespace megq_python
