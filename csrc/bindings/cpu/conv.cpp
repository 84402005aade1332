// conv.cpp (bindings): the conv family of fastdl._core (csrc/cpu/conv.h): conv2d_forward,
// conv2d_backward_data, conv2d_backward_weight -- the pinned extension API shared with
// fastdl._cuda (same names, same positional arguments) -- and conv2d_variant.
//
// Outputs first, then inputs, then sizes. Every array is C-contiguous (TypeError otherwise) and
// of one float dtype (TypeError); the geometry and every shape are checked by args.h's
// check_conv2d / check_conv2d_array (ValueError naming the argument and both shapes), so a
// direct caller gets an exception, never a crash. Sizes not passed are read from the arrays'
// shapes. The keyword-only `variant` (auto | reference | gemm1x1 | implicit_gemm | direct |
// winograd) and `isa` are for tests and benchmarks; conv2d_variant reports which algorithm
// `auto` picks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/conv.h"

namespace fastdl::bindings {

namespace {

fastdl::ConvShape conv_shape(const Conv2dDims& d) {
  return {d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.oh, d.ow,
          d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h, d.dil_w, d.groups};
}

fastdl::ConvAlgo algo_arg(const std::optional<std::string>& v) {
  return v ? fastdl::conv_algo_from_name(*v) : fastdl::ConvAlgo::automatic;
}

#define CONV_SIZES                                                                         \
  int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,        \
      int64_t dil_w, int64_t groups
#define CONV_SIZE_ARGS stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups

// y = conv2d(x, w) + b
void conv2d_forward_py(const py::array& y_, const py::array& x_, const py::array& w_,
                       const std::optional<py::array>& b_, CONV_SIZES,
                       const std::optional<std::string>& variant,
                       const std::optional<std::string>& isa) {
  const ArrayView y = view_of(y_, "y"), x = view_of(x_, "x"), w = view_of(w_, "w");
  const Conv2dDims d = check_conv2d(x, w, CONV_SIZE_ARGS);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    check_conv2d_array(x, x, {d.n, d.c, d.h, d.w}, false);
    check_conv2d_array(w, x, {d.k, d.c / d.groups, d.r, d.s}, false);
    check_conv2d_array(y, x, {d.n, d.k, d.oh, d.ow}, true);
    const T* pb = nullptr;
    if (b_) {
      const ArrayView b = view_of(*b_, "b");
      check_conv2d_array(b, x, {d.k}, false);
      pb = b.data<T>();
    }
    const fastdl::ConvShape s = conv_shape(d);
    const fastdl::ConvAlgo algo = algo_arg(variant);
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    fastdl::conv2d_forward(y.mutable_data<T>(), x.data<T>(), w.data<T>(), pb, s, algo, chosen);
  });
}

// dx = the gradient of conv2d with respect to x; dx's H, W may exceed the smallest input that
// gives dy's OH, OW (conv_transpose2d's output_padding) as long as the formula still gives them.
void conv2d_backward_data_py(const py::array& dx_, const py::array& dy_, const py::array& w_,
                             CONV_SIZES, const std::optional<std::string>& variant,
                             const std::optional<std::string>& isa) {
  const ArrayView dx = view_of(dx_, "dx"), dy = view_of(dy_, "dy"), w = view_of(w_, "w");
  const Conv2dDims d = check_conv2d(dx, w, CONV_SIZE_ARGS);
  dispatch_float(dy, [&](auto zero) {
    using T = decltype(zero);
    check_conv2d_array(dy, dy, {d.n, d.k, d.oh, d.ow}, false);
    check_conv2d_array(w, dy, {d.k, d.c / d.groups, d.r, d.s}, false);
    check_conv2d_array(dx, dy, {d.n, d.c, d.h, d.w}, true);
    const fastdl::ConvShape s = conv_shape(d);
    const fastdl::ConvAlgo algo = algo_arg(variant);
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    fastdl::conv2d_backward_data(dx.mutable_data<T>(), dy.data<T>(), w.data<T>(), s, algo, chosen);
  });
}

