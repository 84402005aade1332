// dense.cpp: _core bindings of the dense family -- gemm (csrc/cpu/gemm.*), sum_rows
// (csrc/cpu/reduce.*) and the one-call fast paths of fastdl.ops.matmul / linear.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/gemm.h"
#include "cpu/gemm_config.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/reduce.h"

namespace fastdl::bindings {

namespace {

// out (B?, M, N) = act(alpha * a (B?, M, K) @ b (B?, K, N) + beta * out + bias); a 2-D operand
// is shared by every batch.
void gemm_py(const py::array& out_arr, const py::array& a_arr, const py::array& b_arr,
             double alpha, double beta, const std::optional<py::array>& bias_arr, int bias_axis,
             bool relu, const std::optional<std::string>& isa, bool reference) {
  const ArrayView out = view_of(out_arr, "out"), a = view_of(a_arr, "a"), b = view_of(b_arr, "b");
  std::optional<ArrayView> bias;
  if (bias_arr) bias = view_of(*bias_arr, "bias");
  const GemmDims d = check_gemm(out, a, b, bias_axis);
  if (bias) check_gemm_bias(*bias, out, d, bias_axis);
  FASTDL_CHECK(!reference || out.ndim == 2, ValueError, "gemm_reference: 2-D operands only");
  check_whole_strides(a);
  check_whole_strides(b);
  const int oa = a.ndim - 2, ob = b.ndim - 2;
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    fastdl::GemmParams<T> p;
    p.alpha = T(alpha);
    p.beta = T(beta);
    p.bias = bias ? bias->data<T>() : nullptr;
    p.bias_axis = bias_axis == 0 ? fastdl::BiasAxis::row : fastdl::BiasAxis::col;
    p.act = relu ? fastdl::Act::relu : fastdl::Act::none;
    T* c = out.mutable_data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::gemm_reference(c, d.n, pa, a.strides[0], a.strides[1], pb, b.strides[0],
                             b.strides[1], d.m, d.n, d.k, p);
    else
      fastdl::gemm_batched(c, d.m * d.n, d.n, pa, a.ndim == 3 ? a.strides[0] : 0, a.strides[oa],
                           a.strides[oa + 1], pb, b.ndim == 3 ? b.strides[0] : 0, b.strides[ob],
                           b.strides[ob + 1], d.batch, d.m, d.n, d.k, p, chosen);
    return 0;
  });
}

// out (N,) = x (M, N) summed over rows.
void sum_rows_py(const py::array& out_arr, const py::array& x_arr, bool reference) {
  const ArrayView out = view_of(out_arr, "out"), x = view_of(x_arr, "x");
  check_sum_rows(out, x);
  const int64_t m = x.shape[0], n = x.shape[1];
  dispatch_float(out, [&](auto zero) {
    using T = decltype(zero);
    T* o = out.mutable_data<T>();
    const T* px = x.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::sum_rows_reference(o, px, m, n);
    else
      fastdl::sum_rows(o, px, m, n);
    return 0;
  });
}

// ---- dense fast paths ------------------------------------------------------------------------
//
// fastdl.ops.matmul / linear and their backward passes spend ~2 us per call converting and
// checking arguments in Python, as long as a whole 64^3 product takes. These entry points do the
// whole op in one call for the common case -- exactly numpy.ndarray operands of one float dtype,
// whole-element strides, shapes that chain, nothing empty -- with the same kernel calls the Python
// path makes, so results are bitwise the same. Anything else returns None and the Python layer
// converts, validates and reports errors as before; nothing here raises for bad input.

// dtype equality, not identity: an unpickled array carries its own, equal descriptor object.
bool same_dtype(const py::dtype& a, const py::dtype& b) { return a.is(b) || a.equal(b); }

// `h` if it is exactly a numpy.ndarray (subclasses go through numpy.asarray in Python) of float32
// or float64 in native byte order with whole-element strides and no empty axis.
std::optional<py::array> plain(py::handle h) {
  static PyObject* const ndarray =
      py::object(py::module_::import("numpy").attr("ndarray")).release().ptr();
  if (reinterpret_cast<PyObject*>(Py_TYPE(h.ptr())) != ndarray) return std::nullopt;
  auto a = py::reinterpret_borrow<py::array>(h);
  const py::dtype dt = a.dtype();
  if (!same_dtype(dt, py::dtype::of<float>()) && !same_dtype(dt, py::dtype::of<double>()))
    return std::nullopt;
  if (a.size() == 0) return std::nullopt;
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.strides(i) % a.itemsize()) return std::nullopt;
  return a;
}

