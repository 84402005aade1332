// core.cpp: the module file of fastdl._core, the CPU kernels. Each family binds its functions in
// csrc/bindings/cpu/<family>.cpp (declared in cpu/families.h); this file holds the module-level
// helpers (ISA, threads, the output cache) and calls one bind_<family> per family.
//
// Functions are flat and verb-named; outputs come first and are allocated by the Python layer
// (fastdl.ops), which also does the user-facing validation. The checks in the binding files (one
// set, bindings/args.h) are the last line of defence for direct callers: wrong dtype ->
// TypeError, wrong shape -> ValueError, never a crash. Inputs may be strided views (element
// strides are passed to the kernels); outputs must be C-contiguous, writable and of the exact
// dtype. The GIL is released around every kernel. The exception: the dense fast paths (matmul,
// linear and their backward passes, see cpu/dense.cpp) allocate their outputs themselves and
// return None for what they do not take.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <new>
#include <vector>

#include "bindings/cpu/families.h"
#include "bindings/exceptions.h"
#include "common/check.h"
#include "common/cpu.h"
#include "common/memory.h"
#include "common/threading.h"

namespace py = pybind11;

namespace fastdl::bindings {

py::array cache_empty(const py::dtype& dt, const std::vector<py::ssize_t>& shape) {
  std::size_t bytes = std::size_t(dt.itemsize());
  for (const py::ssize_t d : shape) {
    FASTDL_CHECK(d >= 0, ValueError, "shape: negative dimension ", d);
    bytes *= std::size_t(d);
  }
  struct Block {
    void* p;
    std::size_t bytes;
  };
  void* p = fastdl::output_alloc(bytes);
  if (!p) throw std::bad_alloc();
  py::capsule owner(new Block{p, bytes}, [](void* b) {
    auto* block = static_cast<Block*>(b);
    fastdl::output_free(block->p, block->bytes);
    delete block;
  });
  return py::array(dt, shape, p, owner);
}

}  // namespace fastdl::bindings

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  namespace fb = fastdl::bindings;
  m.doc() = "fastdl CPU kernels (C++, SIMD + OpenMP). Use fastdl.ops, not this module directly.";

  fb::register_exception_translators();

#ifdef FASTDL_VERSION
  m.attr("__version__") = FASTDL_VERSION;
#endif

  m.def("cpu_isa", [] { return fastdl::isa_name(fastdl::cpu_isa()); },
        "The ISA the kernels use: generic, avx2 or avx512 (capped by FASTDL_CPU_ISA).");
  m.def("cpu_isa_supported", [] { return fastdl::isa_name(fastdl::cpu_isa_supported()); },
        "The best ISA this processor supports.");
  m.def(
      "empty",
      [](const std::vector<py::ssize_t>& shape, const py::object& dtype) {
        return fb::cache_empty(py::dtype::from_args(dtype), shape);
      },
      py::arg("shape"), py::arg("dtype"),
      "An uninitialised array backed by fastdl's output cache (what the CPU ops return): its "
      "memory is kept for the next array of that size instead of going back to the system.");
  m.def("empty_cache", &fastdl::output_empty_cache,
        "Return every block the output cache holds to the system.");
  m.def("cache_bytes", &fastdl::output_cached_bytes,
        "Bytes the output cache holds for reuse (at most FASTDL_CACHE_MB MiB, default 256).");
  m.def("get_num_threads", &fastdl::get_num_threads, "Threads used by fastdl's CPU kernels.");
  m.def("set_num_threads", &fastdl::set_num_threads, py::arg("n"),
        "Set the threads used by fastdl's CPU kernels (n >= 1).");

  fb::bind_dense(m);
  fb::bind_activation(m);
  fb::bind_softmax(m);
  fb::bind_loss(m);
  fb::bind_dropout(m);
  fb::bind_elementwise(m);
  fb::bind_optim(m);
  fb::bind_pool(m);
  fb::bind_norm(m);
  fb::bind_conv(m);
  fb::bind_embedding(m);
  fb::bind_rnn(m);
  fb::bind_attention(m);  // attention (issue 11)
}
