// elementwise.cpp: _cuda bindings of the element-wise family (csrc/cuda/elementwise.*): bias_add.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/elementwise.cuh"

namespace fastdl::bindings {

namespace {

// out = x + b broadcast along `axis` of x
void bias_add_py(const py::handle& out_obj, const py::handle& x_obj, const py::handle& b_obj,
                 int axis, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView x = cuda_view(x_obj, "x");
  const ArrayView b = cuda_view(b_obj, "b");
  const BiasAddDims d = check_bias_add(out, x, b, axis);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x, &b});
  fastdl::cuda::bias_add(out.mutable_data<float>(), x.data<float>(), b.data<float>(), d.outer,
                         d.c, d.inner, as_stream(stream));
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("bias_add", &bias_add_py, py::arg("out"), py::arg("x"), py::arg("b"), py::arg("axis") = 1,
        py::kw_only(), py::arg("stream") = 0,
        "out = x + b, b (x.shape[axis],) broadcast along `axis`; all C-contiguous float32.");
}

}  // namespace fastdl::bindings
