// cuda.cpp: the module file of fastdl._cuda, the CUDA kernels. Each family binds its functions
// in csrc/bindings/cuda/<family>.cpp (declared in cuda/families.h) with the argument checks of
// bindings/args.h; this file holds the module-level helpers and calls one bind_<family> each.
//
// Functions are flat and verb-named with the same contract as their _core twins; outputs come
// first and are allocated by the Python layer (fastdl.ops), which also does the user-facing
// validation. Arrays arrive as any object exposing __cuda_array_interface__ (CuPy arrays):
// shape, typestr, data = (pointer, read-only flag) and strides (in bytes, or None for C order).
// The checks in the binding files are the last line of defence for direct callers, never a crash:
//   - not a CUDA array, or a dtype other than float32     -> TypeError
//   - wrong rank or shape                                 -> ValueError naming both shapes
//   - output not C-contiguous -> TypeError; read-only     -> ValueError (as on the CPU)
//   - an array that is not GPU memory of the current device -> ValueError (a kernel would fault)
// Inputs may be strided views (element strides reach the kernels). Kernels are launched on
// `stream` (fastdl.ops passes CuPy's current stream as an int) with the GIL released, and run
// asynchronously: the interface's own "stream" entry is not synchronised with, since producer
// and kernel share CuPy's current stream. A launch error raises RuntimeError at once; a fault
// inside a kernel surfaces at the next synchronisation.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <initializer_list>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "bindings/exceptions.h"
#include "common/check.h"
#include "cuda/common.cuh"

namespace py = pybind11;

namespace fastdl::bindings {

void check_on_current_device(std::initializer_list<const ArrayView*> arrays) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  for (const ArrayView* a : arrays) {
    if (a == nullptr || a->size == 0) continue;
    cudaPointerAttributes attr{};
    CUDA_CHECK(cudaPointerGetAttributes(&attr, a->ptr));
    FASTDL_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged,
                 ValueError, a->name, ": data pointer is not GPU memory");
    FASTDL_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device, ValueError,
                 a->name, ": lives on CUDA device ", attr.device, " but the current device is ",
                 device, " (use `with cupy.cuda.Device(", attr.device, "):`)");
  }
}

}  // namespace fastdl::bindings

namespace {

// Visible devices; 0 when there is no driver or no GPU (the error is cleared, never raised).
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace

PYBIND11_MODULE(_cuda, m, py::mod_gil_not_used()) {
  namespace fb = fastdl::bindings;
  m.doc() = "fastdl CUDA kernels (float32, CuPy arrays). Use fastdl.ops, not this module directly.";

  fb::register_exception_translators();

  m.def("device_count", &device_count, py::call_guard<py::gil_scoped_release>(),
        "Number of visible CUDA devices; 0 when there is no driver or GPU (never raises).");

  fb::bind_dense(m);
  fb::bind_activation(m);
  fb::bind_softmax(m);
  fb::bind_loss(m);
  fb::bind_dropout(m);
  fb::bind_elementwise(m);
  fb::bind_optim(m);
  fb::bind_conv(m);
  fb::bind_pool(m);
  fb::bind_norm(m);
  fb::bind_embedding(m);
  fb::bind_rnn(m);
}
