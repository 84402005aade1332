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
#include <initializer_list>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "common/check.h"
#include "cuda/norm.cuh"

namespace fastdl::bindings {
namespace {

// The messages are the CPU binding's (bindings/cpu/norm.cpp), word for word, so fastdl.ops
// fails the same way on both devices.
void check_3d(const ArrayView& a) {
  FASTDL_CHECK(a.ndim == 3, ValueError, a.name, ": expected a 3-D array, got shape ",
               shape_str(a));
}

// a has exactly the shape `dims` (nd of them).
void check_dims(const ArrayView& a, std::initializer_list<int64_t> dims) {
  bool ok = a.ndim == int(dims.size());
  std::string want = "(";
  int i = 0;
  for (const int64_t d : dims) {
    want += (i ? ", " : "") + std::to_string(d);
    ok = ok && a.shape[i] == d;
    ++i;
  }
  want += dims.size() == 1 ? ",)" : ")";
  FASTDL_CHECK(ok, ValueError, a.name, ": expected shape ", want, ", got shape ", shape_str(a));
}

void check_input(const ArrayView& a, std::initializer_list<int64_t> dims) {
  check_dims(a, dims);
  check_contiguous(a);
}

// An optional (C,) vector: null when obj is None; writable when the kernel updates it.
float* channel_vector(const py::handle& obj, const char* name, int64_t c, ArrayView& view,
                      bool written) {
  if (obj.is_none()) return nullptr;
  view = cuda_view(obj, name);
  check_input(view, {c});
  FASTDL_CHECK(!written || !view.readonly, ValueError, name, ": updated in place, but read-only");
  return view.mutable_data<float>();
}

void batch_norm_forward_py(const py::handle& y_obj, const py::handle& mean_obj,
                           const py::handle& invstd_obj, const py::handle& x_obj,
                           const py::handle& weight_obj, const py::handle& bias_obj,
                           const py::handle& rm_obj, const py::handle& rv_obj, bool training,
                           double momentum, double eps, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), save_mean = cuda_view(mean_obj, "save_mean"),
                  save_invstd = cuda_view(invstd_obj, "save_invstd"), x = cuda_view(x_obj, "x");
  check_output(y);
  check_3d(y);
  const int64_t n = y.shape[0], c = y.shape[1], l = y.shape[2];
  check_input(x, {n, c, l});
  for (const ArrayView* a : {&save_mean, &save_invstd}) {
    check_output(*a);
    check_dims(*a, {c});
  }
  if (training) {
    FASTDL_CHECK(n * l > 1, ValueError,
                 "x: expected more than 1 value per channel when training, got shape ",
                 shape_str(x), " (", n * l, " per channel)");
  } else {
    FASTDL_CHECK(!rm_obj.is_none() && !rv_obj.is_none(), ValueError,
                 "running_mean, running_var: required in eval mode (training=False), got None");
  }
  FASTDL_CHECK(std::isfinite(eps) && eps >= 0, ValueError,
               "eps: expected a finite value >= 0, got ", eps);
  FASTDL_CHECK(std::isfinite(momentum), ValueError, "momentum: expected a finite value, got ",
               momentum);
  ArrayView weight, bias, rm, rv;
  const float* pw = channel_vector(weight_obj, "weight", c, weight, false);
  const float* pb = channel_vector(bias_obj, "bias", c, bias, false);
  float* prm = channel_vector(rm_obj, "running_mean", c, rm, training);
  float* prv = channel_vector(rv_obj, "running_var", c, rv, training);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &save_mean, &save_invstd, &x, pw ? &weight : nullptr,
                           pb ? &bias : nullptr, prm ? &rm : nullptr, prv ? &rv : nullptr});
  cuda::batch_norm_forward(y.mutable_data<float>(), save_mean.mutable_data<float>(),
                           save_invstd.mutable_data<float>(), x.data<float>(), pw, pb, prm, prv,
                           n, c, l, training, momentum, eps, as_stream(stream));
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
  check_3d(dx);
  const int64_t n = dx.shape[0], c = dx.shape[1], l = dx.shape[2];
  check_input(dy, {n, c, l});
  check_input(x, {n, c, l});
  for (const ArrayView* a : {&dweight, &dbias}) {
    check_output(*a);
    check_dims(*a, {c});
  }
  check_input(save_mean, {c});
  check_input(save_invstd, {c});
  ArrayView weight;
  const float* pw = channel_vector(weight_obj, "weight", c, weight, false);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dweight, &dbias, &dy, &x, &save_mean, &save_invstd,
                           pw ? &weight : nullptr});
  cuda::batch_norm_backward(dx.mutable_data<float>(), dweight.mutable_data<float>(),
                            dbias.mutable_data<float>(), dy.data<float>(), x.data<float>(), pw,
                            save_mean.data<float>(), save_invstd.data<float>(), n, c, l,
                            training, as_stream(stream));
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
