// bindings/cuda/conv.cpp: the conv family of fastdl._cuda (conv2d_forward, conv2d_backward_data,
// conv2d_backward_weight and their *_reference oracles), the pinned extension API shared with
// fastdl._core plus a keyword-only `stream`.
//
// Arrays are float32 CUDA arrays (TypeError otherwise), C-contiguous (TypeError), with every
// shape relation checked (ValueError naming the argument and both shapes) before a kernel is
// launched. The geometry checks and their messages are the CPU binding's (bindings/cpu/conv.cpp),
// so both modules refuse the same calls with the same words.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "common/check.h"
#include "cuda/conv.cuh"

namespace fastdl::bindings {
namespace {

// a: C-contiguous with exactly `shape` (nd dims); the dtype was checked by cuda_view.
void check_array(const ArrayView& a, const int64_t* shape, int nd) {
  check_contiguous(a);
  bool ok = a.ndim == nd;
  for (int i = 0; ok && i < nd; ++i) ok = a.shape[i] == shape[i];
  std::string want = "(";
  for (int i = 0; i < nd; ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
  want += nd == 1 ? ",)" : ")";
  FASTDL_CHECK(ok, ValueError, a.name, ": expected shape ", want, ", got shape ", shape_str(a));
}

void check_4d(const ArrayView& a) {
  FASTDL_CHECK(a.ndim == 4, ValueError, a.name, ": expected a 4-D array, got shape ",
               shape_str(a));
}

int64_t out_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil,
                   const char* axis) {
  const int64_t span = in + 2 * pad - dil * (kernel - 1) - 1;
  FASTDL_CHECK(span >= 0, ValueError, "conv2d: the dilated kernel (", dil * (kernel - 1) + 1,
               ") is larger than the padded input (", in + 2 * pad, ") along ", axis);
  return span / stride + 1;
}

int narrow(int64_t v, const char* what) {
  FASTDL_CHECK(v >= 0 && v <= 0x7fffffff, ValueError, "conv2d: ", what, " = ", v,
               " exceeds the CUDA kernels' limit of 2^31 - 1");
  return int(v);
}

// The geometry from the input-side shape xs (N, C, H, W), the weight's ws (K, C/g, R, S) and the
// sizes, all checked; OH, OW computed.
cuda::ConvShape make_shape(const int64_t* xs, const int64_t* ws, int64_t stride_h,
                           int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                           int64_t dil_w, int64_t groups) {
  FASTDL_CHECK(stride_h >= 1 && stride_w >= 1, ValueError, "stride: expected >= 1, got (",
               stride_h, ", ", stride_w, ")");
  FASTDL_CHECK(dil_h >= 1 && dil_w >= 1, ValueError, "dilation: expected >= 1, got (", dil_h,
               ", ", dil_w, ")");
  FASTDL_CHECK(pad_h >= 0 && pad_w >= 0, ValueError, "padding: expected >= 0, got (", pad_h,
               ", ", pad_w, ")");
  FASTDL_CHECK(groups >= 1, ValueError, "groups: expected >= 1, got ", groups);
  FASTDL_CHECK(xs[1] % groups == 0, ValueError, "groups: ", groups,
               " does not divide the input channels C = ", xs[1]);
  FASTDL_CHECK(ws[0] % groups == 0, ValueError, "groups: ", groups,
               " does not divide the output channels K = ", ws[0]);
  FASTDL_CHECK(ws[1] * groups == xs[1], ValueError, "w: expected ", xs[1] / groups,
               " input channels per group (C / groups) along axis 1, got shape (", ws[0], ", ",
               ws[1], ", ", ws[2], ", ", ws[3], ")");
  FASTDL_CHECK(ws[2] >= 1 && ws[3] >= 1, ValueError,
               "w: expected a kernel of at least 1 x 1, got shape (", ws[0], ", ", ws[1], ", ",
               ws[2], ", ", ws[3], ")");
  cuda::ConvShape s{};
  s.n = xs[0];
  s.c = narrow(xs[1], "C"), s.h = narrow(xs[2], "H"), s.w = narrow(xs[3], "W");
  s.k = narrow(ws[0], "K"), s.r = narrow(ws[2], "R"), s.s = narrow(ws[3], "S");
  s.stride_h = narrow(stride_h, "stride_h"), s.stride_w = narrow(stride_w, "stride_w");
  s.pad_h = narrow(pad_h, "pad_h"), s.pad_w = narrow(pad_w, "pad_w");
  s.dil_h = narrow(dil_h, "dil_h"), s.dil_w = narrow(dil_w, "dil_w");
  s.groups = narrow(groups, "groups");
  s.oh = narrow(out_extent(s.h, s.r, stride_h, pad_h, dil_h, "H"), "OH");
  s.ow = narrow(out_extent(s.w, s.s, stride_w, pad_w, dil_w, "W"), "OW");
  return s;
}

#define CONV_SIZES                                                                          \
  int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,          \
      int64_t dil_w, int64_t groups
#define CONV_SIZE_ARGS stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups

void conv2d_forward_py(const py::handle& y_obj, const py::handle& x_obj, const py::handle& w_obj,
                       const py::handle& b_obj, CONV_SIZES, std::uintptr_t stream,
                       bool reference) {
  const ArrayView y = cuda_view(y_obj, "y"), x = cuda_view(x_obj, "x"), w = cuda_view(w_obj, "w");
  check_output(y);
  check_4d(x);
  check_4d(w);
  const cuda::ConvShape s = make_shape(x.shape, w.shape, CONV_SIZE_ARGS);
  check_array(x, x.shape, 4);
  check_array(w, w.shape, 4);
  const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
  check_array(y, ys, 4);
  ArrayView b;
  const bool has_b = !b_obj.is_none();
  if (has_b) {
    b = cuda_view(b_obj, "b");
    const int64_t k = s.k;
    check_array(b, &k, 1);
  }
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &x, &w, has_b ? &b : nullptr});
  const float* pb = has_b ? b.data<float>() : nullptr;
  (reference ? cuda::conv2d_forward_reference : cuda::conv2d_forward)(
      y.mutable_data<float>(), x.data<float>(), w.data<float>(), pb, s, as_stream(stream));
}