// `batch` matrices of rows x cols at element strides sb (0: one matrix shared by the batch),
// rs and cs.
struct Mat {
  const void* data;
  int64_t batch, rows, cols, sb, rs, cs;
  Mat t() const { return {data, batch, cols, rows, sb, cs, rs}; }
};

// The last two axes of a 2-D or 3-D array; a 3-D array's first axis is the batch.
Mat mat(const py::array& a) {
  const py::ssize_t d = a.ndim(), item = a.itemsize();
  const bool b = d == 3;
  return {a.data(), b ? a.shape(0) : 1, a.shape(d - 2), a.shape(d - 1),
          b ? a.strides(0) / item : 0, a.strides(d - 2) / item, a.strides(d - 1) / item};
}

// Every axis but the last folded into rows (a 1-D array is one row; a has at least one axis),
// when strides allow it without a copy -- where numpy's reshape would return a view.
std::optional<Mat> rows_of(const py::array& a) {
  const py::ssize_t d = a.ndim(), item = a.itemsize();
  const int64_t cs = a.strides(d - 1) / item;
  int64_t rows = 1, rs = a.shape(d - 1) * cs;  // a lone row: the stride a reshape gives it
  for (py::ssize_t i = d - 2; i >= 0; --i) {
    const int64_t n = a.shape(i), st = a.strides(i) / item;
    if (n == 1) continue;
    if (rows == 1) rows = n, rs = st;
    else if (st == rows * rs) rows *= n;
    else return std::nullopt;
  }
  return Mat{a.data(), 1, rows, a.shape(d - 1), 0, rs, cs};
}

bool same_shape(const py::array& a, const std::vector<py::ssize_t>& shape) {
  return size_t(a.ndim()) == shape.size() && std::equal(shape.begin(), shape.end(), a.shape());
}

// c (batch x a.rows x b.cols, C-contiguous) = a @ b, with p's bias and activation.
template <typename T>
void product(void* c, const Mat& a, const Mat& b, int64_t batch, const fastdl::GemmParams<T>& p = {}) {
  fastdl::gemm_batched(static_cast<T*>(c), a.rows * b.cols, b.cols, static_cast<const T*>(a.data),
                       a.sb, a.rs, a.cs, static_cast<const T*>(b.data), b.sb, b.rs, b.cs, batch,
                       a.rows, b.cols, a.cols, p);
}

// Runs f(T{}) for the dtype of `like` (float32 or float64, as plain() ensures) with the GIL
// released.
template <typename F>
void nogil_float(const py::array& like, F&& f) {
  dispatch_float(like.dtype(), "dtype", [&](auto zero) {
    py::gil_scoped_release nogil;
    f(zero);
    return 0;
  });
}

py::object matmul_fast(py::handle ha, py::handle hb) {
  const auto a = plain(ha), b = plain(hb);
  if (!a || !b || !same_dtype(a->dtype(), b->dtype())) return py::none();
  const py::ssize_t na = a->ndim(), nb = b->ndim();
  if (na < 2 || na > 3 || nb < 2 || nb > 3) return py::none();
  Mat A = mat(*a);
  const Mat B = mat(*b);
  if (A.cols != B.rows || (na == 3 && nb == 3 && A.batch != B.batch)) return py::none();
  const int64_t batch = na == 3 ? A.batch : B.batch;
  std::vector<py::ssize_t> shape{A.rows, B.cols};
  if (na == 3 || nb == 3) shape.insert(shape.begin(), batch);
  int64_t products = batch;
  if (na == 3 && nb == 2) {  // one tall product beats B small ones, as in fastdl.ops.matmul
    const auto rows = rows_of(*a);
    if (!rows) return py::none();
    A = *rows, products = 1;
  }
  py::array out = cache_empty(a->dtype(), shape);
  nogil_float(out, [&](auto zero) {
    product<decltype(zero)>(out.mutable_data(), A, B, products);
  });
  return std::move(out);
}

