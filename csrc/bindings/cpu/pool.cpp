// pool.cpp: _core bindings of the pool family (csrc/cpu/pool.*): max / avg / adaptive-avg 2-D
// pooling, forward and backward, each with its plain-loop oracle.
//
// Outputs first, then inputs, then sizes, as the pinned extension API (the CUDA module has the
// same names and positional arguments). x, dx (N, C, H, W) and y, dy, argmax (N, C, OH, OW) are
// C-contiguous arrays of one float dtype (argmax int64); the window sizes are plain ints. Every
// shape relation is checked by bindings/args.h's pooling checks, so a direct caller gets a
// ValueError / TypeError, never a crash; the argmax values are checked by the kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/pool.h"

namespace fastdl::bindings {

namespace {

Pool2dShape shape_of(const Pool2dDims& d) {
  Pool2dShape s{d.planes, d.h, d.w, d.oh, d.ow, d.kh, d.kw, d.sh, d.sw, d.ph, d.pw};
  s.dh = d.dh, s.dw = d.dw;
  s.divisor_mode = d.divisor_override > 0 ? PoolDivisor::fixed
                   : d.count_include_pad  ? PoolDivisor::padded
                                          : PoolDivisor::real;
  s.divisor = d.divisor_override;
  return s;
}

// avg_pool2d's trailing options, as the Python signature spells them.
struct AvgOptions {
  bool ceil_mode;
  bool count_include_pad;
  std::optional<int64_t> divisor_override;
};

// The one-input, one-output passes (avg and adaptive-avg, forward and backward): run the
// reference or the fast kernel on the checked views with the GIL released.
template <class Ref, class Fast>
void run_one_to_one(const ArrayView& out, const ArrayView& in, const Pool2dShape& s,
                    const std::optional<std::string>& isa, bool reference, Ref ref, Fast fast) {
  const Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* pi = in.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      ref(po, pi, s);
    else
      fast(po, pi, s, chosen);
    return 0;
  });
}

void max_pool2d_forward_py(const py::array& y_arr, const py::array& argmax_arr,
                           const py::array& x_arr, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode,
                           const std::optional<std::string>& isa, bool reference) {
  const ArrayView y = view_of(y_arr, "y"), argmax = view_of(argmax_arr, "argmax"),
                  x = view_of(x_arr, "x");
  const Pool2dShape s =
      shape_of(check_pool2d(x, y, false, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode));
  check_argmax(argmax, y, true);
  const Isa chosen = isa_arg(isa);
  dispatch_float(y, [&](auto zero) {
    using T = decltype(zero);
    T* py_ = y.mutable_data<T>();
    int64_t* pa = argmax.mutable_data<int64_t>();
    const T* px = x.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      max_pool2d_forward_reference(py_, pa, px, s);
    else
      max_pool2d_forward(py_, pa, px, s, chosen);
    return 0;
  });
}

void max_pool2d_backward_py(const py::array& dx_arr, const py::array& dy_arr,
                            const py::array& argmax_arr, const std::optional<std::string>& isa,
                            bool reference) {
  const ArrayView dx = view_of(dx_arr, "dx"), dy = view_of(dy_arr, "dy"),
                  argmax = view_of(argmax_arr, "argmax");
  const Pool2dShape s = shape_of(check_max_pool2d_backward(dx, dy, argmax));
  const Isa chosen = isa_arg(isa);
  const int64_t bad = dispatch_float(dx, [&](auto zero) {
    using T = decltype(zero);
    T* pdx = dx.mutable_data<T>();
    const T* pdy = dy.data<T>();
    const int64_t* pa = argmax.data<int64_t>();
    py::gil_scoped_release nogil;
    return reference ? max_pool2d_backward_reference(pdx, pdy, pa, s)
                     : max_pool2d_backward(pdx, pdy, pa, s, chosen);
  });
  FASTDL_CHECK(bad < 0, ValueError, "argmax: expected flat indices into the ", s.h, " x ", s.w,
               " input plane (0 <= index < ", s.h * s.w, "), got ",
               bad < 0 ? 0 : argmax.data<int64_t>()[bad], " at flat position ", bad);
}

void avg_pool2d_forward_py(const py::array& y_arr, const py::array& x_arr, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw, const AvgOptions& opt,
                           const std::optional<std::string>& isa, bool reference) {
  const ArrayView y = view_of(y_arr, "y"), x = view_of(x_arr, "x");
  run_one_to_one(y, x,
                 shape_of(check_avg_pool2d(x, y, false, kh, kw, sh, sw, ph, pw, opt.ceil_mode,
                                           opt.count_include_pad, opt.divisor_override)),
                 isa, reference,
                 [](auto* o, const auto* i, const Pool2dShape& g) {
                   avg_pool2d_forward_reference(o, i, g);
                 },
                 [](auto* o, const auto* i, const Pool2dShape& g, Isa is) {
                   avg_pool2d_forward(o, i, g, is);
                 });
}

