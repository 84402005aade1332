// activation.cpp: _core bindings of the activation family (csrc/cpu/activation.*): relu, sigmoid
// and tanh, forward and backward (from the output), gelu forward and backward (from the input,
// approximate 0 = exact erf, 1 = tanh form), each with its plain-loop oracle.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/activation.h"

namespace fastdl::bindings {

namespace {

fastdl::Activation activation_of(const std::string& name) {
  if (name == "relu") return fastdl::Activation::relu;
  if (name == "sigmoid") return fastdl::Activation::sigmoid;
  return fastdl::Activation::tanh;
}

// out = act(x)
void activation_forward_py(const std::string& act, const py::array& out_arr,
                           const py::array& x_arr, const std::optional<std::string>& isa,
                           bool reference) {
  const ArrayView out = view_of(out_arr, "out"), x = view_of(x_arr, "x");
  check_output(out);
  check_like(x, out);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* y = out.mutable_data<T>();
    const T* px = x.data<T>();
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::activation_forward_reference(activation_of(act), y, px, n);
    else
      fastdl::activation_forward(activation_of(act), y, px, n, chosen);
    return 0;
  });
}

// out = dy * act'(x), from the forward output y
void activation_backward_py(const std::string& act, const py::array& out_arr,
                            const py::array& dy_arr, const py::array& y_arr,
                            const std::optional<std::string>& isa, bool reference) {
  const ArrayView out = view_of(out_arr, "out"), dy = view_of(dy_arr, "dy"),
                  y = view_of(y_arr, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* dx = out.mutable_data<T>();
    const T* pdy = dy.data<T>();
    const T* py_ = y.data<T>();
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::activation_backward_reference(activation_of(act), dx, pdy, py_, n);
    else
      fastdl::activation_backward(activation_of(act), dx, pdy, py_, n, chosen);
    return 0;
  });
}

// gelu: out = gelu(x) (dy null) or out = dy * gelu'(x).
void gelu_py(const py::array& out_arr, const py::array* dy_arr, const py::array& x_arr,
             int approximate, const std::optional<std::string>& isa, bool reference) {
  const ArrayView out = view_of(out_arr, dy_arr ? "dx" : "y"), x = view_of(x_arr, "x");
  const ArrayView dy = dy_arr ? view_of(*dy_arr, "dy") : ArrayView{};
  check_output(out);
  if (dy_arr) check_like(dy, out);
  check_like(x, out);
  check_gelu_approximate(approximate);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    const T* pdy = dy_arr ? dy.data<T>() : nullptr;
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    if (!pdy && reference) fastdl::gelu_forward_reference(po, px, n, approximate);
    else if (!pdy) fastdl::gelu_forward(po, px, n, approximate, chosen);
    else if (reference) fastdl::gelu_backward_reference(po, pdy, px, n, approximate);
    else fastdl::gelu_backward(po, pdy, px, n, approximate, chosen);
    return 0;
  });
}

}  // namespace

void bind_activation(py::module_& m) {
  for (const char* act : {"relu", "sigmoid", "tanh"}) {
    const std::string a = act;
    m.def((a + "_forward").c_str(),
          [a](py::array out, py::array x, std::optional<std::string> isa) {
            activation_forward_py(a, std::move(out), std::move(x), std::move(isa), false);
          },
          py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(),
          py::arg("isa") = py::none(),
          ("out = " + a + "(x), element-wise; out and x C-contiguous, same shape and dtype.").c_str());
    m.def((a + "_forward_reference").c_str(),
          [a](py::array out, py::array x) {
            activation_forward_py(a, std::move(out), std::move(x), std::nullopt, true);
          },
          py::arg("out").noconvert(), py::arg("x").noconvert(),
          ("Plain-loop oracle for " + a + "_forward (std::exp / std::tanh).").c_str());
    m.def((a + "_backward").c_str(),
          [a](py::array out, py::array dy, py::array y, std::optional<std::string> isa) {
            activation_backward_py(a, std::move(out), std::move(dy), std::move(y), std::move(isa), false);
          },
          py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
          py::kw_only(), py::arg("isa") = py::none(),
          ("out = dy * " + a + "'(x), computed from the forward output y.").c_str());
    m.def((a + "_backward_reference").c_str(),
          [a](py::array out, py::array dy, py::array y) {
            activation_backward_py(a, std::move(out), std::move(dy), std::move(y), std::nullopt, true);
          },
          py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
          ("Plain-loop oracle for " + a + "_backward.").c_str());
  }
  m.def(
      "gelu_forward",
      [](py::array y, py::array x, int approximate, std::optional<std::string> isa) {
        gelu_py(y, nullptr, x, approximate, isa, false);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(), py::arg("approximate"), py::kw_only(),
      py::arg("isa") = py::none(),
      R"pbdoc(y = gelu(x) element-wise: approximate 0 = x Phi(x) with the exact erf, 1 = PyTorch's
tanh form x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2. y and x C-contiguous, same shape and dtype.)pbdoc");
  m.def(
      "gelu_forward_reference",
      [](py::array y, py::array x, int approximate) {
        gelu_py(y, nullptr, x, approximate, std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(), py::arg("approximate"),
      "Plain-loop oracle (double, std::erfc / std::tanh) for gelu_forward.");
  m.def(
      "gelu_backward",
      [](py::array dx, py::array dy, py::array x, int approximate, std::optional<std::string> isa) {
        gelu_py(dx, &dy, x, approximate, isa, false);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("approximate"), py::kw_only(), py::arg("isa") = py::none(),
      "dx = dy * gelu'(x), from the forward INPUT x; approximate as gelu_forward.");
  m.def(
      "gelu_backward_reference",
      [](py::array dx, py::array dy, py::array x, int approximate) {
        gelu_py(dx, &dy, x, approximate, std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("approximate"), "Plain-loop oracle for gelu_backward.");
}

}  // namespace fastdl::bindings
