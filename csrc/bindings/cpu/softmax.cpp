// softmax.cpp: _core bindings of the softmax family (csrc/cpu/softmax.*): softmax and
// log_softmax along the last axis, forward and backward, each with its plain-loop oracle.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/softmax.h"

namespace fastdl::bindings {

namespace {

void softmax_forward_py(const py::array& out_arr, const py::array& x_arr, bool log,
                        const std::optional<std::string>& isa, bool reference) {
  const ArrayView out = view_of(out_arr, "out"), x = view_of(x_arr, "x");
  check_output(out);
  check_like(x, out);
  const auto [rows, n] = rows_cols(out);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* y = out.mutable_data<T>();
    const T* px = x.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::softmax_forward_reference(y, px, rows, n, log);
    else
      fastdl::softmax_forward(y, px, rows, n, log, chosen);
    return 0;
  });
}

void softmax_backward_py(const py::array& out_arr, const py::array& dy_arr,
                         const py::array& y_arr, bool log, const std::optional<std::string>& isa,
                         bool reference) {
  const ArrayView out = view_of(out_arr, "out"), dy = view_of(dy_arr, "dy"),
                  y = view_of(y_arr, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  const auto [rows, n] = rows_cols(out);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* dx = out.mutable_data<T>();
    const T* pdy = dy.data<T>();
    const T* py_ = y.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::softmax_backward_reference(dx, pdy, py_, rows, n, log);
    else
      fastdl::softmax_backward(dx, pdy, py_, rows, n, log, chosen);
    return 0;
  });
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def(
      "softmax_forward",
      [](py::array out, py::array x, bool log, std::optional<std::string> isa) {
        softmax_forward_py(std::move(out), std::move(x), log, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("log") = false,
      py::arg("isa") = py::none(),
      R"pbdoc(out = softmax(x) (or log_softmax with log=True) along the LAST axis.

x and out C-contiguous, same shape and dtype. A row that is all -inf gives zeros (log: -inf).)pbdoc");
  m.def(
      "softmax_forward_reference",
      [](py::array out, py::array x, bool log) {
        softmax_forward_py(std::move(out), std::move(x), log, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("log") = false,
      "Plain-loop oracle for softmax_forward.");
  m.def(
      "softmax_backward",
      [](py::array out, py::array dy, py::array y, bool log, std::optional<std::string> isa) {
        softmax_backward_py(std::move(out), std::move(dy), std::move(y), log, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
      py::kw_only(), py::arg("log") = false, py::arg("isa") = py::none(),
      "out = dx of softmax (y * (dy - sum(dy * y))) or log_softmax (dy - exp(y) * sum(dy)) along "
      "the last axis, from the forward output y.");
  m.def(
      "softmax_backward_reference",
      [](py::array out, py::array dy, py::array y, bool log) {
        softmax_backward_py(std::move(out), std::move(dy), std::move(y), log, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
      py::kw_only(), py::arg("log") = false, "Plain-loop oracle for softmax_backward.");
}

}  // namespace fastdl::bindings
