// bindings/cuda/embedding.cpp: the embedding family of fastdl._cuda (embedding_forward,
// embedding_backward), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// indices int64 (M,), weight / dweight (V, D) and y / dy (M, D) float32, all C-contiguous CUDA
// arrays. The shape checks are bindings/args.h's embedding section (the CPU binding's too); the
// index VALUES are checked by the kernels on the device, and a bad one raises ValueError after
// one synchronising copy (cuda/embedding.cu).
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/embedding.cuh"

namespace fastdl::bindings {
namespace {

void embedding_forward_py(const py::handle& y_obj, const py::handle& indices_obj,
                          const py::handle& weight_obj, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), indices = cuda_view(indices_obj, "indices", kInt64),
                  weight = cuda_view(weight_obj, "weight");
  const EmbeddingDims d = check_embedding(y, indices, weight, false);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &indices, &weight});
  cuda::embedding_forward(y.mutable_data<float>(), indices.data<int64_t>(), weight.data<float>(),
                          d.m, d.v, d.d, as_stream(stream));
}

void embedding_backward_py(const py::handle& dweight_obj, const py::handle& dy_obj,
                           const py::handle& indices_obj, int64_t padding_idx,
                           std::uintptr_t stream) {
  const ArrayView dweight = cuda_view(dweight_obj, "dweight"), dy = cuda_view(dy_obj, "dy"),
                  indices = cuda_view(indices_obj, "indices", kInt64);
  const EmbeddingDims d = check_embedding(dy, indices, dweight, true);
  check_padding_idx(padding_idx, d.v);
  py::gil_scoped_release nogil;
  check_on_current_device({&dweight, &dy, &indices});
  cuda::embedding_backward(dweight.mutable_data<float>(), dy.data<float>(),
                           indices.data<int64_t>(), padding_idx, d.m, d.v, d.d,
                           as_stream(stream));
}

}  // namespace

void bind_embedding(py::module_& m) {
  m.def("embedding_forward", &embedding_forward_py, py::arg("y"), py::arg("indices"),
        py::arg("weight"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(y (M, D) = weight (V, D)[indices] on the GPU; indices int64 (M,), each in [0, V)
(checked on the device: ValueError naming the first bad one, after a synchronisation).)pbdoc");
  m.def("embedding_backward", &embedding_backward_py, py::arg("dweight"), py::arg("dy"),
        py::arg("indices"), py::arg("padding_idx"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(dweight (V, D) = 0, then dweight[indices[m]] += dy[m] in index order on the GPU;
row padding_idx (-1: none) stays zero. Deterministic (no floating-point atomics).)pbdoc");
}

}  // namespace fastdl::bindings
