// loss.cpp: _cuda bindings of the loss family (csrc/cuda/loss.*): the fused softmax +
// cross-entropy, mse and bce_with_logits; forwards return the mean loss as a Python float, so
// they synchronise the stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/loss.cuh"

namespace fastdl::bindings {

namespace {

// target: int64 (N,) C-contiguous, N = probs' rows. Its VALUES are checked on the device.
ArrayView targets_for(const py::handle& target_obj, const ArrayView& probs) {
  check_ndim(probs, 2, 2);  // before target is read, as on the CPU
  const ArrayView t = cuda_view(target_obj, "target", kInt64);
  check_targets(probs, t);
  return t;
}

// probs = softmax(logits); returns the mean loss (synchronises the stream)
double cross_entropy_forward_py(const py::handle& probs_obj, const py::handle& logits_obj,
                                const py::handle& target_obj, std::uintptr_t stream) {
  const ArrayView probs = cuda_view(probs_obj, "probs");
  const ArrayView logits = cuda_view(logits_obj, "logits");
  check_output(probs);
  check_like(logits, probs);
  const ArrayView t = targets_for(target_obj, probs);
  check_batch(probs.shape[0], "cross_entropy");
  py::gil_scoped_release nogil;
  check_on_current_device({&probs, &logits, &t});
  return fastdl::cuda::cross_entropy_forward(probs.mutable_data<float>(), logits.data<float>(),
                                             t.data<int64_t>(), probs.shape[0], probs.shape[1],
                                             as_stream(stream));
}

void cross_entropy_backward_py(const py::handle& out_obj, const py::handle& probs_obj,
                               const py::handle& target_obj, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView probs = cuda_view(probs_obj, "probs");
  check_output(out);
  check_like(probs, out);
  const ArrayView t = targets_for(target_obj, out);
  check_batch(out.shape[0], "cross_entropy_backward");
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &probs, &t});
  fastdl::cuda::cross_entropy_backward(out.mutable_data<float>(), probs.data<float>(),
                                       t.data<int64_t>(), out.shape[0], out.shape[1],
                                       as_stream(stream));
}

// mean loss of (pred, target) for kind "mse" or "bce" (binary cross-entropy with logits)
double pointwise_loss_py(const std::string& kind, const py::handle& pred_obj,
                         const py::handle& target_obj, std::uintptr_t stream) {
  const ArrayView pred = cuda_view(pred_obj, kind == "mse" ? "pred" : "logits");
  const ArrayView target = cuda_view(target_obj, "target");
  check_contiguous(pred);
  check_like(target, pred);
  check_elements(pred.size, kind == "mse" ? "mse_loss" : "binary_cross_entropy_with_logits");
  py::gil_scoped_release nogil;
  check_on_current_device({&pred, &target});
  return kind == "mse" ? fastdl::cuda::mse_forward(pred.data<float>(), target.data<float>(),
                                                   pred.size, as_stream(stream))
                       : fastdl::cuda::bce_with_logits_forward(
                             pred.data<float>(), target.data<float>(), pred.size,
                             as_stream(stream));
}

void pointwise_loss_backward_py(const std::string& kind, const py::handle& out_obj,
                                const py::handle& pred_obj, const py::handle& target_obj,
                                std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView pred = cuda_view(pred_obj, kind == "mse" ? "pred" : "logits");
  const ArrayView target = cuda_view(target_obj, "target");
  check_output(out);
  check_like(pred, out);
  check_like(target, out);
  check_elements(out.size, kind == "mse" ? "mse_loss_backward"
                                         : "binary_cross_entropy_with_logits_backward");
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &pred, &target});
  if (kind == "mse")
    fastdl::cuda::mse_backward(out.mutable_data<float>(), pred.data<float>(),
                               target.data<float>(), out.size, as_stream(stream));
  else
    fastdl::cuda::bce_with_logits_backward(out.mutable_data<float>(), pred.data<float>(),
                                           target.data<float>(), out.size, as_stream(stream));
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("cross_entropy_forward", &cross_entropy_forward_py, py::arg("probs"), py::arg("logits"),
        py::arg("target"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Fused softmax + cross-entropy: fills probs (N, C) = softmax(logits) and returns the
mean loss over the N rows as a Python float (so it synchronises the stream). target is int64 (N,);
a value outside [0, C) raises ValueError naming the first bad row (checked on the device).)pbdoc");
  m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("out"), py::arg("probs"),
        py::arg("target"), py::kw_only(), py::arg("stream") = 0,
        "out (N, C) = (probs - onehot(target)) / N; checks target on the device (synchronises).");
  m.def(
      "mse_forward",
      [](py::object pred, py::object target, std::uintptr_t stream) {
        return pointwise_loss_py("mse", pred, target, stream);
      },
      py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "mean((pred - target)^2) as a Python float (accumulated in double; synchronises).");
  m.def(
      "mse_backward",
      [](py::object out, py::object pred, py::object target, std::uintptr_t stream) {
        pointwise_loss_backward_py("mse", out, pred, target, stream);
      },
      py::arg("out"), py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "out = 2 (pred - target) / numel.");
  m.def(
      "bce_with_logits_forward",
      [](py::object logits, py::object target, std::uintptr_t stream) {
        return pointwise_loss_py("bce", logits, target, stream);
      },
      py::arg("logits"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "mean(max(x, 0) - x t + log1p(exp(-|x|))) as a Python float (double; synchronises).");
  m.def(
      "bce_with_logits_backward",
      [](py::object out, py::object logits, py::object target, std::uintptr_t stream) {
        pointwise_loss_backward_py("bce", out, logits, target, stream);
      },
      py::arg("out"), py::arg("logits"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "out = (sigmoid(logits) - target) / numel.");
}

}  // namespace fastdl::bindings
