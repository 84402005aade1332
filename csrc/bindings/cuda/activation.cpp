// activation.cpp: _cuda bindings of the activation family (csrc/cuda/activation.*): relu,
// sigmoid and tanh, forward (with its one-thread-per-element oracle) and backward; gelu forward
// and backward (from the input x).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/activation.cuh"

namespace fastdl::bindings {

namespace {

fastdl::cuda::Activation activation_of(const std::string& name) {
  if (name == "relu") return fastdl::cuda::Activation::relu;
  if (name == "sigmoid") return fastdl::cuda::Activation::sigmoid;
  return fastdl::cuda::Activation::tanh;
}

// out = act(x)
void activation_forward_py(const std::string& act, const py::handle& out_obj,
                           const py::handle& x_obj, std::uintptr_t stream, bool reference) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView x = cuda_view(x_obj, "x");
  check_output(out);
  check_like(x, out);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  if (reference)
    fastdl::cuda::activation_forward_reference(activation_of(act), out.mutable_data<float>(),
                                               x.data<float>(), out.size, as_stream(stream));
  else
    fastdl::cuda::activation_forward(activation_of(act), out.mutable_data<float>(),
                                     x.data<float>(), out.size, as_stream(stream));
}

// out = dy * act'(x), from the forward output y
void activation_backward_py(const std::string& act, const py::handle& out_obj,
                            const py::handle& dy_obj, const py::handle& y_obj,
                            std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView dy = cuda_view(dy_obj, "dy");
  const ArrayView y = cuda_view(y_obj, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &y});
  fastdl::cuda::activation_backward(activation_of(act), out.mutable_data<float>(),
                                    dy.data<float>(), y.data<float>(), out.size,
                                    as_stream(stream));
}

// gelu: out = gelu(x) (dy None) or dy * gelu'(x).
void gelu_py(const py::handle& out_obj, const py::handle* dy_obj, const py::handle& x_obj,
             int approximate, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, dy_obj ? "dx" : "y");
  const ArrayView x = cuda_view(x_obj, "x");
  const ArrayView dy = dy_obj ? cuda_view(*dy_obj, "dy") : ArrayView{};
  check_output(out);
  if (dy_obj) check_like(dy, out);
  check_like(x, out);
  check_gelu_approximate(approximate);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  if (dy_obj) {
    check_on_current_device({&out, &dy, &x});
    fastdl::cuda::gelu_backward(out.mutable_data<float>(), dy.data<float>(), x.data<float>(),
                                out.size, approximate, as_stream(stream));
  } else {
    check_on_current_device({&out, &x});
    fastdl::cuda::gelu_forward(out.mutable_data<float>(), x.data<float>(), out.size, approximate,
                               as_stream(stream));
  }
}

}  // namespace

void bind_activation(py::module_& m) {
  for (const char* act : {"relu", "sigmoid", "tanh"}) {
    const std::string a = act;
    m.def((a + "_forward").c_str(),
          [a](py::object out, py::object x, std::uintptr_t stream) {
            activation_forward_py(a, out, x, stream, false);
          },
          py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
          ("out = " + a + "(x), element-wise; out and x C-contiguous float32 of one shape.").c_str());
    m.def((a + "_forward_reference").c_str(),
          [a](py::object out, py::object x, std::uintptr_t stream) {
            activation_forward_py(a, out, x, stream, true);
          },
          py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
          ("One thread per element, scalar loads: the oracle for " + a + "_forward.").c_str());
    m.def((a + "_backward").c_str(),
          [a](py::object out, py::object dy, py::object y, std::uintptr_t stream) {
            activation_backward_py(a, out, dy, y, stream);
          },
          py::arg("out"), py::arg("dy"), py::arg("y"), py::kw_only(), py::arg("stream") = 0,
          ("out = dy * " + a + "'(x), computed from the forward output y.").c_str());
  }
  m.def(
      "gelu_forward",
      [](py::object y, py::object x, int approximate, std::uintptr_t stream) {
        gelu_py(y, nullptr, x, approximate, stream);
      },
      py::arg("y"), py::arg("x"), py::arg("approximate"), py::kw_only(), py::arg("stream") = 0,
      "y = gelu(x) element-wise (approximate 0 = exact, 1 = tanh form); float32 CUDA arrays.");
  m.def(
      "gelu_backward",
      [](py::object dx, py::object dy, py::object x, int approximate, std::uintptr_t stream) {
        gelu_py(dx, &dy, x, approximate, stream);
      },
      py::arg("dx"), py::arg("dy"), py::arg("x"), py::arg("approximate"), py::kw_only(),
      py::arg("stream") = 0, "dx = dy * gelu'(x), from the forward INPUT x.");
}

}  // namespace fastdl::bindings