py::object matmul_backward_fast(py::handle hdy, py::handle ha, py::handle hb) {
  const auto dy = plain(hdy), a = plain(ha), b = plain(hb);
  if (!dy || !a || !b || !same_dtype(a->dtype(), b->dtype()) ||
      !same_dtype(a->dtype(), dy->dtype()))
    return py::none();
  const py::ssize_t na = a->ndim(), nb = b->ndim();
  // A 2-D a with a 3-D b concatenates the batch (copies), left to Python.
  if (na < 2 || na > 3 || nb < 2 || nb > na) return py::none();
  Mat A = mat(*a);
  const Mat B = mat(*b);
  if (A.cols != B.rows || (nb == 3 && A.batch != B.batch)) return py::none();
  std::vector<py::ssize_t> shape{A.rows, B.cols};
  if (na == 3) shape.insert(shape.begin(), A.batch);
  if (!same_shape(*dy, shape)) return py::none();
  Mat DY = mat(*dy);
  int64_t products = A.batch;
  if (na == 3 && nb == 2) {  // b shared: fold the batch into the rows of one product
    const auto ar = rows_of(*a), dyr = rows_of(*dy);
    if (!ar || !dyr) return py::none();
    A = *ar, DY = *dyr, products = 1;
  }
  py::array da = cache_empty(a->dtype(), {a->shape(), a->shape() + na});
  py::array db = cache_empty(a->dtype(), {b->shape(), b->shape() + nb});
  nogil_float(da, [&](auto zero) {
    using T = decltype(zero);
    product<T>(da.mutable_data(), DY, B.t(), products);
    product<T>(db.mutable_data(), A.t(), DY, products);
  });
  return py::make_tuple(da, db);
}

// linear's x (*, in) folded into rows and w (out, in), with y's shape (*, out); nullopt unless
// they fit together.
struct LinearArgs {
  Mat x, w;
  std::vector<py::ssize_t> y_shape;
};
std::optional<LinearArgs> linear_args(const py::array& x, const py::array& w) {
  if (x.ndim() < 1 || w.ndim() != 2 || !same_dtype(x.dtype(), w.dtype())) return std::nullopt;
  const auto X = rows_of(x);
  const Mat W = mat(w);
  if (!X || X->cols != W.cols) return std::nullopt;
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  shape.back() = W.rows;
  return LinearArgs{*X, W, std::move(shape)};
}

py::object linear_fast(py::handle hx, py::handle hw, py::handle hb) {
  const auto x = plain(hx), w = plain(hw);
  const auto args = x && w ? linear_args(*x, *w) : std::nullopt;
  if (!args) return py::none();
  std::optional<py::array> b;
  if (!hb.is_none()) {
    b = plain(hb);
    if (!b || b->ndim() != 1 || b->shape(0) != args->w.rows || b->strides(0) != b->itemsize() ||
        !same_dtype(b->dtype(), w->dtype()))
      return py::none();
  }
  py::array out = cache_empty(x->dtype(), args->y_shape);
  nogil_float(out, [&](auto zero) {
    using T = decltype(zero);
    fastdl::GemmParams<T> p;
    p.bias = b ? static_cast<const T*>(b->data()) : nullptr;
    product<T>(out.mutable_data(), args->x, args->w.t(), 1, p);
  });
  return std::move(out);
}

