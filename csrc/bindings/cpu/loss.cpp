// loss.cpp: _core bindings of the loss family (csrc/cpu/loss.*): the fused softmax +
// cross-entropy, mse and bce_with_logits; forwards return the mean loss as a Python float.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/loss.h"

namespace fastdl::bindings {

namespace {

// target's values: each in [0, C), checked on the host before any kernel reads them.
void check_target_values(const int64_t* t, int64_t n, int64_t c) {
  const int64_t bad = fastdl::first_bad_target(t, n, c);
  FASTDL_CHECK(bad < 0, ValueError, "target: target[", bad, "] = ", t[bad],
               " is out of range [0, C) with C = ", c);
}

// probs = softmax(logits); returns the mean loss
double cross_entropy_forward_py(const py::array& probs_arr, const py::array& logits_arr,
                                const py::array& target_arr,
                                const std::optional<std::string>& isa, bool reference) {
  const ArrayView probs = view_of(probs_arr, "probs"), logits = view_of(logits_arr, "logits"),
                  target = view_of(target_arr, "target");
  check_output(probs);
  check_like(logits, probs);
  check_targets(probs, target);
  const int64_t n = probs.shape[0], c = probs.shape[1];
  check_batch(n, "cross_entropy");
  const int64_t* t = target.data<int64_t>();
  check_target_values(t, n, c);
  const fastdl::Isa chosen = isa_arg(isa);
  return dispatch_float(probs, [&](auto zero) {
    using T = decltype(zero);
    T* p = probs.mutable_data<T>();
    const T* x = logits.data<T>();
    py::gil_scoped_release nogil;
    return double(reference ? fastdl::cross_entropy_forward_reference(p, x, t, n, c)
                            : fastdl::cross_entropy_forward(p, x, t, n, c, chosen));
  });
}

void cross_entropy_backward_py(const py::array& out_arr, const py::array& probs_arr,
                               const py::array& target_arr) {
  const ArrayView out = view_of(out_arr, "out"), probs = view_of(probs_arr, "probs"),
                  target = view_of(target_arr, "target");
  check_output(out);
  check_like(probs, out);
  check_targets(out, target);
  const int64_t n = out.shape[0], c = out.shape[1];
  check_batch(n, "cross_entropy_backward");
  const int64_t* t = target.data<int64_t>();
  check_target_values(t, n, c);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* d = out.mutable_data<T>();
    const T* p = probs.data<T>();
    py::gil_scoped_release nogil;
    fastdl::cross_entropy_backward(d, p, t, n, c);
    return 0;
  });
}

// mean loss of (pred, target) for kind "mse" or "bce" (binary cross-entropy with logits)
double pointwise_loss_py(const std::string& kind, const py::array& pred_arr,
                         const py::array& target_arr) {
  const ArrayView pred = view_of(pred_arr, "pred"), target = view_of(target_arr, "target");
  check_contiguous(pred);
  check_like(target, pred);
  check_elements(pred.size, kind == "mse" ? "mse_loss" : "binary_cross_entropy_with_logits");
  return dispatch_float(pred, [&](auto zero) {
    using T = decltype(zero);
    const T* p = pred.data<T>();
    const T* t = target.data<T>();
    const int64_t n = pred.size;
    py::gil_scoped_release nogil;
    return double(kind == "mse" ? fastdl::mse_forward(p, t, n) : fastdl::bce_with_logits_forward(p, t, n));
  });
}

void pointwise_loss_backward_py(const std::string& kind, const py::array& out_arr,
                                const py::array& pred_arr, const py::array& target_arr,
                                const std::optional<std::string>& isa) {
  const ArrayView out = view_of(out_arr, "out"), pred = view_of(pred_arr, "pred"),
                  target = view_of(target_arr, "target");
  check_output(out);
  check_like(pred, out);
  check_like(target, out);
  check_elements(out.size, kind == "mse" ? "mse_loss_backward"
                                         : "binary_cross_entropy_with_logits_backward");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* d = out.mutable_data<T>();
    const T* p = pred.data<T>();
    const T* t = target.data<T>();
    const int64_t n = out.size;
    py::gil_scoped_release nogil;
    if (kind == "mse")
      fastdl::mse_backward(d, p, t, n);
    else
      fastdl::bce_with_logits_backward(d, p, t, n, chosen);
    return 0;
  });
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def(
      "cross_entropy_forward",
      [](py::array probs, py::array logits, py::array target, std::optional<std::string> isa) {
        return cross_entropy_forward_py(std::move(probs), std::move(logits), std::move(target),
                                        std::move(isa), false);
      },
      py::arg("probs").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Fused softmax + cross-entropy: fills probs (N, C) = softmax(logits) and returns the
mean loss over the N rows as a Python float. target is int64 (N,) with values in [0, C).)pbdoc");
  m.def(
      "cross_entropy_forward_reference",
      [](py::array probs, py::array logits, py::array target) {
        return cross_entropy_forward_py(std::move(probs), std::move(logits), std::move(target),
                                        std::nullopt, true);
      },
      py::arg("probs").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      "Plain-loop oracle for cross_entropy_forward.");
  m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("out").noconvert(),
        py::arg("probs").noconvert(), py::arg("target").noconvert(),
        "out (N, C) = (probs - onehot(target)) / N.");
  m.def(
      "mse_forward",
      [](py::array pred, py::array target) {
        return pointwise_loss_py("mse", std::move(pred), std::move(target));
      },
      py::arg("pred").noconvert(), py::arg("target").noconvert(),
      "mean((pred - target)^2) as a Python float (accumulated in double).");
  m.def(
      "mse_backward",
      [](py::array out, py::array pred, py::array target) {
        pointwise_loss_backward_py("mse", std::move(out), std::move(pred), std::move(target),
                                   std::nullopt);
      },
      py::arg("out").noconvert(), py::arg("pred").noconvert(), py::arg("target").noconvert(),
      "out = 2 (pred - target) / numel.");
  m.def(
      "bce_with_logits_forward",
      [](py::array logits, py::array target) {
        return pointwise_loss_py("bce", std::move(logits), std::move(target));
      },
      py::arg("logits").noconvert(), py::arg("target").noconvert(),
      "mean(max(x, 0) - x t + log1p(exp(-|x|))) as a Python float.");
  m.def(
      "bce_with_logits_backward",
      [](py::array out, py::array logits, py::array target, std::optional<std::string> isa) {
        pointwise_loss_backward_py("bce", std::move(out), std::move(logits), std::move(target),
                                   std::move(isa));
      },
      py::arg("out").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      py::kw_only(), py::arg("isa") = py::none(), "out = (sigmoid(logits) - target) / numel.");
}

}  // namespace fastdl::bindings
