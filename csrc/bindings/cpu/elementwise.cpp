// elementwise.cpp: _core bindings of the element-wise family (csrc/cpu/elementwise.*): bias_add.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/elementwise.h"

namespace fastdl::bindings {

namespace {

// out = x + b broadcast along `axis` of x
void bias_add_py(const py::array& out_arr, const py::array& x_arr, const py::array& b_arr,
                 int axis) {
  const ArrayView out = view_of(out_arr, "out"), x = view_of(x_arr, "x"), b = view_of(b_arr, "b");
  const BiasAddDims d = check_bias_add(out, x, b, axis);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* y = out.mutable_data<T>();
    const T* px = x.data<T>();
    const T* pb = b.data<T>();
    py::gil_scoped_release nogil;
    fastdl::bias_add(y, px, pb, d.outer, d.c, d.inner);
    return 0;
  });
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("bias_add", &bias_add_py, py::arg("out").noconvert(), py::arg("x").noconvert(),
        py::arg("b").noconvert(), py::arg("axis") = 1,
        "out = x + b, b (x.shape[axis],) broadcast along `axis`; all C-contiguous.");
}

}  // namespace fastdl::bindings