py::object linear_backward_fast(py::handle hdy, py::handle hx, py::handle hw) {
  const auto dy = plain(hdy), x = plain(hx), w = plain(hw);
  const auto args = x && w ? linear_args(*x, *w) : std::nullopt;
  if (!args || !dy || !same_dtype(x->dtype(), dy->dtype()) ||
      !(dy->flags() & py::array::c_style) || !same_shape(*dy, args->y_shape))
    return py::none();
  const Mat DY = *rows_of(*dy), &X = args->x, &W = args->w;  // C-contiguous dy: always foldable
  py::array dx = cache_empty(x->dtype(), {x->shape(), x->shape() + x->ndim()});
  py::array dw = cache_empty(x->dtype(), {W.rows, W.cols});
  py::array db = cache_empty(x->dtype(), {W.rows});
  nogil_float(dx, [&](auto zero) {
    using T = decltype(zero);
    product<T>(dx.mutable_data(), DY, W, 1);
    product<T>(dw.mutable_data(), DY.t(), X, 1);
    fastdl::sum_rows(static_cast<T*>(db.mutable_data()), static_cast<const T*>(DY.data), DY.rows,
                     DY.cols);
  });
  return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def(
      "gemm_blocking",
      [](const py::dtype& dt, std::optional<std::string> isa) {
        return dispatch_float(dt, "dtype", [&](auto zero) {
          const auto& t = fastdl::gemm_table<decltype(zero)>(isa_arg(isa));
          py::dict d;
          d["mr"] = t.mr, d["nr"] = t.nr, d["kc"] = t.kc, d["mc"] = t.mc, d["nc"] = t.nc;
          // The loops over k and n cut them into equal slices of at most these.
          d["kc_max"] = fastdl::gemm_config::slice_cap(t.kc);
          d["nc_max"] = fastdl::gemm_config::slice_cap(t.nc);
          // The widest / tallest part of C for which A / B may be read in place, unpacked.
          d["direct_a_max_n"] = fastdl::gemm_config::kDirectAMaxPanels * t.nr;
          d["direct_b_max_m"] = fastdl::gemm_config::kDirectBMaxPanels * t.mr;
          d["direct_b_max_bytes"] = fastdl::gemm_config::kDirectBMaxBytes;  // of B per thread
          return d;
        });
      },
      py::arg("dtype"), py::arg("isa") = py::none(),
      "The GEMM register tile (mr x nr), cache blocks (kc, mc, nc; k and n are cut into equal slices of at most kc_max, nc_max) and in-place limits for a dtype and ISA.");
  m.def(
      "gemm",
      [](py::array out, py::array a, py::array b, double alpha, double beta,
         std::optional<py::array> bias, int bias_axis, bool relu,
         std::optional<std::string> isa) {
        gemm_py(out, a, b, alpha, beta, bias, bias_axis, relu, isa, false);
      },
      py::arg("out").noconvert(), py::arg("a").noconvert(), py::arg("b").noconvert(),
      py::kw_only(), py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      py::arg("bias") = py::none(), py::arg("bias_axis") = 1, py::arg("relu") = false,
      py::arg("isa") = py::none(),
      R"pbdoc(out = act(alpha * a @ b + beta * out + bias), in place.

a (B?, M, K) and b (B?, K, N) may be strided views (transposes are free); a 2-D operand is
shared across the batch. out (M, N) or (B, M, N) is C-contiguous of the same dtype (float32 or
float64). bias has length N (bias_axis=1) or M (bias_axis=0). relu applies max(0, .) last.
isa forces 'generic', 'avx2' or 'avx512' (capped at what the CPU supports).)pbdoc");
  m.def("matmul", &matmul_fast, py::arg("a"), py::arg("b"),
        "fastdl.ops.matmul in one call for plain float ndarrays; None for anything else.");
  m.def("matmul_backward", &matmul_backward_fast, py::arg("dy"), py::arg("a"), py::arg("b"),
        "fastdl.ops.matmul_backward in one call for plain float ndarrays; None for anything else.");
  m.def("linear", &linear_fast, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        "fastdl.ops.linear in one call for plain float ndarrays; None for anything else.");
  m.def("linear_backward", &linear_backward_fast, py::arg("dy"), py::arg("x"), py::arg("w"),
        "fastdl.ops.linear_backward in one call for plain float ndarrays; None for anything else.");
  m.def(
      "gemm_reference",
      [](py::array out, py::array a, py::array b, double alpha, double beta,
         std::optional<py::array> bias, int bias_axis, bool relu) {
        gemm_py(out, a, b, alpha, beta, bias, bias_axis, relu, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("a").noconvert(), py::arg("b").noconvert(),
      py::kw_only(), py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      py::arg("bias") = py::none(), py::arg("bias_axis") = 1, py::arg("relu") = false,
      "The triple-loop GEMM with the same contract as gemm (2-D only): the test oracle.");
  m.def(
      "sum_rows", [](py::array out, py::array x) { sum_rows_py(out, x, false); },
      py::arg("out").noconvert(), py::arg("x").noconvert(),
      "out (N,) = x (M, N) summed over its rows (the bias gradient).");
  m.def(
      "sum_rows_reference",
      [](py::array out, py::array x) { sum_rows_py(out, x, true); },
      py::arg("out").noconvert(), py::arg("x").noconvert(), "Plain-loop oracle for sum_rows.");
}

}  // namespace fastdl::bindings
