// embedding.cpp: _core bindings of the embedding family (csrc/cpu/embedding.*): the row gather
// y = weight[indices] and its deterministic scatter-add gradient, each with its plain-loop
// oracle.
//
// Outputs first, then inputs, then scalars (the pinned extension API; fastdl._cuda has the same
// names and positional arguments). indices int64 (M,) (fastdl.ops flattens and converts),
// weight / dweight (V, D), y / dy (M, D), one float dtype, all C-contiguous. An index outside
// [0, V) is found by the kernel and raised as ValueError naming `indices`, its position, its
// value and V. Checks: bindings/args.h, embedding section.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/embedding.h"

namespace fastdl::bindings {

namespace {

void embedding_forward_py(const py::array& y_arr, const py::array& indices_arr,
                          const py::array& weight_arr, bool reference) {
  const ArrayView y = view_of(y_arr, "y"), indices = view_of(indices_arr, "indices"),
                  weight = view_of(weight_arr, "weight");
  const EmbeddingDims d = check_embedding(y, indices, weight, false);
  const int64_t* idx = indices.data<int64_t>();
  dispatch_float(y, [&](auto zero) {
    using T = decltype(zero);
    T* out = y.mutable_data<T>();
    const T* w = weight.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::embedding_forward_reference(out, idx, w, d.m, d.v, d.d);
    else
      fastdl::embedding_forward(out, idx, w, d.m, d.v, d.d);
    return 0;
  });
}

void embedding_backward_py(const py::array& dweight_arr, const py::array& dy_arr,
                           const py::array& indices_arr, int64_t padding_idx, bool reference) {
  const ArrayView dweight = view_of(dweight_arr, "dweight"), dy = view_of(dy_arr, "dy"),
                  indices = view_of(indices_arr, "indices");
  const EmbeddingDims d = check_embedding(dy, indices, dweight, true);
  check_padding_idx(padding_idx, d.v);
  const int64_t* idx = indices.data<int64_t>();
  dispatch_float(dweight, [&](auto zero) {
    using T = decltype(zero);
    T* dw = dweight.mutable_data<T>();
    const T* g = dy.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::embedding_backward_reference(dw, g, idx, padding_idx, d.m, d.v, d.d);
    else
      fastdl::embedding_backward(dw, g, idx, padding_idx, d.m, d.v, d.d);
    return 0;
  });
}

}  // namespace

void bind_embedding(py::module_& m) {
  m.def(
      "embedding_forward",
      [](const py::array& y, const py::array& indices, const py::array& weight) {
        embedding_forward_py(y, indices, weight, false);
      },
      py::arg("y").noconvert(), py::arg("indices").noconvert(), py::arg("weight").noconvert(),
      R"pbdoc(y (M, D) = weight (V, D)[indices]; indices int64 (M,), each in [0, V) (ValueError
naming the first bad one otherwise). Rows copied in parallel.)pbdoc");
  m.def(
      "embedding_forward_reference",
      [](const py::array& y, const py::array& indices, const py::array& weight) {
        embedding_forward_py(y, indices, weight, true);
      },
      py::arg("y").noconvert(), py::arg("indices").noconvert(), py::arg("weight").noconvert(),
      "Plain-loop oracle for embedding_forward.");
  m.def(
      "embedding_backward",
      [](const py::array& dweight, const py::array& dy, const py::array& indices,
         int64_t padding_idx) { embedding_backward_py(dweight, dy, indices, padding_idx, false); },
      py::arg("dweight").noconvert(), py::arg("dy").noconvert(), py::arg("indices").noconvert(),
      py::arg("padding_idx"),
      R"pbdoc(dweight (V, D) = 0, then dweight[indices[m]] += dy[m] for m in order (repeated
indices accumulate); row padding_idx (-1: none) stays zero. No atomics: threads own disjoint
tiles of dweight, so the result is bitwise the same for any thread count.)pbdoc");
  m.def(
      "embedding_backward_reference",
      [](const py::array& dweight, const py::array& dy, const py::array& indices,
         int64_t padding_idx) { embedding_backward_py(dweight, dy, indices, padding_idx, true); },
      py::arg("dweight").noconvert(), py::arg("dy").noconvert(), py::arg("indices").noconvert(),
      py::arg("padding_idx"), "Plain-loop oracle for embedding_backward.");
}

}  // namespace fastdl::bindings
