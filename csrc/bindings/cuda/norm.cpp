// bindings/cuda/norm.cpp: the norm family of fastdl._cuda (batch_norm_forward,
// batch_norm_backward), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// x, y, dy, dx are (N, C, L) float32 CUDA arrays (fastdl.ops reshapes (N, C) and (N, C, *) to
// that); the per-channel vectors (C,). The checks are bindings/args.h's normalisation section,
// the CPU binding's too, so both modules refuse the same calls with the same messages.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "common/check.h"
#include "cuda/norm.cuh"

namespace fastdl::bindings {
namespace {

void batch_norm_forward_py(const py::handle& y_obj, const py::handle& mean_obj,
                           const py::handle& invstd_obj, const py::handle& x_obj,
                           const py::handle& weight_obj, const py::handle& bias_obj,
                           const py::handle& rm_obj, const py::handle& rv_obj, bool training,
                           double momentum, double eps, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), save_mean = cuda_view(mean_obj, "save_mean"),
                  save_invstd = cuda_view(invstd_obj, "save_invstd"), x = cuda_view(x_obj, "x");
  ArrayView weight, bias, rm, rv;
  const ArrayView* pw = optional_view(weight_obj, "weight", weight);
  const ArrayView* pb = optional_view(bias_obj, "bias", bias);
  const ArrayView* prm = optional_view(rm_obj, "running_mean", rm);
  const ArrayView* prv = optional_view(rv_obj, "running_var", rv);
  const NormDims d = check_batch_norm_forward(y, save_mean, save_invstd, x, pw, pb, prm, prv,
                                              training, momentum, eps);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &save_mean, &save_invstd, &x, pw, pb, prm, prv});
  cuda::batch_norm_forward(y.mutable_data<float>(), save_mean.mutable_data<float>(),
                           save_invstd.mutable_data<float>(), x.data<float>(),
                           data_or_null<const float>(pw), data_or_null<const float>(pb),
                           data_or_null<float>(prm), data_or_null<float>(prv), d.n, d.c, d.l,
                           training, momentum, eps, as_stream(stream));
}

void batch_norm_backward_py(const py::handle& dx_obj, const py::handle& dw_obj,
                            const py::handle& db_obj, const py::handle& dy_obj,
                            const py::handle& x_obj, const py::handle& weight_obj,
                            const py::handle& mean_obj, const py::handle& invstd_obj,
                            bool training, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dweight = cuda_view(dw_obj, "dweight"),
                  dbias = cuda_view(db_obj, "dbias"), dy = cuda_view(dy_obj, "dy"),
                  x = cuda_view(x_obj, "x"), save_mean = cuda_view(mean_obj, "save_mean"),
                  save_invstd = cuda_view(invstd_obj, "save_invstd");
  ArrayView weight;
  const ArrayView* pw = optional_view(weight_obj, "weight", weight);
  const NormDims d =
      check_batch_norm_backward(dx, dweight, dbias, dy, x, pw, save_mean, save_invstd);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dweight, &dbias, &dy, &x, &save_mean, &save_invstd, pw});
  cuda::batch_norm_backward(dx.mutable_data<float>(), dweight.mutable_data<float>(),
                            dbias.mutable_data<float>(), dy.data<float>(), x.data<float>(),
                            data_or_null<const float>(pw), save_mean.data<float>(),
                            save_invstd.data<float>(), d.n, d.c, d.l, training,
                            as_stream(stream));
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward_py, py::arg("y"), py::arg("save_mean"),
        py::arg("save_invstd"), py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"), py::arg("momentum"),
        py::arg("eps"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Batch normalisation of x (N, C, L) per channel, on the GPU.

training: the batch's mean and biased variance over N and L (needs N*L > 1); save_mean and
save_invstd = 1/sqrt(var + eps) receive them, and running_mean/running_var (C,) (None: skipped)
become (1 - momentum)*old + momentum*batch in place, the variance unbiased. eval: normalises with
running_mean/running_var (required) and saves those. y = (x - mean)*invstd*weight + bias, weight
and bias None meaning 1 and 0.)pbdoc");
  m.def("batch_norm_backward", &batch_norm_backward_py, py::arg("dx"), py::arg("dweight"),
        py::arg("dbias"), py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("save_mean"),
        py::arg("save_invstd"), py::arg("training"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Gradients of batch_norm_forward: dweight = sum(dy * xhat), dbias = sum(dy) over N, L (always
written); training dx = weight*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)), eval dx =
weight*invstd*dy.)pbdoc");
}

}  // namespace fastdl::bindings
