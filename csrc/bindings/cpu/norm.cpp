// norm.cpp: _core bindings of the norm family (csrc/cpu/norm.*): batch_norm and layer_norm,
// forward and backward, each with its plain-loop oracle.
//
// Outputs first, then inputs, then scalars, as the pinned extension API (the CUDA module has the
// same names and positional arguments). x, y, dy, dx are C-contiguous (N, C, L) arrays of one
// float dtype; per-channel vectors are (C,) of that dtype. Optional arrays are None. The running
// statistics are updated in place: they must already be C-contiguous, writable and of x's dtype
// (TypeError otherwise: a converted copy would be updated instead). Checks: bindings/args.h.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/norm.h"

namespace fastdl::bindings {

namespace {

void batch_norm_forward_py(const py::array& y_arr, const py::array& save_mean_arr,
                           const py::array& save_invstd_arr, const py::array& x_arr,
                           const std::optional<py::array>& weight_arr,
                           const std::optional<py::array>& bias_arr,
                           const std::optional<py::array>& running_mean_arr,
                           const std::optional<py::array>& running_var_arr, bool training,
                           double momentum, double eps, const std::optional<std::string>& isa,
                           bool reference) {
  const ArrayView y = view_of(y_arr, "y"), save_mean = view_of(save_mean_arr, "save_mean"),
                  save_invstd = view_of(save_invstd_arr, "save_invstd"), x = view_of(x_arr, "x");
  const OptionalView weight(weight_arr, "weight"), bias(bias_arr, "bias"),
      running_mean(running_mean_arr, "running_mean"), running_var(running_var_arr, "running_var");
  const NormDims d = check_batch_norm_forward(y, save_mean, save_invstd, x, weight.get(), bias.get(),
                                              running_mean.get(), running_var.get(), training,
                                              momentum, eps);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y, [&](auto zero) {
    using T = decltype(zero);
    T *py_ = y.mutable_data<T>(), *sm = save_mean.mutable_data<T>(), *si = save_invstd.mutable_data<T>();
    T *rm = running_mean.data<T>(), *rv = running_var.data<T>();
    const T *px = x.data<T>(), *w = weight.data<T>(), *b = bias.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      batch_norm_forward_reference(py_, sm, si, px, w, b, rm, rv, d.n, d.c, d.l, training,
                                   momentum, eps);
    else
      batch_norm_forward(py_, sm, si, px, w, b, rm, rv, d.n, d.c, d.l, training, momentum, eps,
                         chosen);
    return 0;
  });
}

void batch_norm_backward_py(const py::array& dx_arr, const py::array& dweight_arr,
                            const py::array& dbias_arr, const py::array& dy_arr,
                            const py::array& x_arr, const std::optional<py::array>& weight_arr,
                            const py::array& save_mean_arr, const py::array& save_invstd_arr,
                            bool training, const std::optional<std::string>& isa,
                            bool reference) {
  const ArrayView dx = view_of(dx_arr, "dx"), dweight = view_of(dweight_arr, "dweight"),
                  dbias = view_of(dbias_arr, "dbias"), dy = view_of(dy_arr, "dy"),
                  x = view_of(x_arr, "x"), save_mean = view_of(save_mean_arr, "save_mean"),
                  save_invstd = view_of(save_invstd_arr, "save_invstd");
  const OptionalView weight(weight_arr, "weight");
  const NormDims d =
      check_batch_norm_backward(dx, dweight, dbias, dy, x, weight.get(), save_mean, save_invstd);
  const Isa chosen = isa_arg(isa);
  dispatch_float(dx, [&](auto zero) {
    using T = decltype(zero);
    T *pdx = dx.mutable_data<T>(), *pdw = dweight.mutable_data<T>(), *pdb = dbias.mutable_data<T>();
    const T *pdy = dy.data<T>(), *px = x.data<T>(), *w = weight.data<T>();
    const T *sm = save_mean.data<T>(), *si = save_invstd.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      batch_norm_backward_reference(pdx, pdw, pdb, pdy, px, w, sm, si, d.n, d.c, d.l, training);
    else
      batch_norm_backward(pdx, pdw, pdb, pdy, px, w, sm, si, d.n, d.c, d.l, training, chosen);
    return 0;
  });
}

void layer_norm_forward_py(const py::array& y_arr, const py::array& mean_arr,
                           const py::array& rstd_arr, const py::array& x_arr,
                           const std::optional<py::array>& weight_arr,
                           const std::optional<py::array>& bias_arr, double eps,
                           const std::optional<std::string>& isa, bool reference) {
  const ArrayView y = view_of(y_arr, "y"), mean = view_of(mean_arr, "mean"),
                  rstd = view_of(rstd_arr, "rstd"), x = view_of(x_arr, "x");
  const OptionalView weight(weight_arr, "weight"), bias(bias_arr, "bias");
  const LayerNormDims d = check_layer_norm_forward(y, mean, rstd, x, weight.get(), bias.get(), eps);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y, [&](auto zero) {
    using T = decltype(zero);
    T *py_ = y.mutable_data<T>(), *pm = mean.mutable_data<T>(), *pr = rstd.mutable_data<T>();
    const T *px = x.data<T>(), *w = weight.data<T>(), *b = bias.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      layer_norm_forward_reference(py_, pm, pr, px, w, b, d.m, d.d, eps);
    else
      layer_norm_forward(py_, pm, pr, px, w, b, d.m, d.d, eps, chosen);
    return 0;
  });
}