void avg_pool2d_backward_py(const py::array& dx_arr, const py::array& dy_arr, int64_t kh,
                            int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            const AvgOptions& opt, const std::optional<std::string>& isa,
                            bool reference) {
  const ArrayView dx = view_of(dx_arr, "dx"), dy = view_of(dy_arr, "dy");
  run_one_to_one(dx, dy,
                 shape_of(check_avg_pool2d(dx, dy, true, kh, kw, sh, sw, ph, pw, opt.ceil_mode,
                                           opt.count_include_pad, opt.divisor_override)),
                 isa, reference,
                 [](auto* o, const auto* i, const Pool2dShape& g) {
                   avg_pool2d_backward_reference(o, i, g);
                 },
                 [](auto* o, const auto* i, const Pool2dShape& g, Isa is) {
                   avg_pool2d_backward(o, i, g, is);
                 });
}

void adaptive_avg_pool2d_forward_py(const py::array& y_arr, const py::array& x_arr,
                                    const std::optional<std::string>& isa, bool reference) {
  const ArrayView y = view_of(y_arr, "y"), x = view_of(x_arr, "x");
  run_one_to_one(y, x, shape_of(check_adaptive_pool2d(x, y, false)), isa, reference,
                 [](auto* o, const auto* i, const Pool2dShape& g) {
                   adaptive_avg_pool2d_forward_reference(o, i, g);
                 },
                 [](auto* o, const auto* i, const Pool2dShape& g, Isa is) {
                   adaptive_avg_pool2d_forward(o, i, g, is);
                 });
}

void adaptive_avg_pool2d_backward_py(const py::array& dx_arr, const py::array& dy_arr,
                                     const std::optional<std::string>& isa, bool reference) {
  const ArrayView dx = view_of(dx_arr, "dx"), dy = view_of(dy_arr, "dy");
  run_one_to_one(dx, dy, shape_of(check_adaptive_pool2d(dx, dy, true)), isa, reference,
                 [](auto* o, const auto* i, const Pool2dShape& g) {
                   adaptive_avg_pool2d_backward_reference(o, i, g);
                 },
                 [](auto* o, const auto* i, const Pool2dShape& g, Isa is) {
                   adaptive_avg_pool2d_backward(o, i, g, is);
                 });
}

}  // namespace

