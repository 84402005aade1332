// bindings/cpu/conv.cpp: the conv family of fastdl._core (conv2d_forward, conv2d_backward_data,
// conv2d_backward_weight), the pinned extension API shared with fastdl._cuda.
//
// Every array is C-contiguous (TypeError otherwise) and of one float dtype (TypeError); every
// shape relation is checked (ValueError naming the argument and both shapes), so a direct caller
// gets an exception, never a crash. Sizes not passed are read from the arrays' shapes. The
// keyword-only `variant` (auto | reference | gemm1x1 | implicit_gemm | direct) and `isa` are for
// tests and benchmarks; conv2d_variant reports which algorithm `auto` picks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/check.h"
#include "common/cpu.h"
#include "cpu/conv.h"

namespace py = pybind11;
using std::int64_t;

namespace {

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string shape_of(const int64_t* d, int nd) {
  std::string s = "(";
  for (int i = 0; i < nd; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (nd == 1 ? ",)" : ")");
}

bool same_dtype(const py::dtype& a, const py::dtype& b) { return a.is(b) || a.equal(b); }

// a: C-contiguous, dtype dt, exactly `shape` (nd dims).
void check_array(const py::array& a, const char* name, const py::dtype& dt, const int64_t* shape,
                 int nd) {
  FASTDL_CHECK(same_dtype(a.dtype(), dt), TypeError, name, ": expected dtype ",
               std::string(py::str(dt)), ", got ", std::string(py::str(a.dtype())));
  FASTDL_CHECK(a.flags() & py::array::c_style, TypeError, name, ": must be C-contiguous");
  bool ok = a.ndim() == nd;
  for (int i = 0; ok && i < nd; ++i) ok = a.shape(i) == shape[i];
  FASTDL_CHECK(ok, ValueError, name, ": expected shape ", shape_of(shape, nd), ", got shape ",
               shape_of(a));
}

void check_4d(const py::array& a, const char* name) {
  FASTDL_CHECK(a.ndim() == 4, ValueError, name, ": expected a 4-D array, got shape ", shape_of(a));
}

void check_output(const py::array& a, const char* name) {
  FASTDL_CHECK(a.writeable(), ValueError, name, ": output array is read-only");
}

// Output extent along one axis, or ValueError naming the axis when the window does not fit.
int64_t out_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil,
                   const char* axis) {
  const int64_t span = in + 2 * pad - dil * (kernel - 1) - 1;
  FASTDL_CHECK(span >= 0, ValueError, "conv2d: the dilated kernel (", dil * (kernel - 1) + 1,
               ") is larger than the padded input (", in + 2 * pad, ") along ", axis);
  return span / stride + 1;
}

// The conv geometry from x's shape (N, C, H, W), w's shape (K, C/G, R, S) and the sizes, all
// checked; oh/ow computed.
fastdl::ConvShape make_shape(const int64_t* xs, const int64_t* ws, int64_t stride_h,
                             int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                             int64_t dil_w, int64_t groups) {
  FASTDL_CHECK(stride_h >= 1 && stride_w >= 1, ValueError, "stride: expected >= 1, got (",
               stride_h, ", ", stride_w, ")");
  FASTDL_CHECK(dil_h >= 1 && dil_w >= 1, ValueError, "dilation: expected >= 1, got (", dil_h, ", ",
               dil_w, ")");
  FASTDL_CHECK(pad_h >= 0 && pad_w >= 0, ValueError, "padding: expected >= 0, got (", pad_h, ", ",
               pad_w, ")");
  FASTDL_CHECK(groups >= 1, ValueError, "groups: expected >= 1, got ", groups);
  FASTDL_CHECK(xs[1] % groups == 0, ValueError, "groups: ", groups,
               " does not divide the input channels C = ", xs[1]);
  FASTDL_CHECK(ws[0] % groups == 0, ValueError, "groups: ", groups,
               " does not divide the output channels K = ", ws[0]);
  FASTDL_CHECK(ws[1] * groups == xs[1], ValueError, "w: expected ", xs[1] / groups,
               " input channels per group (C / groups) along axis 1, got shape ",
               shape_of(ws, 4));
  FASTDL_CHECK(ws[2] >= 1 && ws[3] >= 1, ValueError, "w: expected a kernel of at least 1 x 1, got shape ",
               shape_of(ws, 4));
  fastdl::ConvShape s{};
  s.n = xs[0], s.c = xs[1], s.h = xs[2], s.w = xs[3];
  s.k = ws[0], s.r = ws[2], s.s = ws[3];
  s.stride_h = stride_h, s.stride_w = stride_w, s.pad_h = pad_h, s.pad_w = pad_w;
  s.dil_h = dil_h, s.dil_w = dil_w, s.groups = groups;
  s.oh = out_extent(s.h, s.r, stride_h, pad_h, dil_h, "H");
  s.ow = out_extent(s.w, s.s, stride_w, pad_w, dil_w, "W");
  return s;
}

const int64_t* dims(const py::array& a, int64_t* buf) {
  for (int i = 0; i < 4; ++i) buf[i] = a.shape(i);
  return buf;
}

fastdl::Isa isa_of(const std::optional<std::string>& isa) {
  return isa ? fastdl::isa_from_name(*isa) : fastdl::cpu_isa();
}
fastdl::ConvAlgo algo_of(const std::optional<std::string>& v) {
  return v ? fastdl::conv_algo_from_name(*v) : fastdl::ConvAlgo::automatic;
}

template <typename F>
void dispatch_float(const py::dtype& dt, const char* name, F&& f) {
  if (same_dtype(dt, py::dtype::of<float>())) return f(float{});
  if (same_dtype(dt, py::dtype::of<double>())) return f(double{});
  throw fastdl::TypeError(std::string(name) + ": expected dtype float32 or float64, got " +
                          std::string(py::str(dt)));
}

#define CONV_SIZES int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, \
                   int64_t dil_w, int64_t groups
#define CONV_SIZE_ARGS stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups

void conv2d_forward_py(py::array y, py::array x, py::array w, std::optional<py::array> b,
                       CONV_SIZES, std::optional<std::string> variant,
                       std::optional<std::string> isa) {
  check_output(y, "y");
  check_4d(x, "x");
  check_4d(w, "w");
  int64_t xb[4], wb[4];
  const fastdl::ConvShape s = make_shape(dims(x, xb), dims(w, wb), CONV_SIZE_ARGS);
  dispatch_float(x.dtype(), "x", [&](auto zero) {
    using T = decltype(zero);
    const py::dtype dt = py::dtype::of<T>();
    check_array(x, "x", dt, xb, 4);
    check_array(w, "w", dt, wb, 4);
    const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
    check_array(y, "y", dt, ys, 4);
    if (b) check_array(*b, "b", dt, &s.k, 1);
    const fastdl::ConvAlgo algo = algo_of(variant);
    const fastdl::Isa chosen = isa_of(isa);
    T* py_ = static_cast<T*>(y.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    const T* pw = static_cast<const T*>(w.data());
    const T* pb = b ? static_cast<const T*>(b->data()) : nullptr;
    py::gil_scoped_release nogil;
    fastdl::conv2d_forward(py_, px, pw, pb, s, algo, chosen);
  });
}

// dx's H, W may exceed the smallest input that gives dy's OH, OW (conv_transpose2d's
// output_padding), as long as the formula still gives OH, OW.
void conv2d_backward_data_py(py::array dx, py::array dy, py::array w, CONV_SIZES,
                             std::optional<std::string> variant, std::optional<std::string> isa) {
  check_output(dx, "dx");
  check_4d(dx, "dx");
  check_4d(dy, "dy");
  check_4d(w, "w");
  int64_t xb[4], wb[4];
  const fastdl::ConvShape s = make_shape(dims(dx, xb), dims(w, wb), CONV_SIZE_ARGS);
  dispatch_float(dy.dtype(), "dy", [&](auto zero) {
    using T = decltype(zero);
    const py::dtype dt = py::dtype::of<T>();
    check_array(dx, "dx", dt, xb, 4);
    check_array(w, "w", dt, wb, 4);
    const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
    check_array(dy, "dy", dt, ys, 4);
    const fastdl::ConvAlgo algo = algo_of(variant);
    const fastdl::Isa chosen = isa_of(isa);
    T* pdx = static_cast<T*>(dx.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    const T* pw = static_cast<const T*>(w.data());
    py::gil_scoped_release nogil;
    fastdl::conv2d_backward_data(pdx, pdy, pw, s, algo, chosen);
  });
}

void conv2d_backward_weight_py(py::array dw, std::optional<py::array> db, py::array dy,
                               py::array x, CONV_SIZES, std::optional<std::string> variant,
                               std::optional<std::string> isa) {
  check_output(dw, "dw");
  if (db) check_output(*db, "db");
  check_4d(dw, "dw");
  check_4d(dy, "dy");
  check_4d(x, "x");
  int64_t xb[4], wb[4];
  const fastdl::ConvShape s = make_shape(dims(x, xb), dims(dw, wb), CONV_SIZE_ARGS);
  dispatch_float(x.dtype(), "x", [&](auto zero) {
    using T = decltype(zero);
    const py::dtype dt = py::dtype::of<T>();
    check_array(x, "x", dt, xb, 4);
    check_array(dw, "dw", dt, wb, 4);
    const int64_t ys[4] = {s.n, s.k, s.oh, s.ow};
    check_array(dy, "dy", dt, ys, 4);
    if (db) check_array(*db, "db", dt, &s.k, 1);
    const fastdl::ConvAlgo algo = algo_of(variant);
    const fastdl::Isa chosen = isa_of(isa);
    T* pdw = static_cast<T*>(dw.mutable_data());
    T* pdb = db ? static_cast<T*>(db->mutable_data()) : nullptr;
    const T* pdy = static_cast<const T*>(dy.data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    fastdl::conv2d_backward_weight(pdw, pdb, pdy, px, s, algo, chosen);
  });
}

std::string conv2d_variant_py(const std::string& pass, std::vector<int64_t> xs,
                              std::vector<int64_t> ws, CONV_SIZES, const py::object& dtype,
                              std::optional<std::string> isa) {
  FASTDL_CHECK(xs.size() == 4, ValueError, "x_shape: expected 4 sizes, got ", xs.size());
  FASTDL_CHECK(ws.size() == 4, ValueError, "w_shape: expected 4 sizes, got ", ws.size());
  const fastdl::ConvShape s = make_shape(xs.data(), ws.data(), CONV_SIZE_ARGS);
  fastdl::ConvPass p;
  if (pass == "forward")
    p = fastdl::ConvPass::forward;
  else if (pass == "backward_data")
    p = fastdl::ConvPass::backward_data;
  else if (pass == "backward_weight")
    p = fastdl::ConvPass::backward_weight;
  else
    throw fastdl::ValueError("pass: expected forward, backward_data or backward_weight, got '" +
                             pass + "'");
  const int bytes = int(py::dtype::from_args(dtype).itemsize());
  return fastdl::conv_algo_name(fastdl::conv_choose(p, s, bytes, isa_of(isa)));
}

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
  m.def("conv2d_variant", &conv2d_variant_py, py::arg("pass"), py::arg("x_shape"),
        py::arg("w_shape"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),
        py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
        py::arg("dtype") = py::str("float32"), py::arg("isa") = py::none(),
        "The algorithm variant='auto' runs for this pass ('forward', 'backward_data', "
        "'backward_weight') and geometry: reference, gemm1x1, implicit_gemm or direct.");
}
