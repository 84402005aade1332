// bindings/cuda/pool.cpp: the pool family of fastdl._cuda (max_pool2d_*, avg_pool2d_*,
// adaptive_avg_pool2d_*), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// x / dx (N, C, H, W), y / dy (N, C, OH, OW) float32, argmax int64 of y's shape; all CUDA arrays.
// The checks are bindings/args.h's pooling section, the CPU binding's too (PyTorch's window
// rules: kernel >= 1, stride >= 1, dilation >= 1, 0 <= pad <= kernel / 2, floor- or ceil-mode
// OH, divisor_override > 0), so both modules refuse the same calls with the same messages. The
// PyTorch options trail the window with the CPU binding's names, order and defaults.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>

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
  s.dh = narrow(d.dh, "dilation_h"), s.dw = narrow(d.dw, "dilation_w");
  s.divisor_mode = d.divisor_override > 0 ? cuda::PoolDivisor::fixed
                   : d.count_include_pad  ? cuda::PoolDivisor::padded
                                          : cuda::PoolDivisor::real;
  s.divisor = narrow(d.divisor_override, "divisor_override");
  return s;
}

#define WINDOW                                                                              \
  int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h,    \
      int64_t pad_w
#define WINDOW_ARGS kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w
#define WINDOW_PYARGS                                                                       \
  py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"),       \
      py::arg("pad_h"), py::arg("pad_w")
#define MAX_OPTIONS int64_t dilation_h, int64_t dilation_w, bool ceil_mode
#define MAX_OPTIONS_PYARGS                                                                  \
  py::arg("dilation_h") = 1, py::arg("dilation_w") = 1, py::arg("ceil_mode") = false
#define AVG_OPTIONS \
  bool ceil_mode, bool count_include_pad, const std::optional<int64_t>& divisor_override
#define AVG_OPTIONS_ARGS ceil_mode, count_include_pad, divisor_override
#define AVG_OPTIONS_PYARGS                                                                  \
  py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,                       \
      py::arg("divisor_override") = py::none()

void max_pool2d_forward_py(const py::handle& y_obj, const py::handle& argmax_obj,
                           const py::handle& x_obj, WINDOW, MAX_OPTIONS, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), argmax = cuda_view(argmax_obj, "argmax", kInt64),
                  x = cuda_view(x_obj, "x");
  const cuda::PoolShape s =
      pool_shape(check_pool2d(x, y, false, WINDOW_ARGS, dilation_h, dilation_w, ceil_mode));
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
                           AVG_OPTIONS, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  const cuda::PoolShape s =
      pool_shape(check_avg_pool2d(x, y, false, WINDOW_ARGS, AVG_OPTIONS_ARGS));
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s, as_stream(stream));
}

void avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj, WINDOW,
                            AVG_OPTIONS, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  const cuda::PoolShape s =
      pool_shape(check_avg_pool2d(dx, dy, true, WINDOW_ARGS, AVG_OPTIONS_ARGS));
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
        py::arg("x"), WINDOW_PYARGS, MAX_OPTIONS_PYARGS, py::kw_only(), stream,
        R"pbdoc(y (N, C, OH, OW) = max over each window of x (N, C, H, W), padding -inf, cells dilation
apart; argmax (int64, y's shape) = the flat index ih * W + iw of the first maximum in row-major
window order (a NaN is the max: the last NaN wins, as PyTorch).
OH = (H + 2*pad_h - dilation_h*(kernel_h-1) - 1) // stride_h + 1, rounded up with ceil_mode (less
one if the last window would start at or past H + pad_h).)pbdoc");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("dx"), py::arg("dy"),
        py::arg("argmax"), py::kw_only(), stream,
        R"pbdoc(dx (N, C, H, W) = 0, then dx[plane][argmax] += dy. Every argmax value is checked on the
device (ValueError naming the first outside [0, H*W)), so this call synchronises the stream.)pbdoc");
  m.def("avg_pool2d_forward", &avg_pool2d_forward_py, py::arg("y"), py::arg("x"), WINDOW_PYARGS,
        AVG_OPTIONS_PYARGS, py::kw_only(), stream,
        "y = the sum over each window of x / PyTorch's divisor: divisor_override if given, else "
        "the window's cells inside the padded extent (count_include_pad=True) or the image.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("dx"), py::arg("dy"),
        WINDOW_PYARGS, AVG_OPTIONS_PYARGS, py::kw_only(), stream,
        "dx (N, C, H, W), written (=): each dy / its window's divisor spread over the window's "
        "image cells.");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward_py, py::arg("y"),
        py::arg("x"), py::kw_only(), stream,
        "y (N, C, OH, OW): cell i averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)), "
        "columns alike; the output size is y's shape.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_py, py::arg("dx"),
        py::arg("dy"), py::kw_only(), stream,
        "dx (N, C, H, W), written (=); the input size is dx's shape.");
}

}  // namespace fastdl::bindings
