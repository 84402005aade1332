// softmax.cpp: _cuda bindings of the softmax family (csrc/cuda/softmax.*): softmax and
// log_softmax along the last axis, forward (with its one-thread-per-row oracle) and backward.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/softmax.cuh"

namespace fastdl::bindings {

namespace {

void softmax_forward_py(const py::handle& out_obj, const py::handle& x_obj, bool log,
                        std::uintptr_t stream, bool reference) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView x = cuda_view(x_obj, "x");
  check_output(out);
  check_like(x, out);
  const auto [rows, n] = rows_cols(out);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  if (reference)
    fastdl::cuda::softmax_forward_reference(out.mutable_data<float>(), x.data<float>(), rows, n,
                                            log, as_stream(stream));
  else
    fastdl::cuda::softmax_forward(out.mutable_data<float>(), x.data<float>(), rows, n, log,
                                  as_stream(stream));
}

void softmax_backward_py(const py::handle& out_obj, const py::handle& dy_obj,
                         const py::handle& y_obj, bool log, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView dy = cuda_view(dy_obj, "dy");
  const ArrayView y = cuda_view(y_obj, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  const auto [rows, n] = rows_cols(out);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &y});
  fastdl::cuda::softmax_backward(out.mutable_data<float>(), dy.data<float>(), y.data<float>(),
                                 rows, n, log, as_stream(stream));
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def(
      "softmax_forward",
      [](py::object out, py::object x, bool log, std::uintptr_t stream) {
        softmax_forward_py(out, x, log, stream, false);
      },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
      R"pbdoc(out = softmax(x) (or log_softmax with log=True) along the LAST axis, on the GPU.

x and out C-contiguous float32 of one shape. A row that is all -inf gives zeros (log: -inf).)pbdoc");
  m.def(
      "softmax_forward_reference",
      [](py::object out, py::object x, bool log, std::uintptr_t stream) {
        softmax_forward_py(out, x, log, stream, true);
      },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
      "One thread per row, plain loops: the oracle for softmax_forward.");
  m.def("softmax_backward", &softmax_backward_py, py::arg("out"), py::arg("dy"), py::arg("y"),
        py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
        "out = dx of softmax (y * (dy - sum(dy * y))) or log_softmax (dy - exp(y) * sum(dy)) "
        "along the last axis, from the forward output y.");
}

}  // namespace fastdl::bindings
