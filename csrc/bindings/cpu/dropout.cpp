// dropout.cpp: _core bindings of the dropout family (csrc/cpu/dropout.*): inverted dropout with
// a counter-based mask, forward (with its element-at-a-time oracle) and backward.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/dropout.h"

namespace fastdl::bindings {

namespace {

// mask: out's number of elements (the kernels read it flat)
void check_mask_size(const ArrayView& mask, const ArrayView& out) {
  FASTDL_CHECK(mask.size == out.size, ValueError, "mask: expected shape ", shape_str(out),
               ", got shape ", shape_str(mask));
}

void dropout_forward_py(const py::array& out_arr, const py::array& mask_arr,
                        const py::array& x_arr, double p, uint64_t seed,
                        const std::optional<std::string>& isa, bool reference) {
  const ArrayView out = view_of(out_arr, "out"), mask = view_of(mask_arr, "mask"),
                  x = view_of(x_arr, "x");
  check_output(out);
  check_output(mask);
  check_like(x, out);
  check_dtype(mask, kUint8);
  check_mask_size(mask, out);
  check_p(p);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* y = out.mutable_data<T>();
    uint8_t* m = mask.mutable_data<uint8_t>();
    const T* px = x.data<T>();
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::dropout_forward_reference(y, m, px, n, p, seed);
    else
      fastdl::dropout_forward(y, m, px, n, p, seed, chosen);
    return 0;
  });
}

void dropout_backward_py(const py::array& out_arr, const py::array& dy_arr,
                         const py::array& mask_arr, double p) {
  const ArrayView out = view_of(out_arr, "out"), dy = view_of(dy_arr, "dy"),
                  mask = view_of(mask_arr, "mask");
  check_output(out);
  check_like(dy, out);
  check_dtype(mask, kUint8);
  check_contiguous(mask);
  check_mask_size(mask, out);
  check_p(p);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* dx = out.mutable_data<T>();
    const T* g = dy.data<T>();
    const uint8_t* m = mask.data<uint8_t>();
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    fastdl::dropout_backward(dx, g, m, n, p);
    return 0;
  });
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout_forward",
      [](py::array out, py::array mask, py::array x, double p, uint64_t seed,
         std::optional<std::string> isa) {
        dropout_forward_py(std::move(out), std::move(mask), std::move(x), p, seed, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("x").noconvert(),
      py::arg("p"), py::arg("seed"), py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Inverted dropout: mask (uint8, 1 = kept) from a counter-based hash of (seed, index),
out = mask ? x / (1 - p) : 0. The same mask for every thread count and ISA.)pbdoc");
  m.def(
      "dropout_forward_reference",
      [](py::array out, py::array mask, py::array x, double p, uint64_t seed) {
        dropout_forward_py(std::move(out), std::move(mask), std::move(x), p, seed, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("x").noconvert(),
      py::arg("p"), py::arg("seed"), "Element-at-a-time oracle for dropout_forward.");
  m.def("dropout_backward", &dropout_backward_py, py::arg("out").noconvert(),
        py::arg("dy").noconvert(), py::arg("mask").noconvert(), py::arg("p"),
        "out = mask ? dy / (1 - p) : 0.");
}

}  // namespace fastdl::bindings
