// bindings/cuda/pool.cpp: the pool family of fastdl._cuda (max_pool2d_*, avg_pool2d_*,
// adaptive_avg_pool2d_*), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// x / dx (N, C, H, W), y / dy (N, C, OH, OW) float32, argmax int64 of y's shape; all CUDA arrays,
// C-contiguous (TypeError), every shape relation checked (ValueError naming the argument and
// both shapes). PyTorch's rules for the windows: kernel >= 1, stride >= 1, 0 <= pad <= kernel / 2,
// OH = (H + 2 pad - kernel) // stride + 1 >= 1 (floor mode).
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "bindings/cuda/launch.h"
#include "common/check.h"
#include "cuda/pool.cuh"

namespace fastdl::bindings {
namespace {

std::string shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " +
         std::to_string(d) + ")";
}

void check_4d(const ArrayView& a) {
  FASTDL_CHECK(a.ndim == 4, ValueError, a.name, ": expected a 4-D array (N, C, H, W), got shape ",
               shape_str(a));
  check_contiguous(a);
}

// a is (n, c, h, w) exactly.
void check_shape4(const ArrayView& a, int64_t n, int64_t c, int64_t h, int64_t w) {
  check_4d(a);
  FASTDL_CHECK(a.shape[0] == n && a.shape[1] == c && a.shape[2] == h && a.shape[3] == w,
               ValueError, a.name, ": expected shape ", shape4(n, c, h, w), ", got shape ",
               shape_str(a));
}

int narrow(int64_t v, const char* op, const char* what) {
  FASTDL_CHECK(v >= 0 && v <= 0x7fffffff, ValueError, op, ": ", what, " = ", v,
               " exceeds the CUDA kernels' limit of 2^31 - 1");
  return int(v);
}

// The window geometry over input planes (h, w), all checked; OH, OW computed.
cuda::PoolShape window_shape(const char* op, const ArrayView& in, int64_t kernel_h,
                             int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                             int64_t pad_w) {
  FASTDL_CHECK(kernel_h >= 1 && kernel_w >= 1, ValueError, op,
               ": kernel_size: expected >= 1, got (", kernel_h, ", ", kernel_w, ")");
  FASTDL_CHECK(stride_h >= 1 && stride_w >= 1, ValueError, op, ": stride: expected >= 1, got (",
               stride_h, ", ", stride_w, ")");
  FASTDL_CHECK(pad_h >= 0 && pad_w >= 0 && 2 * pad_h <= kernel_h && 2 * pad_w <= kernel_w,
               ValueError, op, ": padding: expected >= 0 and at most half the kernel size (",
               kernel_h, ", ", kernel_w, "), got (", pad_h, ", ", pad_w, ")");
  const int64_t h = in.shape[2], w = in.shape[3];
  const int64_t span_h = h + 2 * pad_h - kernel_h, span_w = w + 2 * pad_w - kernel_w;
  FASTDL_CHECK(span_h >= 0 && span_w >= 0, ValueError, op, ": the kernel (", kernel_h, ", ",
               kernel_w, ") is larger than the padded input (", h + 2 * pad_h, ", ",
               w + 2 * pad_w, ") of ", in.name, " with shape ", shape_str(in));
  cuda::PoolShape s{};
  s.planes = in.shape[0] * in.shape[1];
  s.h = narrow(h, op, "H"), s.w = narrow(w, op, "W");
  s.oh = narrow(span_h / stride_h + 1, op, "OH"), s.ow = narrow(span_w / stride_w + 1, op, "OW");
  s.kh = narrow(kernel_h, op, "kernel_h"), s.kw = narrow(kernel_w, op, "kernel_w");
  s.sh = narrow(stride_h, op, "stride_h"), s.sw = narrow(stride_w, op, "stride_w");
  s.ph = narrow(pad_h, op, "pad_h"), s.pw = narrow(pad_w, op, "pad_w");
  return s;
}

// The plane sizes of an adaptive pool (or of a max-pool backward): in (N, C, H, W) and
// out (N, C, OH, OW) share N and C.
cuda::PoolShape plane_shape(const char* op, const ArrayView& in, const ArrayView& out) {
  check_4d(in);
  check_4d(out);
  FASTDL_CHECK(out.shape[0] == in.shape[0] && out.shape[1] == in.shape[1], ValueError, out.name,
               ": expected N = ", in.shape[0], " and C = ", in.shape[1], " of ", in.name,
               " with shape ", shape_str(in), ", got shape ", shape_str(out));
  cuda::PoolShape s{};
  s.planes = in.shape[0] * in.shape[1];
  s.h = narrow(in.shape[2], op, "H"), s.w = narrow(in.shape[3], op, "W");
  s.oh = narrow(out.shape[2], op, "OH"), s.ow = narrow(out.shape[3], op, "OW");
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
  const char* op = "max_pool2d";
  const ArrayView y = cuda_view(y_obj, "y"), argmax = cuda_view(argmax_obj, "argmax", kInt64),
                  x = cuda_view(x_obj, "x");
  check_output(y);
  check_output(argmax);
  check_4d(x);
  const cuda::PoolShape s = window_shape(op, x, WINDOW_ARGS);
  check_shape4(y, x.shape[0], x.shape[1], s.oh, s.ow);
  check_shape4(argmax, x.shape[0], x.shape[1], s.oh, s.ow);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &argmax, &x});
  cuda::max_pool2d_forward(y.mutable_data<float>(), argmax.mutable_data<int64_t>(),
                           x.data<float>(), s, as_stream(stream));
}

void max_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj,
                            const py::handle& argmax_obj, std::uintptr_t stream) {
  const char* op = "max_pool2d_backward";
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy"),
                  argmax = cuda_view(argmax_obj, "argmax", kInt64);
  check_output(dx);
  const cuda::PoolShape s = plane_shape(op, dx, dy);
  check_shape4(argmax, dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy, &argmax});
  cuda::max_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(),
                            argmax.data<int64_t>(), s, as_stream(stream));
}

void avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj, WINDOW,
                           std::uintptr_t stream) {
  const char* op = "avg_pool2d";
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  check_output(y);
  check_4d(x);
  const cuda::PoolShape s = window_shape(op, x, WINDOW_ARGS);
  check_shape4(y, x.shape[0], x.shape[1], s.oh, s.ow);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s, as_stream(stream));
}

void avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj, WINDOW,
                            std::uintptr_t stream) {
  const char* op = "avg_pool2d_backward";
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  check_output(dx);
  check_4d(dx);
  const cuda::PoolShape s = window_shape(op, dx, WINDOW_ARGS);
  check_shape4(dy, dx.shape[0], dx.shape[1], s.oh, s.ow);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy});
  cuda::avg_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(), s, as_stream(stream));
}

void adaptive_avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj,
                                    std::uintptr_t stream) {
  const char* op = "adaptive_avg_pool2d";
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  check_output(y);
  const cuda::PoolShape s = plane_shape(op, x, y);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::adaptive_avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s,
                                    as_stream(stream));
}

void adaptive_avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj,
                                     std::uintptr_t stream) {
  const char* op = "adaptive_avg_pool2d_backward";
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  check_output(dx);
  const cuda::PoolShape s = plane_shape(op, dx, dy);
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
