// bindings/cuda/pool.cpp: the pool family of fastdl._cuda (max_pool2d_*, avg_pool2d_*,
// adaptive_avg_pool2d_*), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// x / dx (N, C, H, W), y / dy (N, C, OH, OW) float32, argmax int64 of y's shape; all CUDA arrays.
// The checks are bindings/args.h's pooling section, the CPU binding's too (PyTorch's window
// rules: kernel >= 1, stride >= 1, 0 <= pad <= kernel / 2, floor-mode OH), so both modules
// refuse the same calls with the same messages.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "common/check.h"
#include "cuda/pool.cuh"

namespace fastdl::bindings {
namespace {

// A checked geometry (bindings/args.h, shared with the CPU binding) as the kernels' ints.
int narrow(int64_t v, const char* what) {
  FASTDL_CHECK(v >= 0 && v <= 0x7fffffff, ValueError, what, " = ", v,
               " exceeds the CUDA kernels' limit of 2^31 - 1");
  return int(v);
}

cuda::PoolShape pool_shape(const Pool2dDims& d) {
  cuda::PoolShape s{};
  s.planes = d.planes;
  s.h = narrow(d.h, "H"), s.w = narrow(d.w, "W"), s.oh = narrow(d.oh, "OH");
  s.ow = narrow(d.ow, "OW");
  s.kh = narrow(d.kh, "kernel_h"), s.kw = narrow(d.kw, "kernel_w");
  s.sh = narrow(d.sh, "stride_h"), s.sw = narrow(d.sw, "stride_w");
  s.ph = narrow(d.ph, "pad_h"), s.pw = narrow(d.pw, "pad_w");
  return s;
}

#define WINDOW                                                                              \
  int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h,    \
      int64_t pad_w
#define WINDOW_ARGS kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w
#define WINDOW_PYARGS                                                                       \
  py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"),       \
      py::arg("pad_h"), py::arg("pad_w")

void max_pool2d_forward_py(const py::handle& y_obj, const py::handle& argmax_obj,
                           const py::handle& x_obj, WINDOW, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), argmax = cuda_view(argmax_obj, "argmax", kInt64),
                  x = cuda_view(x_obj, "x");
  const cuda::PoolShape s = pool_shape(check_pool2d(x, y, false, WINDOW_ARGS));
  check_argmax(argmax, y, true);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &argmax, &x});
  cuda::max_pool2d_forward(y.mutable_data<float>(), argmax.mutable_data<int64_t>(),
                           x.data<float>(), s, as_stream(stream));
}

void max_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj,
                            const py::handle& argmax_obj, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy"),
                  argmax = cuda_view(argmax_obj, "argmax", kInt64);
  const cuda::PoolShape s = pool_shape(check_max_pool2d_backward(dx, dy, argmax));
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy, &argmax});
  cuda::max_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(),
                            argmax.data<int64_t>(), s, as_stream(stream));
}

void avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj, WINDOW,
                           std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  const cuda::PoolShape s = pool_shape(check_pool2d(x, y, false, WINDOW_ARGS));
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s, as_stream(stream));
}

void avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj, WINDOW,
                            std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  const cuda::PoolShape s = pool_shape(check_pool2d(dx, dy, true, WINDOW_ARGS));
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy});
  cuda::avg_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(), s, as_stream(stream));
}

void adaptive_avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj,
                                    std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  const cuda::PoolShape s = pool_shape(check_adaptive_pool2d(x, y, false));
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::adaptive_avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s,
                                    as_stream(stream));
}

void adaptive_avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj,
                                     std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  const cuda::PoolShape s = pool_shape(check_adaptive_pool2d(dx, dy, true));
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy});
  cuda::adaptive_avg_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(), s,
                                     as_stream(stream));
}

}  // namespace

void bind_pool(py::module_& m) {
  const auto stream = py::arg("stream") = 0;
  m.def("max_pool2d_forward", &max_pool2d_forward_py, py::arg("y"), py::arg("argmax"),
        py::arg("x"), WINDOW_PYARGS, py::kw_only(), stream,
        R"pbdoc(y (N, C, OH, OW) = max over each window of x (N, C, H, W), padding -inf; argmax (int64,
y's shape) = the flat index ih * W + iw of the first maximum in row-major window order (a NaN is
the max: the last NaN wins, as PyTorch). OH = (H + 2*pad_h - kernel_h) // stride_h + 1.)pbdoc");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("dx"), py::arg("dy"),
        py::arg("argmax"), py::kw_only(), stream,
        R"pbdoc(dx (N, C, H, W) = 0, then dx[plane][argmax] += dy. Every argmax value is checked on the
device (ValueError naming the first outside [0, H*W)), so this call synchronises the stream.)pbdoc");
  m.def("avg_pool2d_forward", &avg_pool2d_forward_py, py::arg("y"), py::arg("x"), WINDOW_PYARGS,
        py::kw_only(), stream,
        "y = the mean over each window of x, padded cells counted (count_include_pad=True), "
        "windows clipped to the padded extent.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("dx"), py::arg("dy"),
        WINDOW_PYARGS, py::kw_only(), stream,
        "dx (N, C, H, W), written (=): each dy spread evenly over its window's cells.");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward_py, py::arg("y"),
        py::arg("x"), py::kw_only(), stream,
        "y (N, C, OH, OW): cell i averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)), "
        "columns alike; the output size is y's shape.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_py, py::arg("dx"),
        py::arg("dy"), py::kw_only(), stream,
        "dx (N, C, H, W), written (=); the input size is dx's shape.");
}

}  // namespace fastdl::bindings
