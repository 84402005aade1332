// families.h: the binding files of the _cuda module, one per kernel family (csrc/cuda/<family>),
// and the helpers they share with the module file cuda.cpp. See bindings/args.h for how a family
// adds its file.
#pragma once

#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>

#include "bindings/args.h"

namespace fastdl::bindings {

namespace py = pybind11;

void bind_dense(py::module_& m);       // gemm, sum_rows
void bind_activation(py::module_& m);  // relu, sigmoid, tanh
void bind_softmax(py::module_& m);     // softmax, log_softmax
void bind_loss(py::module_& m);        // cross_entropy, mse, bce_with_logits
void bind_dropout(py::module_& m);
void bind_elementwise(py::module_& m);  // bias_add
void bind_optim(py::module_& m);       // optimizer steps, gradient clipping
void bind_conv(py::module_& m);        // conv2d forward, backward_data, backward_weight
void bind_pool(py::module_& m);        // max, avg, adaptive avg pool2d
void bind_norm(py::module_& m);        // batch_norm
void bind_embedding(py::module_& m);   // embedding gather and scatter-add gradient
void bind_rnn(py::module_& m);         // rnn_cell, lstm_cell, lstm (whole sequence)

// `stream=` as fastdl.ops passes it: CuPy's current stream as an int (0: the legacy default).
inline cudaStream_t as_stream(std::uintptr_t stream) {
  return reinterpret_cast<cudaStream_t>(stream);
}

// An optional float32 CUDA array argument: null (and `view` untouched) when obj is None, else
// cuda_view(obj, name) stored in `view` (shared by the norm and rnn bindings).
inline const ArrayView* optional_view(const py::handle& obj, const char* name, ArrayView& view) {
  if (obj.is_none()) return nullptr;
  view = cuda_view(obj, name);
  return &view;
}

template <class T>
T* data_or_null(const ArrayView* a) {
  return a ? a->mutable_data<T>() : nullptr;
}

// Every non-empty array (null entries skipped) must be device (or managed) memory of the current
// device: a kernel reading host memory or another GPU's memory would fault and poison the CUDA
// context. ValueError naming the array otherwise. Needs no GIL. Defined in cuda.cpp.
void check_on_current_device(std::initializer_list<const ArrayView*> arrays);

}  // namespace fastdl::bindings
