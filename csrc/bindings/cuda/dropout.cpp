// dropout.cpp: _cuda bindings of the dropout family (csrc/cuda/dropout.*): inverted dropout
// with the CPU's counter-based mask, forward (with its one-thread-per-element oracle) and
// backward.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/dropout.cuh"

namespace fastdl::bindings {

namespace {

void dropout_forward_py(const py::handle& out_obj, const py::handle& mask_obj,
                        const py::handle& x_obj, double p, uint64_t seed, std::uintptr_t stream,
                        bool reference) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView mask = cuda_view(mask_obj, "mask", kUint8);
  const ArrayView x = cuda_view(x_obj, "x");
  check_output(out);
  check_output(mask);
  check_like(x, out);
  check_shape(mask, out);
  check_p(p);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &mask, &x});
  auto* m = mask.mutable_data<uint8_t>();
  if (reference)
    fastdl::cuda::dropout_forward_reference(out.mutable_data<float>(), m, x.data<float>(),
                                            out.size, p, seed, as_stream(stream));
  else
    fastdl::cuda::dropout_forward(out.mutable_data<float>(), m, x.data<float>(), out.size, p,
                                  seed, as_stream(stream));
}

void dropout_backward_py(const py::handle& out_obj, const py::handle& dy_obj,
                         const py::handle& mask_obj, double p, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView dy = cuda_view(dy_obj, "dy");
  const ArrayView mask = cuda_view(mask_obj, "mask", kUint8);
  check_output(out);
  check_like(dy, out);
  check_shape(mask, out);
  check_contiguous(mask);
  check_p(p);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &mask});
  fastdl::cuda::dropout_backward(out.mutable_data<float>(), dy.data<float>(),
                                 mask.data<uint8_t>(), out.size, p, as_stream(stream));
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout_forward",
      [](py::object out, py::object mask, py::object x, double p, uint64_t seed,
         std::uintptr_t stream) { dropout_forward_py(out, mask, x, p, seed, stream, false); },
      py::arg("out"), py::arg("mask"), py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
      py::arg("stream") = 0,
      R"pbdoc(Inverted dropout: mask (uint8, 1 = kept) from a counter-based hash of (seed, index),
out = mask ? x / (1 - p) : 0. Bit-identical to the CPU kernel's mask and output for the same seed.)pbdoc");
  m.def(
      "dropout_forward_reference",
      [](py::object out, py::object mask, py::object x, double p, uint64_t seed,
         std::uintptr_t stream) { dropout_forward_py(out, mask, x, p, seed, stream, true); },
      py::arg("out"), py::arg("mask"), py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
      py::arg("stream") = 0, "One thread per element: the oracle for dropout_forward.");
  m.def("dropout_backward", &dropout_backward_py, py::arg("out"), py::arg("dy"), py::arg("mask"),
        py::arg("p"), py::kw_only(), py::arg("stream") = 0, "out = mask ? dy / (1 - p) : 0.");
}

}  // namespace fastdl::bindings