void bind_pool(py::module_& m) {
  // The PyTorch options trail the window, in the Python signatures' order, with their defaults.
#define FASTDL_WINDOW_ARGS                                                                       \
  py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"),            \
      py::arg("pad_h"), py::arg("pad_w")
#define FASTDL_MAX_OPTIONS py::arg("dilation_h") = 1, py::arg("dilation_w") = 1, py::arg("ceil_mode") = false
#define FASTDL_AVG_OPTIONS                                                                       \
  py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,                             \
      py::arg("divisor_override") = py::none()
  m.def(
      "max_pool2d_forward",
      [](py::array y, py::array argmax, py::array x, int64_t kh, int64_t kw, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode,
         std::optional<std::string> isa) {
        max_pool2d_forward_py(std::move(y), std::move(argmax), std::move(x), kh, kw, sh, sw, ph, pw,
                              dh, dw, ceil_mode, std::move(isa), false);
      },
      py::arg("y").noconvert(), py::arg("argmax").noconvert(), py::arg("x").noconvert(),
      FASTDL_WINDOW_ARGS, FASTDL_MAX_OPTIONS, py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(y, argmax (N, C, OH, OW) = max over each kernel_h x kernel_w window of x (N, C, H, W).

Window cells are dilation apart; OH = (H + 2 pad_h - dilation_h (kernel_h - 1) - 1) // stride_h + 1
(ceil_mode: rounded up, less one if the last window would start at or past H + pad_h), likewise
OW; 0 <= pad <= kernel / 2; padding is -inf; every window must hold a cell of x. argmax (int64)
is the flat index ih * W + iw of the first maximum in row-major window order (the last NaN when
the window holds NaN, as PyTorch).)pbdoc");
  m.def(
      "max_pool2d_forward_reference",
      [](py::array y, py::array argmax, py::array x, int64_t kh, int64_t kw, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode) {
        max_pool2d_forward_py(std::move(y), std::move(argmax), std::move(x), kh, kw, sh, sw, ph, pw,
                              dh, dw, ceil_mode, std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("argmax").noconvert(), py::arg("x").noconvert(),
      FASTDL_WINDOW_ARGS, FASTDL_MAX_OPTIONS, "Plain-loop oracle for max_pool2d_forward.");
  m.def(
      "max_pool2d_backward",
      [](py::array dx, py::array dy, py::array argmax, std::optional<std::string> isa) {
        max_pool2d_backward_py(std::move(dx), std::move(dy), std::move(argmax), std::move(isa), false);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("argmax").noconvert(),
      py::kw_only(), py::arg("isa") = py::none(),
      "dx (N, C, H, W) = 0, then dx[plane][argmax] += dy; ValueError for an index outside the "
      "H x W plane.");
  m.def(
      "max_pool2d_backward_reference",
      [](py::array dx, py::array dy, py::array argmax) {
        max_pool2d_backward_py(std::move(dx), std::move(dy), std::move(argmax), std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::arg("argmax").noconvert(),
      "Plain-loop oracle for max_pool2d_backward.");
  m.def(
      "avg_pool2d_forward",
      [](py::array y, py::array x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override,
         std::optional<std::string> isa) {
        avg_pool2d_forward_py(std::move(y), std::move(x), kh, kw, sh, sw, ph, pw,
                              {ceil_mode, count_include_pad, divisor_override}, std::move(isa), false);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(), FASTDL_WINDOW_ARGS, FASTDL_AVG_OPTIONS,
      py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(y (N, C, OH, OW) = the sum over each window of x / divisor, as PyTorch: divisor_override if
given (> 0), else the window's cells inside the padded extent (count_include_pad=True; kh * kw
but where ceil_mode runs a window past the padding) or inside the image (False). OH as
max_pool2d_forward's without dilation.)pbdoc");
  m.def(
      "avg_pool2d_forward_reference",
      [](py::array y, py::array x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
        avg_pool2d_forward_py(std::move(y), std::move(x), kh, kw, sh, sw, ph, pw,
                              {ceil_mode, count_include_pad, divisor_override}, std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(), FASTDL_WINDOW_ARGS, FASTDL_AVG_OPTIONS,
      "Plain-loop oracle (double sums) for avg_pool2d_forward.");
  m.def(
      "avg_pool2d_backward",
      [](py::array dx, py::array dy, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override,
         std::optional<std::string> isa) {
        avg_pool2d_backward_py(std::move(dx), std::move(dy), kh, kw, sh, sw, ph, pw,
                               {ceil_mode, count_include_pad, divisor_override}, std::move(isa), false);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), FASTDL_WINDOW_ARGS, FASTDL_AVG_OPTIONS,
      py::kw_only(), py::arg("isa") = py::none(),
      "dx (N, C, H, W) = the sum over the windows holding each cell of dy / that window's divisor "
      "(avg_pool2d_forward's; written, not accumulated).");
  m.def(
      "avg_pool2d_backward_reference",
      [](py::array dx, py::array dy, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
        avg_pool2d_backward_py(std::move(dx), std::move(dy), kh, kw, sh, sw, ph, pw,
                               {ceil_mode, count_include_pad, divisor_override}, std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), FASTDL_WINDOW_ARGS, FASTDL_AVG_OPTIONS,
      "Plain-loop oracle for avg_pool2d_backward.");
#undef FASTDL_WINDOW_ARGS
#undef FASTDL_MAX_OPTIONS
#undef FASTDL_AVG_OPTIONS
  m.def(
      "adaptive_avg_pool2d_forward",
      [](py::array y, py::array x, std::optional<std::string> isa) {
        adaptive_avg_pool2d_forward_py(std::move(y), std::move(x), std::move(isa), false);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
      "y (N, C, OH, OW) = mean of x (N, C, H, W) over the windows "
      "[floor(i H / OH), ceil((i + 1) H / OH)) (likewise along W); OH, OW from y.");
  m.def(
      "adaptive_avg_pool2d_forward_reference",
      [](py::array y, py::array x) {
        adaptive_avg_pool2d_forward_py(std::move(y), std::move(x), std::nullopt, true);
      },
      py::arg("y").noconvert(), py::arg("x").noconvert(),
      "Plain-loop oracle (double sums) for adaptive_avg_pool2d_forward.");
  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::array dx, py::array dy, std::optional<std::string> isa) {
        adaptive_avg_pool2d_backward_py(std::move(dx), std::move(dy), std::move(isa), false);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
      "dx (N, C, H, W) of adaptive_avg_pool2d_forward (written); H, W from dx.");
  m.def(
      "adaptive_avg_pool2d_backward_reference",
      [](py::array dx, py::array dy) {
        adaptive_avg_pool2d_backward_py(std::move(dx), std::move(dy), std::nullopt, true);
      },
      py::arg("dx").noconvert(), py::arg("dy").noconvert(),
      "Plain-loop oracle for adaptive_avg_pool2d_backward.");
}

}  // namespace fastdl::bindings
