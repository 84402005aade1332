// families.h: the binding files of the _core module, one per kernel family (csrc/cpu/<family>),
// and the helpers they share with the module file core.cpp. See bindings/args.h for how a family
// adds its file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/args.h"
#include "common/cpu.h"

namespace fastdl::bindings {

namespace py = pybind11;

void bind_dense(py::module_& m);       // gemm, matmul, linear (+ their fast paths), sum_rows
void bind_activation(py::module_& m);  // relu, sigmoid, tanh
void bind_softmax(py::module_& m);     // softmax, log_softmax
void bind_loss(py::module_& m);        // cross_entropy, mse, bce_with_logits
void bind_dropout(py::module_& m);
void bind_elementwise(py::module_& m);  // bias_add
void bind_optim(py::module_& m);       // optimizer steps, gradient norms and clipping
void bind_pool(py::module_& m);        // max / avg / adaptive-avg pool2d
void bind_norm(py::module_& m);        // batch_norm
void bind_conv(py::module_& m);        // conv2d forward, backward-data, backward-weight
void bind_embedding(py::module_& m);   // embedding gather and scatter-add gradient
void bind_rnn(py::module_& m);         // rnn_cell, lstm_cell, lstm (whole sequence)
void bind_attention(py::module_& m);   // scaled dot-product attention, forward and backward

// The `isa=` argument of the kernels: a name forces that ISA (capped at what the CPU supports),
// None the one chosen at import.
inline fastdl::Isa isa_arg(const std::optional<std::string>& isa) {
  return isa ? fastdl::isa_from_name(*isa) : fastdl::cpu_isa();
}

// An uninitialised C-contiguous array whose memory comes from the output cache (common/memory.h)
// and returns to it when the array (and every view of it) is gone. Defined in core.cpp.
py::array cache_empty(const py::dtype& dt, const std::vector<py::ssize_t>& shape);

// The view of an optional array argument (None: absent), and a pointer to it for the checks.
struct OptionalView {
  ArrayView view;
  bool present;
  OptionalView(const std::optional<py::array>& a, const char* name)
      : view(a ? view_of(*a, name) : ArrayView{}), present(bool(a)) {}
  const ArrayView* get() const { return present ? &view : nullptr; }
  template <typename T>
  T* data() const { return present ? view.mutable_data<T>() : nullptr; }
};

}  // namespace fastdl::bindings
