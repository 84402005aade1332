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
#include "common/check.h"
#include "cuda/pool.cuh"

namespace fastdl::bindings {
namespace {

// The messages are the CPU binding's (bindings/cpu/pool.cpp), word for word, so fastdl.ops
// fails the same way on both devices.
std::string shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " +
         std::to_string(d) + ")";
}

void check_4d(const ArrayView& a) {
  FASTDL_CHECK(a.ndim == 4, ValueError, a.name, ": expected a 4-D array, got shape ",
               shape_str(a));
}

// The image side: x or dx (N, C, H, W), H and W >= 1.
void check_image(const ArrayView& a) {
  check_4d(a);
  FASTDL_CHECK(a.shape[2] >= 1 && a.shape[3] >= 1, ValueError, a.name,
               ": expected an image of at least 1 x 1 (N, C, H, W), got shape ", shape_str(a));
}

// a is (n, c, h, w) exactly.
void check_shape4(const ArrayView& a, int64_t n, int64_t c, int64_t h, int64_t w) {
  FASTDL_CHECK(a.ndim == 4 && a.shape[0] == n && a.shape[1] == c && a.shape[2] == h &&
                   a.shape[3] == w,
               ValueError, a.name, ": expected shape ", shape4(n, c, h, w), ", got shape ",
               shape_str(a));
}

// One pooled axis ('h' or 'w'): kernel >= 1, stride >= 1, 0 <= pad <= kernel / 2 (PyTorch's
// rule) and a kernel no larger than the padded input.
void check_axis(char axis, int64_t in, int64_t k, int64_t s, int64_t p) {
  FASTDL_CHECK(k >= 1, ValueError, "kernel_", axis, ": expected a kernel size >= 1, got ", k);
  FASTDL_CHECK(s >= 1, ValueError, "stride_", axis, ": expected a stride >= 1, got ", s);
  FASTDL_CHECK(p >= 0 && 2 * p <= k, ValueError, "pad_", axis,
               ": expected 0 <= pad <= kernel / 2 = ", k / 2, ", got ", p);
  FASTDL_CHECK(k <= in + 2 * p, ValueError, "kernel_", axis, ": kernel size ", k,
               " is larger than the padded input (", in, " + 2 * ", p, " = ", in + 2 * p, ")");
}

int narrow(int64_t v, const char* what) {
  FASTDL_CHECK(v >= 0 && v <= 0x7fffffff, ValueError, what, " = ", v,
               " exceeds the CUDA kernels' limit of 2^31 - 1");
  return int(v);
}

// big (N, C, H, W) and small (N, C, OH, OW) of a windowed pool, the written one checked first;
// returns the geometry.
cuda::PoolShape window_shape(const ArrayView& big, const ArrayView& small, bool big_is_output,
                             int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw) {
  check_output(big_is_output ? big : small);
  check_image(big);
  check_4d(small);
  const int64_t n = big.shape[0], c = big.shape[1], h = big.shape[2], w = big.shape[3];
  check_axis('h', h, kh, sh, ph);
  check_axis('w', w, kw, sw, pw);
  const int64_t oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
  check_shape4(small, n, c, oh, ow);
  check_contiguous(big_is_output ? small : big);
  cuda::PoolShape s{};
  s.planes = n * c;
  s.h = narrow(h, "H"), s.w = narrow(w, "W"), s.oh = narrow(oh, "OH"), s.ow = narrow(ow, "OW");
  s.kh = narrow(kh, "kernel_h"), s.kw = narrow(kw, "kernel_w");
  s.sh = narrow(sh, "stride_h"), s.sw = narrow(sw, "stride_w");
  s.ph = narrow(ph, "pad_h"), s.pw = narrow(pw, "pad_w");
  return s;
}

// Plane sizes when the output size comes from the small array's shape (adaptive pools, the
// max-pool backward): big (N, C, H, W), small (N, C, OH, OW).
cuda::PoolShape plane_shape(const ArrayView& big, const ArrayView& small, bool big_is_output) {
  check_output(big_is_output ? big : small);
  check_image(big);
  check_4d(small);
  check_contiguous(big_is_output ? small : big);
  check_shape4(small, big.shape[0], big.shape[1], small.shape[2], small.shape[3]);
  cuda::PoolShape s{};
  s.planes = big.shape[0] * big.shape[1];
  s.h = narrow(big.shape[2], "H"), s.w = narrow(big.shape[3], "W");
  s.oh = narrow(small.shape[2], "OH"), s.ow = narrow(small.shape[3], "OW");
  return s;
}

// argmax: int64 (checked by cuda_view), the shape of `like`, C-contiguous.
void check_argmax(const ArrayView& argmax, const ArrayView& like, bool output) {
  check_shape4(argmax, like.shape[0], like.shape[1], like.shape[2], like.shape[3]);
  if (output)
    check_output(argmax);
  else
    check_contiguous(argmax);
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
  const cuda::PoolShape s = window_shape(x, y, false, WINDOW_ARGS);
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
  const cuda::PoolShape s = plane_shape(dx, dy, true);
  check_argmax(argmax, dy, false);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy, &argmax});
  cuda::max_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(),
                            argmax.data<int64_t>(), s, as_stream(stream));
}

void avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj, WINDOW,
                           std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  const cuda::PoolShape s = window_shape(x, y, false, WINDOW_ARGS);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s, as_stream(stream));
}

void avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj, WINDOW,
                            std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  const cuda::PoolShape s = window_shape(dx, dy, true, WINDOW_ARGS);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy});
  cuda::avg_pool2d_backward(dx.mutable_data<float>(), dy.data<float>(), s, as_stream(stream));
}

void adaptive_avg_pool2d_forward_py(const py::handle& y_obj, const py::handle& x_obj,
                                    std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x");
  const cuda::PoolShape s = plane_shape(x, y, false);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x});
  cuda::adaptive_avg_pool2d_forward(y.mutable_data<float>(), x.data<float>(), s,
                                    as_stream(stream));
}

void adaptive_avg_pool2d_backward_py(const py::handle& dx_obj, const py::handle& dy_obj,
                                     std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy");
  const cuda::PoolShape s = plane_shape(dx, dy, true);
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