void layer_norm_backward_py(const py::array& dx_arr, const py::array& dweight_arr,
                            const py::array& dbias_arr, const py::array& dy_arr,
                            const py::array& x_arr, const std::optional<py::array>& weight_arr,
                            const py::array& mean_arr, const py::array& rstd_arr,
                            const std::optional<std::string>& isa, bool reference) {
  const ArrayView dx = view_of(dx_arr, "dx"), dweight = view_of(dweight_arr, "dweight"),
                  dbias = view_of(dbias_arr, "dbias"), dy = view_of(dy_arr, "dy"),
                  x = view_of(x_arr, "x"), mean = view_of(mean_arr, "mean"),
                  rstd = view_of(rstd_arr, "rstd");
  const OptionalView weight(weight_arr, "weight");
  const LayerNormDims d =
      check_layer_norm_backward(dx, dweight, dbias, dy, x, weight.get(), mean, rstd);
  const Isa chosen = isa_arg(isa);
  dispatch_float(dx, [&](auto zero) {
    using T = decltype(zero);
    T *pdx = dx.mutable_data<T>(), *pdw = dweight.mutable_data<T>(), *pdb = dbias.mutable_data<T>();
    const T *pdy = dy.data<T>(), *px = x.data<T>(), *w = weight.data<T>();
    const T *pm = mean.data<T>(), *pr = rstd.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      layer_norm_backward_reference(pdx, pdw, pdb, pdy, px, w, pm, pr, d.m, d.d);
    else
      layer_norm_backward(pdx, pdw, pdb, pdy, px, w, pm, pr, d.m, d.d, chosen);
    return 0;
  });
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def(
      "batch_norm_forward",
      [](py::array y, py::array save_mean, py::array save_invstd, py::array x,
         std::optional<py::array> weight, std::optional<py::array> bias,
         std::optional<py::array> running_mean, std::optional<py::array> running_var,
         bool training, double momentum, double eps, std::optional<std::string> isa) {
        batch_norm_forward_py(std::move(y), std::move(save_mean), std::move(save_invstd),
                              std::move(x), std::move(weight), std::move(bias),
                              std::move(running_mean), std::move(running_var), training, momentum,
                              eps, std::move(isa), false);
      },
      py::arg("y").noconvert(), py::arg("save_mean").noconvert(),
      py::arg("save_invstd").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("bias").noconvert().none(true),
      py::arg("running_mean").noconvert().none(true),
      py::arg("running_var").noconvert().none(true), py::arg("training"), py::arg("momentum"),
      py::arg("eps"), py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Batch norm of x (N, C, L) over N and L, per channel, into y (N, C, L).

training: the batch's mean and biased variance; running_mean / running_var (None or C-contiguous
(C,) arrays of x's dtype) become (1 - momentum) old + momentum batch, the variance unbiased.
eval: normalises with running_mean / running_var (required). save_mean / save_invstd (C,)
receive the mean and 1 / sqrt(var + eps) used. weight / bias None stand for 1 and 0.)pbdoc");
  m.def(
      "batch_norm_forward_reference",
      [](py::array y, py::array save_mean, py::array save_invstd, py::array x,
         std::optional<py::array> weight, std::optional<py::array> bias,
         std::optional<py::array> running_mean, std::optional<py::array> running_var,
         bool training, double momentum, double eps) {
        batch_norm_forward_py(std::move(y), std::move(save_mean), std::move(save_invstd),
                              std::move(x), std::move(weight), std::move(bias),
                              std::move(running_mean), std::move(running_var), training, momentum,
                              eps, std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("save_mean").noconvert(),
      py::arg("save_invstd").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("bias").noconvert().none(true),
      py::arg("running_mean").noconvert().none(true),
      py::arg("running_var").noconvert().none(true), py::arg("training"), py::arg("momentum"),
      py::arg("eps"), "Plain-loop oracle (double) for batch_norm_forward.");
  m.def(
      "batch_norm_backward",
      [](py::array dx, py::array dweight, py::array dbias, py::array dy, py::array x,
         std::optional<py::array> weight, py::array save_mean, py::array save_invstd,
         bool training, std::optional<std::string> isa) {
        batch_norm_backward_py(std::move(dx), std::move(dweight), std::move(dbias), std::move(dy),
                               std::move(x), std::move(weight), std::move(save_mean),
                               std::move(save_invstd), training, std::move(isa), false);
      },
      py::arg("dx").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(),
      py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("save_mean").noconvert(),
      py::arg("save_invstd").noconvert(), py::arg("training"), py::kw_only(),
      py::arg("isa") = py::none(),
      R"pbdoc(Gradients of batch_norm_forward: dx (N, C, L), dweight = sum dy xhat and
dbias = sum dy (C,), always written. training: dx = weight invstd (dy - mean(dy) - xhat
mean(dy xhat)); eval: dx = weight invstd dy.)pbdoc");
  m.def(
      "batch_norm_backward_reference",
      [](py::array dx, py::array dweight, py::array dbias, py::array dy, py::array x,
         std::optional<py::array> weight, py::array save_mean, py::array save_invstd,
         bool training) {
        batch_norm_backward_py(std::move(dx), std::move(dweight), std::move(dbias), std::move(dy),
                               std::move(x), std::move(weight), std::move(save_mean),
                               std::move(save_invstd), training, std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(),
      py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("save_mean").noconvert(),
      py::arg("save_invstd").noconvert(), py::arg("training"),
      "Plain-loop oracle (double) for batch_norm_backward.");
  // ---- layer_norm ----
  m.def(
      "layer_norm_forward",
      [](py::array y, py::array mean, py::array rstd, py::array x, std::optional<py::array> weight,
         std::optional<py::array> bias, double eps, std::optional<std::string> isa) {
        layer_norm_forward_py(y, mean, rstd, x, weight, bias, eps, isa, false);
      },
      py::arg("y").noconvert(), py::arg("mean").noconvert(), py::arg("rstd").noconvert(),
      py::arg("x").noconvert(), py::arg("weight").noconvert().none(true),
      py::arg("bias").noconvert().none(true), py::arg("eps"), py::kw_only(),
      py::arg("isa") = py::none(),
      R"pbdoc(Layer norm of each row of x (M, D) into y (M, D): mean, rstd (M,) receive the row's
mean and 1 / sqrt(biased var + eps); y = (x - mean) rstd weight + bias, weight / bias (D,) or None
(1 and 0).)pbdoc");
  m.def(
      "layer_norm_forward_reference",
      [](py::array y, py::array mean, py::array rstd, py::array x, std::optional<py::array> weight,
         std::optional<py::array> bias, double eps) {
        layer_norm_forward_py(y, mean, rstd, x, weight, bias, eps, std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("mean").noconvert(), py::arg("rstd").noconvert(),
      py::arg("x").noconvert(), py::arg("weight").noconvert().none(true),
      py::arg("bias").noconvert().none(true), py::arg("eps"),
      "Plain-loop oracle (double) for layer_norm_forward.");
  m.def(
      "layer_norm_backward",
      [](py::array dx, py::array dweight, py::array dbias, py::array dy, py::array x,
         std::optional<py::array> weight, py::array mean, py::array rstd,
         std::optional<std::string> isa) {
        layer_norm_backward_py(dx, dweight, dbias, dy, x, weight, mean, rstd, isa, false);
      },
      py::arg("dx").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(),
      py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("mean").noconvert(),
      py::arg("rstd").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Gradients of layer_norm_forward: dx (M, D) = rstd (g - mean(g) - xhat mean(g xhat))
with g = dy weight; dweight = sum_rows dy xhat and dbias = sum_rows dy (D,), always written, in a
fixed order (the same for every thread count). weight None means 1.)pbdoc");
  m.def(
      "layer_norm_backward_reference",
      [](py::array dx, py::array dweight, py::array dbias, py::array dy, py::array x,
         std::optional<py::array> weight, py::array mean, py::array rstd) {
        layer_norm_backward_py(dx, dweight, dbias, dy, x, weight, mean, rstd, std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(),
      py::arg("dy").noconvert(), py::arg("x").noconvert(),
      py::arg("weight").noconvert().none(true), py::arg("mean").noconvert(),
      py::arg("rstd").noconvert(), "Plain-loop oracle (double) for layer_norm_backward.");
}

}  // namespace fastdl::bindings