// dw = sum over n, oh, ow of dy * x-window; db = dy summed over N, OH, OW (when db is given).
void conv2d_backward_weight_py(const py::array& dw_, const std::optional<py::array>& db_,
                               const py::array& dy_, const py::array& x_, CONV_SIZES,
                               const std::optional<std::string>& variant,
                               const std::optional<std::string>& isa) {
  const ArrayView dw = view_of(dw_, "dw"), dy = view_of(dy_, "dy"), x = view_of(x_, "x");
  const Conv2dDims d = check_conv2d(x, dw, CONV_SIZE_ARGS);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    check_conv2d_array(x, x, {d.n, d.c, d.h, d.w}, false);
    check_conv2d_array(dy, x, {d.n, d.k, d.oh, d.ow}, false);
    check_conv2d_array(dw, x, {d.k, d.c / d.groups, d.r, d.s}, true);
    T* pdb = nullptr;
    if (db_) {
      const ArrayView db = view_of(*db_, "db");
      check_conv2d_array(db, x, {d.k}, true);
      pdb = db.mutable_data<T>();
    }
    const fastdl::ConvShape s = conv_shape(d);
    const fastdl::ConvAlgo algo = algo_arg(variant);
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    fastdl::conv2d_backward_weight(dw.mutable_data<T>(), pdb, dy.data<T>(), x.data<T>(), s, algo,
                                   chosen);
  });
}

// The algorithm variant='auto' runs for a pass and geometry (shapes as tuples, no arrays).
std::string conv2d_variant_py(const std::string& kind, const std::vector<int64_t>& xs,
                              const std::vector<int64_t>& ws, CONV_SIZES, const py::object& dtype,
                              const std::optional<std::string>& isa) {
  FASTDL_CHECK(xs.size() == 4, ValueError, "x_shape: expected 4 sizes, got ", xs.size());
  FASTDL_CHECK(ws.size() == 4, ValueError, "w_shape: expected 4 sizes, got ", ws.size());
  ArrayView x, w;
  x.name = "x", w.name = "w", x.ndim = w.ndim = 4;
  for (int i = 0; i < 4; ++i) x.shape[i] = xs[size_t(i)], w.shape[i] = ws[size_t(i)];
  const fastdl::ConvShape s = conv_shape(check_conv2d(x, w, CONV_SIZE_ARGS));
  fastdl::ConvPass p;
  if (kind == "forward")
    p = fastdl::ConvPass::forward;
  else if (kind == "backward_data")
    p = fastdl::ConvPass::backward_data;
  else if (kind == "backward_weight")
    p = fastdl::ConvPass::backward_weight;
  else
    throw fastdl::ValueError("kind: expected forward, backward_data or backward_weight, got '" +
                             kind + "'");
  const int bytes = int(py::dtype::from_args(dtype).itemsize());
  return fastdl::conv_algo_name(fastdl::conv_choose(p, s, bytes, isa_arg(isa)));
}

#undef CONV_SIZES
#undef CONV_SIZE_ARGS

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("y").noconvert(), py::arg("x").noconvert(),
        py::arg("w").noconvert(), py::arg("b").noconvert(), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"),
        py::arg("dil_w"), py::arg("groups"), py::kw_only(), py::arg("variant") = py::none(),
        py::arg("isa") = py::none(),
        R"pbdoc(y (N, K, OH, OW) = conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + b (K,) (b may be None).

OH = (H + 2*pad_h - dil_h*(R-1) - 1) // stride_h + 1, likewise OW. All arrays C-contiguous,
float32 or float64. variant forces an algorithm (tests); isa caps the instruction set.)pbdoc");
  m.def("conv2d_backward_data", &conv2d_backward_data_py, py::arg("dx").noconvert(),
        py::arg("dy").noconvert(), py::arg("w").noconvert(), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"),
        py::arg("dil_w"), py::arg("groups"), py::kw_only(), py::arg("variant") = py::none(),
        py::arg("isa") = py::none(),
        R"pbdoc(dx (N, C, H, W) = the gradient of conv2d with respect to x, fully written.

H, W are read from dx and may exceed the smallest input giving dy's OH, OW (by up to stride - 1;
those rows/columns get what the windows cover), as conv_transpose2d's output_padding needs.)pbdoc");
  m.def("conv2d_backward_weight", &conv2d_backward_weight_py, py::arg("dw").noconvert(),
        py::arg("db").noconvert(), py::arg("dy").noconvert(), py::arg("x").noconvert(),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"), py::kw_only(),
        py::arg("variant") = py::none(), py::arg("isa") = py::none(),
        R"pbdoc(dw (K, C/groups, R, S) = sum over n, oh, ow of dy * x-window; db (K,) = dy summed over N, OH, OW.

db may be None (not computed). Both written (=).)pbdoc");
  m.def("conv2d_variant", &conv2d_variant_py, py::arg("kind"), py::arg("x_shape"),
        py::arg("w_shape"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),
        py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
        py::arg("dtype") = py::str("float32"), py::arg("isa") = py::none(),
        "The algorithm variant='auto' runs for this kind of pass ('forward', 'backward_data', "
        "'backward_weight') and geometry: reference, gemm1x1, implicit_gemm, direct or winograd.");
}

}  // namespace fastdl::bindings
