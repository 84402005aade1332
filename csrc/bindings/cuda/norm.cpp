// bindings/cuda/norm.cpp: the norm family of fastdl._cuda (batch_norm_forward,
// batch_norm_backward), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// x, y, dy, dx are (N, C, L) float32 CUDA arrays (fastdl.ops reshapes (N, C) and (N, C, *) to
// that); the per-channel vectors (C,). Every array C-contiguous (TypeError), every shape checked
// (ValueError naming the argument and both shapes). running_mean / running_var are updated in
// place, so they must be writable.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "bindings/cuda/launch.h"
#include "common/check.h"
#include "cuda/norm.cuh"

namespace fastdl::bindings {
namespace {

void check_ncl(const ArrayView& a) {
  FASTDL_CHECK(a.ndim == 3, ValueError, a.name, ": expected a 3-D (N, C, L) array, got shape ",
               shape_str(a));
  check_contiguous(a);
}

// A per-channel vector (C,) of x (N, C, L), C-contiguous.
void check_channels(const ArrayView& v, const ArrayView& x) {
  FASTDL_CHECK(v.ndim == 1 && v.shape[0] == x.shape[1], ValueError, v.name, ": expected shape (",
               x.shape[1], ",) to match the C of ", x.name, " with shape ", shape_str(x),
               ", got shape ", shape_str(v));
  check_contiguous(v);
}

// An optional per-channel input: null when obj is None.
const float* optional_channels(const py::handle& obj, const char* name, const ArrayView& x,
                               ArrayView& view, bool inplace) {
  if (obj.is_none()) return nullptr;
  view = cuda_view(obj, name);
  check_channels(view, x);
  if (inplace) check_output(view);
  return view.data<float>();
}

void batch_norm_forward_py(const py::handle& y_obj, const py::handle& mean_obj,
                           const py::handle& invstd_obj, const py::handle& x_obj,
                           const py::handle& weight_obj, const py::handle& bias_obj,
                           const py::handle& rm_obj, const py::handle& rv_obj, bool training,
                           double momentum, double eps, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), save_mean = cuda_view(mean_obj, "save_mean"),
                  save_invstd = cuda_view(invstd_obj, "save_invstd"), x = cuda_view(x_obj, "x");
  check_output(y);
  check_output(save_mean);
  check_output(save_invstd);
  check_ncl(x);
  check_shape(y, x);
  check_channels(save_mean, x);
  check_channels(save_invstd, x);
  ArrayView weight, bias, rm, rv;
  const float* pw = optional_channels(weight_obj, "weight", x, weight, false);
  const float* pb = optional_channels(bias_obj, "bias", x, bias, false);
  float* prm = const_cast<float*>(optional_channels(rm_obj, "running_mean", x, rm, true));
  float* prv = const_cast<float*>(optional_channels(rv_obj, "running_var", x, rv, true));
  FASTDL_CHECK(std::isfinite(eps) && eps >= 0, ValueError,
               "batch_norm: eps: expected a finite number >= 0, got ", eps);
  FASTDL_CHECK(std::isfinite(momentum), ValueError,
               "batch_norm: momentum: expected a finite number, got ", momentum);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &save_mean, &save_invstd, &x, pw ? &weight : nullptr,
                           pb ? &bias : nullptr, prm ? &rm : nullptr, prv ? &rv : nullptr});
  cuda::batch_norm_forward(y.mutable_data<float>(), save_mean.mutable_data<float>(),
                           save_invstd.mutable_data<float>(), x.data<float>(), pw, pb, prm, prv,
                           x.shape[0], x.shape[1], x.shape[2], training, momentum, eps,
                           as_stream(stream));
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
  check_output(dx);
  check_output(dweight);
  check_output(dbias);
  check_ncl(x);
  check_shape(dx, x);
  check_shape(dy, x);
  check_contiguous(dy);
  check_channels(dweight, x);
  check_channels(dbias, x);
  check_channels(save_mean, x);
  check_channels(save_invstd, x);
  ArrayView weight;
  const float* pw = optional_channels(weight_obj, "weight", x, weight, false);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dweight, &dbias, &dy, &x, &save_mean, &save_invstd,
                           pw ? &weight : nullptr});
  cuda::batch_norm_backward(dx.mutable_data<float>(), dweight.mutable_data<float>(),
                            dbias.mutable_data<float>(), dy.data<float>(), x.data<float>(), pw,
                            save_mean.data<float>(), save_invstd.data<float>(), x.shape[0],
                            x.shape[1], x.shape[2], training, as_stream(stream));
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