// dx's H, W may exceed the smallest input that gives dy's OH, OW (conv_transpose2d's
// output_padding), as long as the formula still gives OH, OW.
void conv2d_backward_data_py(const py::handle& dx_obj, const py::handle& dy_obj,
                             const py::handle& w_obj, CONV_SIZES, std::uintptr_t stream,
                             bool reference) {
  const ArrayView dx = cuda_view(dx_obj, "dx"), dy = cuda_view(dy_obj, "dy"),
                  w = cuda_view(w_obj, "w");
  check_output(dx);
  check_4d(dx);
  check_4d(dy);
  check_4d(w);
  const cuda::ConvShape s = make_shape(dx.shape, w.shape, CONV_SIZE_ARGS);
  check_array(w, w.shape, 4);
  const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
  check_array(dy, ys, 4);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dy, &w});
  (reference ? cuda::conv2d_backward_data_reference : cuda::conv2d_backward_data)(
      dx.mutable_data<float>(), dy.data<float>(), w.data<float>(), s, as_stream(stream));
}

void conv2d_backward_weight_py(const py::handle& dw_obj, const py::handle& db_obj,
                               const py::handle& dy_obj, const py::handle& x_obj, CONV_SIZES,
                               std::uintptr_t stream, bool reference) {
  const ArrayView dw = cuda_view(dw_obj, "dw"), dy = cuda_view(dy_obj, "dy"),
                  x = cuda_view(x_obj, "x");
  check_output(dw);
  ArrayView db;
  const bool has_db = !db_obj.is_none();
  if (has_db) {
    db = cuda_view(db_obj, "db");
    check_output(db);
  }
  check_4d(dw);
  check_4d(dy);
  check_4d(x);
  const cuda::ConvShape s = make_shape(x.shape, dw.shape, CONV_SIZE_ARGS);
  check_array(x, x.shape, 4);
  const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
  check_array(dy, ys, 4);
  if (has_db) {
    const int64_t k = s.k;
    check_array(db, &k, 1);
  }
  py::gil_scoped_release nogil;
  check_on_current_device({&dw, &dy, &x, has_db ? &db : nullptr});
  float* pdb = has_db ? db.mutable_data<float>() : nullptr;
  (reference ? cuda::conv2d_backward_weight_reference : cuda::conv2d_backward_weight)(
      dw.mutable_data<float>(), pdb, dy.data<float>(), x.data<float>(), s, as_stream(stream));
}

// The py::arg list of the sizes, shared by the six functions.
#define CONV_SIZE_PYARGS                                                                    \
  py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),             \
      py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"), py::kw_only(),                 \
      py::arg("stream") = 0

}  // namespace

void bind_conv(py::module_& m) {
  for (const bool reference : {false, true}) {
    const std::string suffix = reference ? "_reference" : "";
    const std::string oracle =
        " One thread per output element, plain loops, double accumulation: the test oracle.";
    m.def(("conv2d_forward" + suffix).c_str(),
          [reference](py::object y, py::object x, py::object w, py::object b, CONV_SIZES,
                      std::uintptr_t stream) {
            conv2d_forward_py(y, x, w, b, CONV_SIZE_ARGS, stream, reference);
          },
          py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), CONV_SIZE_PYARGS,
          (R"pbdoc(y (N, K, OH, OW) = conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + b (K,) (b may be None).

OH = (H + 2*pad_h - dil_h*(R-1) - 1) // stride_h + 1, likewise OW. float32 C-contiguous CUDA
arrays; runs on `stream` (a cudaStream_t as an int) and returns before the kernel ends.)pbdoc" +
           (reference ? oracle : std::string()))
              .c_str());
    m.def(("conv2d_backward_data" + suffix).c_str(),
          [reference](py::object dx, py::object dy, py::object w, CONV_SIZES,
                      std::uintptr_t stream) {
            conv2d_backward_data_py(dx, dy, w, CONV_SIZE_ARGS, stream, reference);
          },
          py::arg("dx"), py::arg("dy"), py::arg("w"), CONV_SIZE_PYARGS,
          (R"pbdoc(dx (N, C, H, W) = the gradient of conv2d with respect to x, fully written.

H, W are read from dx and may exceed the smallest input giving dy's OH, OW (by up to stride - 1;
those rows/columns get what the windows cover), as conv_transpose2d's output_padding needs.)pbdoc" +
           (reference ? oracle : std::string()))
              .c_str());
    m.def(("conv2d_backward_weight" + suffix).c_str(),
          [reference](py::object dw, py::object db, py::object dy, py::object x, CONV_SIZES,
                      std::uintptr_t stream) {
            conv2d_backward_weight_py(dw, db, dy, x, CONV_SIZE_ARGS, stream, reference);
          },
          py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("x"), CONV_SIZE_PYARGS,
          (R"pbdoc(dw (K, C/groups, R, S) = sum over n, oh, ow of dy * x-window; db (K,) = dy summed over N, OH, OW.

db may be None (not computed). Both written (=); deterministic (split sums added in a fixed order).)pbdoc" +
           (reference ? oracle : std::string()))
              .c_str());
  }
}

}  // namespace fastdl::bindings
