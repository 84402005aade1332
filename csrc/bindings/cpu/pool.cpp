// pool.cpp (bindings): max / avg / adaptive-avg 2-D pooling of fastdl._core (csrc/cpu/pool.h).
//
// Outputs first, then inputs, then sizes, as the pinned extension API (the CUDA module has the
// same names and positional arguments). x, dx (N, C, H, W) and y, dy, argmax (N, C, OH, OW) are
// C-contiguous arrays of one float dtype (argmax int64); the window sizes are plain ints. Every
// shape relation is checked here, so a direct caller gets a ValueError / TypeError, never a
// crash. `isa=` forces a lower instruction set; the *_reference functions are the plain loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings/cpu/poolnorm_args.h"
#include "cpu/pool.h"

namespace fastdl::bindings {

namespace {
using namespace poolnorm;

// One pooled axis ("h" or "w"): kernel >= 1, stride >= 1, 0 <= pad <= kernel / 2 (PyTorch's
// rule) and a kernel no larger than the padded input.
void check_axis(char axis, int64_t in, int64_t k, int64_t s, int64_t p) {
  FASTDL_CHECK(k >= 1, ValueError, "kernel_", axis, ": expected a kernel size >= 1, got ", k);
  FASTDL_CHECK(s >= 1, ValueError, "stride_", axis, ": expected a stride >= 1, got ", s);
  FASTDL_CHECK(p >= 0 && 2 * p <= k, ValueError, "pad_", axis, ": expected 0 <= pad <= kernel / 2 = ",
               k / 2, ", got ", p);
  FASTDL_CHECK(k <= in + 2 * p, ValueError, "kernel_", axis, ": kernel size ", k,
               " is larger than the padded input (", in, " + 2 * ", p, " = ", in + 2 * p, ")");
}

// The image side: x or dx (N, C, H, W), H and W >= 1.
void check_image(const py::array& a, const char* name) {
  check_ndim(a, 4, name);
  FASTDL_CHECK(a.shape(2) >= 1 && a.shape(3) >= 1, ValueError, name,
               ": expected an image of at least 1 x 1 (N, C, H, W), got shape ", shape_str(a));
}

// Checks big (N, C, H, W) and small (N, C, OH, OW) of one dtype for a windowed pool, and
// returns the geometry. big_out / small_out say which is written.
Pool2dShape pool_shape(const py::array& big, const char* big_name, const py::array& small,
                       const char* small_name, bool big_is_output, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const py::array& out = big_is_output ? big : small;
  const char* out_name = big_is_output ? big_name : small_name;
  check_output(out, out_name);
  check_image(big, big_name);
  check_ndim(small, 4, small_name);
  const int64_t n = big.shape(0), c = big.shape(1), h = big.shape(2), w = big.shape(3);
  check_axis('h', h, kh, sh, ph);
  check_axis('w', w, kw, sw, pw);
  const int64_t oh = pool_out_size(h, kh, sh, ph), ow = pool_out_size(w, kw, sw, pw);
  if (big_is_output)
    check_input(small, big.dtype(), {n, c, oh, ow}, small_name);
  else
    check_input(big, small.dtype(), {n, c, h, w}, big_name);
  check_shape(small, {n, c, oh, ow}, small_name);
  return {n * c, h, w, oh, ow, kh, kw, sh, sw, ph, pw};
}

void check_argmax(const py::array& argmax, const py::array& like, bool output) {
  check_dtype(argmax, py::dtype::of<int64_t>(), "argmax");
  check_shape(argmax, {like.shape(0), like.shape(1), like.shape(2), like.shape(3)}, "argmax");
  if (output)
    check_output(argmax, "argmax");
  else
    check_contiguous(argmax, "argmax");
}

void max_pool2d_forward_py(py::array y, py::array argmax, py::array x, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                           std::optional<std::string> isa, bool reference) {
  const Pool2dShape s = pool_shape(x, "x", y, "y", false, kh, kw, sh, sw, ph, pw);
  check_argmax(argmax, y, true);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y.dtype(), "y", [&](auto zero) {
    using T = decltype(zero);
    T* py_ = static_cast<T*>(y.mutable_data());
    int64_t* pa = static_cast<int64_t*>(argmax.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    if (reference)
      max_pool2d_forward_reference(py_, pa, px, s);
    else
      max_pool2d_forward(py_, pa, px, s, chosen);
    return 0;
  });
}

void max_pool2d_backward_py(py::array dx, py::array dy, py::array argmax, bool reference) {
  check_output(dx, "dx");
  check_image(dx, "dx");
  check_ndim(dy, 4, "dy");
  check_input(dy, dx.dtype(), {dx.shape(0), dx.shape(1), dy.shape(2), dy.shape(3)}, "dy");
  check_argmax(argmax, dy, false);
  const Pool2dShape s{dx.shape(0) * dx.shape(1), dx.shape(2), dx.shape(3), dy.shape(2), dy.shape(3),
                      1, 1, 1, 1, 0, 0};
  const int64_t bad = dispatch_float(dx.dtype(), "dx", [&](auto zero) {
    using T = decltype(zero);
    T* pdx = static_cast<T*>(dx.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    const int64_t* pa = static_cast<const int64_t*>(argmax.data());
    py::gil_scoped_release nogil;
    return reference ? max_pool2d_backward_reference(pdx, pdy, pa, s)
                     : max_pool2d_backward(pdx, pdy, pa, s);
  });
  if (bad >= 0) {
    const int64_t v = static_cast<const int64_t*>(argmax.data())[bad];
    FASTDL_CHECK(false, ValueError, "argmax: expected flat indices into the ", s.h, " x ", s.w,
                 " input plane (0 <= index < ", s.h * s.w, "), got ", v, " at flat position ", bad);
  }
}

void avg_pool2d_forward_py(py::array y, py::array x, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, std::optional<std::string> isa,
                           bool reference) {
  const Pool2dShape s = pool_shape(x, "x", y, "y", false, kh, kw, sh, sw, ph, pw);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y.dtype(), "y", [&](auto zero) {
    using T = decltype(zero);
    T* py_ = static_cast<T*>(y.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    if (reference)
      avg_pool2d_forward_reference(py_, px, s);
    else
      avg_pool2d_forward(py_, px, s, chosen);
    return 0;
  });
}

void avg_pool2d_backward_py(py::array dx, py::array dy, int64_t kh, int64_t kw, int64_t sh,
                            int64_t sw, int64_t ph, int64_t pw, std::optional<std::string> isa,
                            bool reference) {
  const Pool2dShape s = pool_shape(dx, "dx", dy, "dy", true, kh, kw, sh, sw, ph, pw);
  const Isa chosen = isa_arg(isa);
  dispatch_float(dx.dtype(), "dx", [&](auto zero) {
    using T = decltype(zero);
    T* pdx = static_cast<T*>(dx.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    py::gil_scoped_release nogil;
    if (reference)
      avg_pool2d_backward_reference(pdx, pdy, s);
    else
      avg_pool2d_backward(pdx, pdy, s, chosen);
    return 0;
  });
}

// Adaptive pools: the output size comes from the small array's shape.
Pool2dShape adaptive_shape(const py::array& big, const char* big_name, const py::array& small,
                           const char* small_name, bool big_is_output) {
  check_output(big_is_output ? big : small, big_is_output ? big_name : small_name);
  check_image(big, big_name);
  check_ndim(small, 4, small_name);
  const py::array& in = big_is_output ? small : big;
  const char* in_name = big_is_output ? small_name : big_name;
  const py::array& out = big_is_output ? big : small;
  check_dtype(in, out.dtype(), in_name);
  check_contiguous(in, in_name);
  check_shape(small, {big.shape(0), big.shape(1), small.shape(2), small.shape(3)}, small_name);
  return {big.shape(0) * big.shape(1), big.shape(2), big.shape(3), small.shape(2), small.shape(3),
          1, 1, 1, 1, 0, 0};
}

void adaptive_avg_pool2d_forward_py(py::array y, py::array x, std::optional<std::string> isa,
                                    bool reference) {
  const Pool2dShape s = adaptive_shape(x, "x", y, "y", false);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y.dtype(), "y", [&](auto zero) {
    using T = decltype(zero);
    T* py_ = static_cast<T*>(y.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    if (reference)
      adaptive_avg_pool2d_forward_reference(py_, px, s);
    else
      adaptive_avg_pool2d_forward(py_, px, s, chosen);
    return 0;
  });
}

void adaptive_avg_pool2d_backward_py(py::array dx, py::array dy, std::optional<std::string> isa,
                                     bool reference) {
  const Pool2dShape s = adaptive_shape(dx, "dx", dy, "dy", true);
  const Isa chosen = isa_arg(isa);
  dispatch_float(dx.dtype(), "dx", [&](auto zero) {
    using T = decltype(zero);
    T* pdx = static_cast<T*>(dx.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    py::gil_scoped_release nogil;
    if (reference)
      adaptive_avg_pool2d_backward_reference(pdx, pdy, s);
    else
      adaptive_avg_pool2d_backward(pdx, pdy, s, chosen);
    return 0;
  });
}
}  // namespace

void bind_pool(py::module_& m) {
  // Both variants of each function: the kernel (isa= keyword) and its plain-loop oracle.
  for (const bool ref : {false, true}) {
    const std::string sfx = ref ? "_reference" : "";
    const char* oracle = "The plain-loop oracle of the kernel without the suffix (isa is ignored).";
    m.def(("max_pool2d_forward" + sfx).c_str(),
          [ref](py::array y, py::array argmax, py::array x, int64_t kh, int64_t kw, int64_t sh,
                int64_t sw, int64_t ph, int64_t pw, std::optional<std::string> isa) {
            max_pool2d_forward_py(std::move(y), std::move(argmax), std::move(x), kh, kw, sh, sw,
                                  ph, pw, std::move(isa), ref);
          },
          py::arg("y").noconvert(), py::arg("argmax").noconvert(), py::arg("x").noconvert(),
          py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"),
          py::arg("pad_h"), py::arg("pad_w"), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle
              : R"pbdoc(y, argmax (N, C, OH, OW) = max over each kh x kw window of x (N, C, H, W).

OH = (H + 2 pad_h - kernel_h) // stride_h + 1 (floor mode), likewise OW; 0 <= pad <= kernel / 2;
padding is -inf. argmax (int64) is the flat index ih * W + iw of the first maximum in row-major
window order (the last NaN when the window holds NaN, as PyTorch).)pbdoc");
    m.def(("max_pool2d_backward" + sfx).c_str(),
          [ref](py::array dx, py::array dy, py::array argmax) {
            max_pool2d_backward_py(std::move(dx), std::move(dy), std::move(argmax), ref);
          },
          py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("argmax").noconvert(),
          ref ? oracle
              : "dx (N, C, H, W) = 0, then dx[plane][argmax] += dy; ValueError for an index "
                "outside the H x W plane.");
    m.def(("avg_pool2d_forward" + sfx).c_str(),
          [ref](py::array y, py::array x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                int64_t ph, int64_t pw, std::optional<std::string> isa) {
            avg_pool2d_forward_py(std::move(y), std::move(x), kh, kw, sh, sw, ph, pw,
                                  std::move(isa), ref);
          },
          py::arg("y").noconvert(), py::arg("x").noconvert(), py::arg("kernel_h"),
          py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),
          py::arg("pad_w"), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle
              : "y (N, C, OH, OW) = mean over each window of x, padding counted as zeros "
                "(count_include_pad=True), floor mode.");
    m.def(("avg_pool2d_backward" + sfx).c_str(),
          [ref](py::array dx, py::array dy, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                int64_t ph, int64_t pw, std::optional<std::string> isa) {
            avg_pool2d_backward_py(std::move(dx), std::move(dy), kh, kw, sh, sw, ph, pw,
                                   std::move(isa), ref);
          },
          py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("kernel_h"),
          py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),
          py::arg("pad_w"), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle
              : "dx (N, C, H, W) = the sum over the windows holding each cell of dy / (kh * kw) "
                "(written, not accumulated).");
    m.def(("adaptive_avg_pool2d_forward" + sfx).c_str(),
          [ref](py::array y, py::array x, std::optional<std::string> isa) {
            adaptive_avg_pool2d_forward_py(std::move(y), std::move(x), std::move(isa), ref);
          },
          py::arg("y").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle
              : "y (N, C, OH, OW) = mean of x (N, C, H, W) over the windows "
                "[floor(i H / OH), ceil((i + 1) H / OH)) (likewise along W); OH, OW from y.");
    m.def(("adaptive_avg_pool2d_backward" + sfx).c_str(),
          [ref](py::array dx, py::array dy, std::optional<std::string> isa) {
            adaptive_avg_pool2d_backward_py(std::move(dx), std::move(dy), std::move(isa), ref);
          },
          py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle : "dx (N, C, H, W) of adaptive_avg_pool2d_forward; H, W from dx.");
  }
}

}  // namespace fastdl::bindings
