// core.cpp: the only file that binds the CPU kernels to Python (module fastdl._core).
//
// Functions are flat and verb-named; outputs come first and are allocated by the Python layer
// (fastdl.ops), which also does the user-facing validation. The checks here are the last line
// of defence for direct callers: wrong dtype -> TypeError, wrong shape -> ValueError, never a
// crash. Inputs may be strided views (element strides are passed to the kernels); outputs must
// be C-contiguous, writable and of the exact dtype. The GIL is released around every kernel.
// The exception: the dense fast paths (matmul, linear and their backward passes, see "dense fast
// paths" below) allocate their outputs themselves and return None for what they do not take.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/exceptions.h"
#include "common/check.h"
#include "common/cpu.h"
#include "common/memory.h"
#include "common/threading.h"
#include "cpu/gemm.h"
#include "cpu/gemm_config.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/activation.h"
#include "cpu/dropout.h"
#include "cpu/elementwise.h"
#include "cpu/loss.h"
#include "cpu/optim.h"
#include "cpu/reduce.h"
#include "cpu/softmax.h"

namespace py = pybind11;
using std::int64_t;

void bind_conv(py::module_& m);  // bindings/cpu/conv.cpp
// Families bound in their own files (csrc/bindings/cpu/<family>.cpp).
namespace fastdl::bindings {
void bind_pool(py::module_& m);
void bind_norm(py::module_& m);
}  // namespace fastdl::bindings

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Element strides of `a`, or ValueError if a stride is not a whole number of elements.
std::vector<int64_t> elem_strides(const py::array& a, const char* name) {
  std::vector<int64_t> s(size_t(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    FASTDL_CHECK(a.strides(i) % a.itemsize() == 0, ValueError, name,
                 ": strides must be multiples of the item size");
    s[size_t(i)] = a.strides(i) / a.itemsize();
  }
  return s;
}

// dtype equality, not identity: an unpickled array carries its own, equal descriptor object.
bool same_dtype(const py::dtype& a, const py::dtype& b) { return a.is(b) || a.equal(b); }

#define CHECK_DTYPE(arr, dt, name)                                                          \
  FASTDL_CHECK(same_dtype((arr).dtype(), dt), TypeError, name, ": expected dtype ",                 \
               std::string(py::str(dt)), ", got ", std::string(py::str((arr).dtype())))
#define CHECK_NDIM(arr, lo, hi, name)                                                       \
  FASTDL_CHECK((arr).ndim() >= (lo) && (arr).ndim() <= (hi), ValueError, name,             \
               ": expected ", lo, (lo == hi ? "" : " or " + std::to_string(hi)),           \
               "-D array, got shape ", shape_str(arr))
#define CHECK_DIM(arr, axis, want, name)                                                    \
  FASTDL_CHECK((arr).shape(axis) == (want), ValueError, name, ": expected size ", (want),  \
               " along axis ", (axis), ", got shape ", shape_str(arr))

void check_output(const py::array& out, const char* name) {
  FASTDL_CHECK(out.writeable(), ValueError, name, ": output array is read-only");
  FASTDL_CHECK(out.flags() & py::array::c_style, TypeError, name,
               ": output must be C-contiguous, got strides that are not");
}

template <typename F>
auto dispatch_float(const py::dtype& dt, const char* name, F&& f) {
  if (same_dtype(dt, py::dtype::of<float>())) return f(float{});
  if (same_dtype(dt, py::dtype::of<double>())) return f(double{});
  throw fastdl::TypeError(std::string(name) + ": expected dtype float32 or float64, got " +
                          std::string(py::str(dt)));
}

fastdl::Isa isa_arg(const std::optional<std::string>& isa) {
  return isa ? fastdl::isa_from_name(*isa) : fastdl::cpu_isa();
}

// out (B?, M, N) = act(alpha * a (B?, M, K) @ b (B?, K, N) + beta * out + bias); a 2-D operand
// is shared by every batch.
void gemm_py(py::array out, py::array a, py::array b, double alpha, double beta,
             std::optional<py::array> bias, int bias_axis, bool relu,
             std::optional<std::string> isa, bool reference) {
  check_output(out, "out");
  CHECK_NDIM(out, 2, 3, "out");
  CHECK_NDIM(a, 2, 3, "a");
  CHECK_NDIM(b, 2, 3, "b");
  CHECK_DTYPE(a, out.dtype(), "a");
  CHECK_DTYPE(b, out.dtype(), "b");
  const bool batched = out.ndim() == 3;
  FASTDL_CHECK(batched || (a.ndim() == 2 && b.ndim() == 2), ValueError,
               "out: expected a 3-D output for a batched product, got shape ", shape_str(out));
  const int oa = int(a.ndim()) - 2, ob = int(b.ndim()) - 2, oc = int(out.ndim()) - 2;
  const int64_t m = a.shape(oa), k = a.shape(oa + 1), n = b.shape(ob + 1);
  FASTDL_CHECK(b.shape(ob) == k, ValueError, "b: expected ", k, " rows to match a of shape ",
               shape_str(a), ", got shape ", shape_str(b));
  CHECK_DIM(out, oc, m, "out");
  CHECK_DIM(out, oc + 1, n, "out");
  const int64_t batch = batched ? out.shape(0) : 1;
  if (a.ndim() == 3) CHECK_DIM(a, 0, batch, "a");
  if (b.ndim() == 3) CHECK_DIM(b, 0, batch, "b");
  FASTDL_CHECK(bias_axis == 0 || bias_axis == 1, ValueError, "bias_axis: expected 0 or 1, got ",
               bias_axis);
  if (bias) {
    CHECK_DTYPE(*bias, out.dtype(), "bias");
    CHECK_NDIM(*bias, 1, 1, "bias");
    CHECK_DIM(*bias, 0, bias_axis == 0 ? m : n, "bias");
    FASTDL_CHECK(bias->flags() & py::array::c_style, TypeError, "bias: must be contiguous");
  }
  FASTDL_CHECK(!reference || !batched, ValueError, "gemm_reference: 2-D operands only");
  const auto sa = elem_strides(a, "a"), sb = elem_strides(b, "b");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    fastdl::GemmParams<T> p;
    p.alpha = T(alpha);
    p.beta = T(beta);
    p.bias = bias ? static_cast<const T*>(bias->data()) : nullptr;
    p.bias_axis = bias_axis == 0 ? fastdl::BiasAxis::row : fastdl::BiasAxis::col;
    p.act = relu ? fastdl::Act::relu : fastdl::Act::none;
    T* c = static_cast<T*>(out.mutable_data());
    const T* pa = static_cast<const T*>(a.data());
    const T* pb = static_cast<const T*>(b.data());
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::gemm_reference(c, n, pa, sa[0], sa[1], pb, sb[0], sb[1], m, n, k, p);
    else
      fastdl::gemm_batched(c, m * n, n, pa, a.ndim() == 3 ? sa[0] : 0, sa[size_t(oa)],
                           sa[size_t(oa + 1)], pb, b.ndim() == 3 ? sb[0] : 0, sb[size_t(ob)],
                           sb[size_t(ob + 1)], batch, m, n, k, p, chosen);
    return 0;
  });
}

// An uninitialised C-contiguous array whose memory comes from the output cache (common/memory.h)
// and returns to it when the array (and every view of it) is gone.
py::array cache_empty(const py::dtype& dt, const std::vector<py::ssize_t>& shape) {
  std::size_t bytes = std::size_t(dt.itemsize());
  for (const py::ssize_t d : shape) {
    FASTDL_CHECK(d >= 0, ValueError, "shape: negative dimension ", d);
    bytes *= std::size_t(d);
  }
  struct Block {
    void* p;
    std::size_t bytes;
  };
  void* p = fastdl::output_alloc(bytes);
  if (!p) throw std::bad_alloc();
  py::capsule owner(new Block{p, bytes}, [](void* b) {
    auto* block = static_cast<Block*>(b);
    fastdl::output_free(block->p, block->bytes);
    delete block;
  });
  return py::array(dt, shape, p, owner);
}

py::array empty_py(const std::vector<py::ssize_t>& shape, const py::object& dtype) {
  return cache_empty(py::dtype::from_args(dtype), shape);
}

// out (N,) = x (M, N) summed over rows.
void sum_rows_py(py::array out, py::array x, bool reference) {
  check_output(out, "out");
  CHECK_NDIM(x, 2, 2, "x");
  CHECK_NDIM(out, 1, 1, "out");
  CHECK_DTYPE(x, out.dtype(), "x");
  CHECK_DIM(out, 0, x.shape(1), "out");
  FASTDL_CHECK(x.flags() & py::array::c_style, TypeError, "x: must be C-contiguous");
  const int64_t m = x.shape(0), n = x.shape(1);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* o = static_cast<T*>(out.mutable_data());
    const T* px = static_cast<const T*>(x.data());
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

// Runs f(T{}) for the dtype of `like` with the GIL released.
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

// ---- activations, softmax, losses, dropout, element-wise ------------------------------------

// Every input of an element-wise kernel: same dtype and shape as `like`, C-contiguous (the
// Python layer copies views).
void check_like(const py::array& a, const py::array& like, const char* name) {
  CHECK_DTYPE(a, like.dtype(), name);
  FASTDL_CHECK(a.ndim() == like.ndim() &&
                   std::equal(a.shape(), a.shape() + a.ndim(), like.shape()),
               ValueError, name, ": expected shape ", shape_str(like), ", got shape ",
               shape_str(a));
  FASTDL_CHECK(a.flags() & py::array::c_style, TypeError, name, ": must be C-contiguous");
}

void check_input(const py::array& a, const char* name) {
  FASTDL_CHECK(a.flags() & py::array::c_style, TypeError, name, ": must be C-contiguous");
}

fastdl::Activation activation_of(const std::string& name) {
  if (name == "relu") return fastdl::Activation::relu;
  if (name == "sigmoid") return fastdl::Activation::sigmoid;
  return fastdl::Activation::tanh;
}

// out = act(x)
void activation_forward_py(const std::string& act, py::array out, py::array x,
                           std::optional<std::string> isa, bool reference) {
  check_output(out, "out");
  check_like(x, out, "x");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* y = static_cast<T*>(out.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    const int64_t n = out.size();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::activation_forward_reference(activation_of(act), y, px, n);
    else
      fastdl::activation_forward(activation_of(act), y, px, n, chosen);
    return 0;
  });
}

// out = dy * act'(x), from the forward output y
void activation_backward_py(const std::string& act, py::array out, py::array dy, py::array y,
                            std::optional<std::string> isa, bool reference) {
  check_output(out, "out");
  check_like(dy, out, "dy");
  check_like(y, out, "y");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* dx = static_cast<T*>(out.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    const T* py_ = static_cast<const T*>(y.data());
    const int64_t n = out.size();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::activation_backward_reference(activation_of(act), dx, pdy, py_, n);
    else
      fastdl::activation_backward(activation_of(act), dx, pdy, py_, n, chosen);
    return 0;
  });
}

// Softmax along the last axis: rows = size / n.
std::pair<int64_t, int64_t> rows_cols(const py::array& a, const char* name) {
  FASTDL_CHECK(a.ndim() >= 1, ValueError, name, ": expected at least 1-D, got a 0-D array");
  const int64_t n = a.shape(a.ndim() - 1);
  return {n ? a.size() / n : 0, n};
}

void softmax_forward_py(py::array out, py::array x, bool log, std::optional<std::string> isa,
                        bool reference) {
  check_output(out, "out");
  check_like(x, out, "x");
  const auto [rows, n] = rows_cols(out, "out");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* y = static_cast<T*>(out.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::softmax_forward_reference(y, px, rows, n, log);
    else
      fastdl::softmax_forward(y, px, rows, n, log, chosen);
    return 0;
  });
}

void softmax_backward_py(py::array out, py::array dy, py::array y, bool log,
                         std::optional<std::string> isa, bool reference) {
  check_output(out, "out");
  check_like(dy, out, "dy");
  check_like(y, out, "y");
  const auto [rows, n] = rows_cols(out, "out");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* dx = static_cast<T*>(out.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    const T* py_ = static_cast<const T*>(y.data());
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::softmax_backward_reference(dx, pdy, py_, rows, n, log);
    else
      fastdl::softmax_backward(dx, pdy, py_, rows, n, log, chosen);
    return 0;
  });
}

void check_targets(const py::array& probs, const py::array& target) {
  CHECK_NDIM(probs, 2, 2, "probs");
  CHECK_DTYPE(target, py::dtype::of<int64_t>(), "target");
  CHECK_NDIM(target, 1, 1, "target");
  CHECK_DIM(target, 0, probs.shape(0), "target");
  check_input(target, "target");
}

// probs = softmax(logits); returns the mean loss
double cross_entropy_forward_py(py::array probs, py::array logits, py::array target,
                                std::optional<std::string> isa, bool reference) {
  check_output(probs, "probs");
  check_like(logits, probs, "logits");
  check_targets(probs, target);
  const int64_t n = probs.shape(0), c = probs.shape(1);
  FASTDL_CHECK(n > 0, ValueError, "cross_entropy: the mean over an empty batch (N = 0) is undefined");
  const int64_t* t = static_cast<const int64_t*>(target.data());
  const int64_t bad = fastdl::first_bad_target(t, n, c);
  FASTDL_CHECK(bad < 0, ValueError, "target: target[", bad, "] = ", t[bad],
               " is out of range [0, C) with C = ", c);
  const fastdl::Isa chosen = isa_arg(isa);
  return dispatch_float(probs.dtype(), "probs", [&](auto zero) {
    using T = decltype(zero);
    T* p = static_cast<T*>(probs.mutable_data());
    const T* x = static_cast<const T*>(logits.data());
    py::gil_scoped_release nogil;
    return double(reference ? fastdl::cross_entropy_forward_reference(p, x, t, n, c)
                            : fastdl::cross_entropy_forward(p, x, t, n, c, chosen));
  });
}

void cross_entropy_backward_py(py::array out, py::array probs, py::array target) {
  check_output(out, "out");
  check_like(probs, out, "probs");
  check_targets(out, target);
  const int64_t n = out.shape(0), c = out.shape(1);
  FASTDL_CHECK(n > 0, ValueError, "cross_entropy_backward: the mean over an empty batch (N = 0) is undefined");
  const int64_t* t = static_cast<const int64_t*>(target.data());
  const int64_t bad = fastdl::first_bad_target(t, n, c);
  FASTDL_CHECK(bad < 0, ValueError, "target: target[", bad, "] = ", t[bad],
               " is out of range [0, C) with C = ", c);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* d = static_cast<T*>(out.mutable_data());
    const T* p = static_cast<const T*>(probs.data());
    py::gil_scoped_release nogil;
    fastdl::cross_entropy_backward(d, p, t, n, c);
    return 0;
  });
}

// mean loss of (pred, target) for kind "mse" or "bce" (binary cross-entropy with logits)
double pointwise_loss_py(const std::string& kind, py::array pred, py::array target) {
  check_input(pred, "pred");
  check_like(target, pred, "target");
  FASTDL_CHECK(pred.size() > 0, ValueError, kind == "mse" ? "mse_loss" : "binary_cross_entropy_with_logits",
               ": the mean over zero elements is undefined");
  return dispatch_float(pred.dtype(), "pred", [&](auto zero) {
    using T = decltype(zero);
    const T* p = static_cast<const T*>(pred.data());
    const T* t = static_cast<const T*>(target.data());
    const int64_t n = pred.size();
    py::gil_scoped_release nogil;
    return double(kind == "mse" ? fastdl::mse_forward(p, t, n) : fastdl::bce_with_logits_forward(p, t, n));
  });
}

void pointwise_loss_backward_py(const std::string& kind, py::array out, py::array pred,
                                py::array target, std::optional<std::string> isa) {
  check_output(out, "out");
  check_like(pred, out, "pred");
  check_like(target, out, "target");
  FASTDL_CHECK(out.size() > 0, ValueError, kind == "mse" ? "mse_loss_backward" : "binary_cross_entropy_with_logits_backward",
               ": the mean over zero elements is undefined");
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* d = static_cast<T*>(out.mutable_data());
    const T* p = static_cast<const T*>(pred.data());
    const T* t = static_cast<const T*>(target.data());
    const int64_t n = out.size();
    py::gil_scoped_release nogil;
    if (kind == "mse")
      fastdl::mse_backward(d, p, t, n);
    else
      fastdl::bce_with_logits_backward(d, p, t, n, chosen);
    return 0;
  });
}

void check_p(double p) {
  FASTDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "p: expected a probability in [0, 1], got ", p);
}

void dropout_forward_py(py::array out, py::array mask, py::array x, double p, uint64_t seed,
                        std::optional<std::string> isa, bool reference) {
  check_output(out, "out");
  check_output(mask, "mask");
  check_like(x, out, "x");
  CHECK_DTYPE(mask, py::dtype::of<uint8_t>(), "mask");
  FASTDL_CHECK(mask.size() == out.size(), ValueError, "mask: expected shape ", shape_str(out),
               ", got shape ", shape_str(mask));
  check_p(p);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* y = static_cast<T*>(out.mutable_data());
    uint8_t* m = static_cast<uint8_t*>(mask.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    const int64_t n = out.size();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::dropout_forward_reference(y, m, px, n, p, seed);
    else
      fastdl::dropout_forward(y, m, px, n, p, seed, chosen);
    return 0;
  });
}

void dropout_backward_py(py::array out, py::array dy, py::array mask, double p) {
  check_output(out, "out");
  check_like(dy, out, "dy");
  CHECK_DTYPE(mask, py::dtype::of<uint8_t>(), "mask");
  check_input(mask, "mask");
  FASTDL_CHECK(mask.size() == out.size(), ValueError, "mask: expected shape ", shape_str(out),
               ", got shape ", shape_str(mask));
  check_p(p);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* dx = static_cast<T*>(out.mutable_data());
    const T* g = static_cast<const T*>(dy.data());
    const uint8_t* m = static_cast<const uint8_t*>(mask.data());
    const int64_t n = out.size();
    py::gil_scoped_release nogil;
    fastdl::dropout_backward(dx, g, m, n, p);
    return 0;
  });
}

// out = x + b broadcast along `axis` of x
void bias_add_py(py::array out, py::array x, py::array b, int axis) {
  check_output(out, "out");
  check_like(x, out, "x");
  CHECK_DTYPE(b, out.dtype(), "b");
  CHECK_NDIM(b, 1, 1, "b");
  check_input(b, "b");
  FASTDL_CHECK(axis >= 0 && axis < out.ndim(), ValueError, "axis: expected 0 <= axis < ",
               out.ndim(), ", got ", axis);
  CHECK_DIM(b, 0, out.shape(axis), "b");
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= out.shape(i);
  for (int i = axis + 1; i < out.ndim(); ++i) inner *= out.shape(i);
  const int64_t c = out.shape(axis);
  dispatch_float(out.dtype(), "out", [&](auto zero) {
    using T = decltype(zero);
    T* y = static_cast<T*>(out.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    const T* pb = static_cast<const T*>(b.data());
    py::gil_scoped_release nogil;
    fastdl::bias_add(y, px, pb, outer, c, inner);
    return 0;
  });
}

// ---- optimizers and gradient clipping --------------------------------------------------------

// Optimizer steps update p and its state buffers in place, so each must already be a writable
// C-contiguous ndarray of p's dtype and shape (TypeError for type/dtype/layout, ValueError for
// shape); they are taken as py::object so nothing is ever converted into a temporary. The
// gradient is only read: anything numpy.asarray accepts, converted to p's dtype if needed.
std::string type_name(const py::handle& o) { return std::string(py::str(py::type::of(o).attr("__name__"))); }

py::array inplace_arg(const py::object& o, const std::string& op, const char* name) {
  FASTDL_CHECK(py::isinstance<py::array>(o), TypeError, op, ": ", name,
               ": expected a numpy.ndarray (updated in place), got ", type_name(o));
  py::array a = py::reinterpret_borrow<py::array>(o);
  FASTDL_CHECK(same_dtype(a.dtype(), py::dtype::of<float>()) ||
                   same_dtype(a.dtype(), py::dtype::of<double>()),
               TypeError, op, ": ", name, ": expected dtype float32 or float64, got ",
               std::string(py::str(a.dtype())));
  FASTDL_CHECK(a.flags() & py::array::c_style, TypeError, op, ": ", name,
               ": expected a C-contiguous array (it is updated in place), got strides that are not");
  FASTDL_CHECK(a.writeable(), ValueError, op, ": ", name, ": array is read-only");
  return a;
}

// A state buffer of p: same dtype (TypeError) and shape (ValueError).
py::array state_arg(const py::object& o, const py::array& p, const std::string& op,
                    const char* name) {
  FASTDL_CHECK(!o.is_none(), ValueError, op, ": ", name,
               ": expected an array of p's shape and dtype, got None");
  py::array a = inplace_arg(o, op, name);
  FASTDL_CHECK(same_dtype(a.dtype(), p.dtype()), TypeError, op, ": ", name, ": expected dtype ",
               std::string(py::str(p.dtype())), " (that of p), got ", std::string(py::str(a.dtype())));
  FASTDL_CHECK(a.ndim() == p.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), p.shape()),
               ValueError, op, ": ", name, ": expected shape ", shape_str(p), " (that of p), got ",
               shape_str(a));
  return a;
}

bool overlap(const py::array& a, const py::array& b) {
  const auto* pa = static_cast<const char*>(a.data());
  const auto* pb = static_cast<const char*>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// Buffers written by one step must not share memory (the gradient may be p itself, nothing else).
void check_distinct(const std::string& op, const std::vector<std::pair<const char*, const py::array*>>& w,
                    const py::array& g) {
  for (size_t i = 0; i < w.size(); ++i) {
    for (size_t j = i + 1; j < w.size(); ++j)
      FASTDL_CHECK(!overlap(*w[i].second, *w[j].second), ValueError, op, ": ", w[i].first,
                   " and ", w[j].first, " share memory; each must be its own array");
    FASTDL_CHECK(!overlap(*w[i].second, g) || (w[i].second->data() == g.data() && i == 0),
                 ValueError, op, ": g shares memory with ", w[i].first);
  }
}

// The gradient as a C-contiguous array of p's dtype and shape (copied only when it is not one).
template <typename T>
py::array_t<T> grad_arg(const py::object& o, const py::array& p, const std::string& op) {
  FASTDL_CHECK(!o.is_none(), TypeError, op, ": g: expected an array, got None");
  py::array a = py::array::ensure(o);
  FASTDL_CHECK(a, TypeError, op, ": g: expected an array, got ", type_name(o));
  FASTDL_CHECK(std::string("biuf").find(a.dtype().kind()) != std::string::npos, TypeError, op,
               ": g: expected a real dtype, got ", std::string(py::str(a.dtype())));
  FASTDL_CHECK(a.ndim() == p.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), p.shape()),
               ValueError, op, ": g: expected shape ", shape_str(p), " (that of p), got ",
               shape_str(a));
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

// PyTorch's hyper-parameter checks ("Invalid learning rate: -1"), as ValueError.
void sgd_step_py(const py::object& p_, const py::object& g_, const py::object& buf_,
                 const fastdl::SgdHyper& h, std::optional<std::string> isa, bool reference) {
  const std::string op = "sgd_step_";
  fastdl::validate(h);
  FASTDL_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), ValueError, op,
               ": nesterov momentum requires momentum > 0 and dampening == 0, got momentum=",
               h.momentum, ", dampening=", h.dampening);
  py::array p = inplace_arg(p_, op, "p");
  const bool mom = h.momentum != 0;
  py::array buf = mom ? state_arg(buf_, p, op, "buf") : p;
  dispatch_float(p.dtype(), "p", [&](auto zero) {
    using T = decltype(zero);
    py::array_t<T> g = grad_arg<T>(g_, p, op);
    if (mom) check_distinct(op, {{"p", &p}, {"buf", &buf}}, g);
    else check_distinct(op, {{"p", &p}}, g);
    T* pp = static_cast<T*>(p.mutable_data());
    T* pb = mom ? static_cast<T*>(buf.mutable_data()) : nullptr;
    const T* pg = g.data();
    const int64_t n = p.size();
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::sgd_step_reference(pp, pb, pg, n, h);
    else fastdl::sgd_step(pp, pb, pg, n, h, chosen);
    return 0;
  });
}

void adam_step_py(const py::object& p_, const py::object& g_, const py::object& m_,
                  const py::object& v_, const py::object& max_v_, const fastdl::AdamHyper& h,
                  std::optional<std::string> isa, bool reference) {
  const std::string op = "adam_step_";
  fastdl::validate(h);
  FASTDL_CHECK(h.amsgrad || max_v_.is_none(), ValueError, op,
               ": max_v is only used with amsgrad=True");
  py::array p = inplace_arg(p_, op, "p");
  py::array m = state_arg(m_, p, op, "m");
  py::array v = state_arg(v_, p, op, "v");
  py::array mv = h.amsgrad ? state_arg(max_v_, p, op, "max_v") : p;
  dispatch_float(p.dtype(), "p", [&](auto zero) {
    using T = decltype(zero);
    py::array_t<T> g = grad_arg<T>(g_, p, op);
    if (h.amsgrad) check_distinct(op, {{"p", &p}, {"m", &m}, {"v", &v}, {"max_v", &mv}}, g);
    else check_distinct(op, {{"p", &p}, {"m", &m}, {"v", &v}}, g);
    T* pp = static_cast<T*>(p.mutable_data());
    T* pm = static_cast<T*>(m.mutable_data());
    T* pv = static_cast<T*>(v.mutable_data());
    T* pmv = h.amsgrad ? static_cast<T*>(mv.mutable_data()) : nullptr;
    const T* pg = g.data();
    const int64_t n = p.size();
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::adam_step_reference(pp, pm, pv, pmv, pg, n, h);
    else fastdl::adam_step(pp, pm, pv, pmv, pg, n, h, chosen);
    return 0;
  });
}

void rmsprop_step_py(const py::object& p_, const py::object& g_, const py::object& sq_,
                     const py::object& buf_, const py::object& gavg_,
                     const fastdl::RmspropHyper& h, std::optional<std::string> isa,
                     bool reference) {
  const std::string op = "rmsprop_step_";
  fastdl::validate(h);
  py::array p = inplace_arg(p_, op, "p");
  py::array sq = state_arg(sq_, p, op, "square_avg");
  const bool mom = h.momentum > 0;
  py::array buf = mom ? state_arg(buf_, p, op, "buf") : p;
  py::array gavg = h.centered ? state_arg(gavg_, p, op, "grad_avg") : p;
  dispatch_float(p.dtype(), "p", [&](auto zero) {
    using T = decltype(zero);
    py::array_t<T> g = grad_arg<T>(g_, p, op);
    std::vector<std::pair<const char*, const py::array*>> w{{"p", &p}, {"square_avg", &sq}};
    if (mom) w.push_back({"buf", &buf});
    if (h.centered) w.push_back({"grad_avg", &gavg});
    check_distinct(op, w, g);
    T* pp = static_cast<T*>(p.mutable_data());
    T* ps = static_cast<T*>(sq.mutable_data());
    T* pb = mom ? static_cast<T*>(buf.mutable_data()) : nullptr;
    T* pa = h.centered ? static_cast<T*>(gavg.mutable_data()) : nullptr;
    const T* pg = g.data();
    const int64_t n = p.size();
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::rmsprop_step_reference(pp, ps, pb, pa, pg, n, h);
    else fastdl::rmsprop_step(pp, ps, pb, pa, pg, n, h, chosen);
    return 0;
  });
}

void adagrad_step_py(const py::object& p_, const py::object& g_, const py::object& sum_sq_,
                     const fastdl::AdagradHyper& h, std::optional<std::string> isa,
                     bool reference) {
  const std::string op = "adagrad_step_";
  fastdl::validate(h);
  py::array p = inplace_arg(p_, op, "p");
  py::array s = state_arg(sum_sq_, p, op, "sum_sq");
  dispatch_float(p.dtype(), "p", [&](auto zero) {
    using T = decltype(zero);
    py::array_t<T> g = grad_arg<T>(g_, p, op);
    check_distinct(op, {{"p", &p}, {"sum_sq", &s}}, g);
    T* pp = static_cast<T*>(p.mutable_data());
    T* ps = static_cast<T*>(s.mutable_data());
    const T* pg = g.data();
    const int64_t n = p.size();
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::adagrad_step_reference(pp, ps, pg, n, h);
    else fastdl::adagrad_step(pp, ps, pg, n, h, chosen);
    return 0;
  });
}

// grads: an iterable of writable C-contiguous float32/float64 ndarrays (None entries skipped).
// The arrays are kept alive in `keep` while their pointers are in use.
std::vector<fastdl::GradView> grad_views(const py::iterable& grads, const std::string& op,
                                         std::vector<py::array>& keep) {
  std::vector<fastdl::GradView> views;
  size_t i = 0;
  for (const py::handle h : grads) {
    const std::string name = "grads[" + std::to_string(i++) + "]";
    if (h.is_none()) continue;
    py::array a = inplace_arg(py::reinterpret_borrow<py::object>(h), op, name.c_str());
    views.push_back({a.mutable_data(), int64_t(a.size()), same_dtype(a.dtype(), py::dtype::of<double>())});
    keep.push_back(std::move(a));
  }
  return views;
}

double grads_norm_py(const py::iterable& grads, double norm_type, std::optional<std::string> isa) {
  std::vector<py::array> keep;
  const auto views = grad_views(grads, "grads_norm", keep);
  const fastdl::Isa chosen = isa_arg(isa);
  py::gil_scoped_release nogil;
  return fastdl::grads_norm(views.data(), int64_t(views.size()), norm_type, chosen);
}

// PyTorch's clip_grad_norm_: coef = max_norm / (total + 1e-6); grads *= coef unless coef >= 1
// (a NaN total therefore makes the gradients NaN, as clamp(coef, max=1) does in PyTorch).
double clip_grad_norm_py(const py::iterable& grads, double max_norm, double norm_type,
                         bool error_if_nonfinite, std::optional<std::string> isa) {
  const std::string op = "clip_grad_norm_";
  fastdl::check_hyper(max_norm >= 0, op.c_str(), "max_norm", max_norm, ">= 0");
  fastdl::check_hyper(norm_type > 0, op.c_str(), "norm_type", norm_type, "a positive number or inf");
  std::vector<py::array> keep;
  const auto views = grad_views(grads, op, keep);
  const fastdl::Isa chosen = isa_arg(isa);
  double total = 0;
  {
    py::gil_scoped_release nogil;
    total = fastdl::grads_norm(views.data(), int64_t(views.size()), norm_type, chosen);
  }
  FASTDL_CHECK(!error_if_nonfinite || std::isfinite(total), RuntimeError, op,
               ": the total norm of order ", norm_type, " of the gradients is non-finite (",
               total, "), so it cannot be clipped; pass error_if_nonfinite=False to scale anyway");
  const double coef = max_norm / (total + 1e-6);
  if (!(coef >= 1.0)) {
    py::gil_scoped_release nogil;
    fastdl::grads_scale(views.data(), int64_t(views.size()), coef, chosen);
  }
  return total;
}

}  // namespace

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = "fastdl CPU kernels (C++, SIMD + OpenMP). Use fastdl.ops, not this module directly.";

  fastdl::bindings::register_exception_translators();
  fastdl::bindings::bind_pool(m);
  fastdl::bindings::bind_norm(m);

  bind_conv(m);

#ifdef FASTDL_VERSION
  m.attr("__version__") = FASTDL_VERSION;
#endif

  m.def("cpu_isa", [] { return fastdl::isa_name(fastdl::cpu_isa()); },
        "The ISA the kernels use: generic, avx2 or avx512 (capped by FASTDL_CPU_ISA).");
  m.def("cpu_isa_supported", [] { return fastdl::isa_name(fastdl::cpu_isa_supported()); },
        "The best ISA this processor supports.");
  m.def("empty", &empty_py, py::arg("shape"), py::arg("dtype"),
        "An uninitialised array backed by fastdl's output cache (what the CPU ops return): its "
        "memory is kept for the next array of that size instead of going back to the system.");
  m.def("empty_cache", &fastdl::output_empty_cache,
        "Return every block the output cache holds to the system.");
  m.def("cache_bytes", &fastdl::output_cached_bytes,
        "Bytes the output cache holds for reuse (at most FASTDL_CACHE_MB MiB, default 256).");
  m.def("get_num_threads", &fastdl::get_num_threads, "Threads used by fastdl's CPU kernels.");
  m.def("set_num_threads", &fastdl::set_num_threads, py::arg("n"),
        "Set the threads used by fastdl's CPU kernels (n >= 1).");

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
        gemm_py(std::move(out), std::move(a), std::move(b), alpha, beta, std::move(bias),
                bias_axis, relu, std::move(isa), false);
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
        gemm_py(std::move(out), std::move(a), std::move(b), alpha, beta, std::move(bias),
                bias_axis, relu, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("a").noconvert(), py::arg("b").noconvert(),
      py::kw_only(), py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      py::arg("bias") = py::none(), py::arg("bias_axis") = 1, py::arg("relu") = false,
      "The triple-loop GEMM with the same contract as gemm (2-D only): the test oracle.");
  m.def(
      "sum_rows", [](py::array out, py::array x) { sum_rows_py(std::move(out), std::move(x), false); },
      py::arg("out").noconvert(), py::arg("x").noconvert(),
      "out (N,) = x (M, N) summed over its rows (the bias gradient).");
  m.def(
      "sum_rows_reference",
      [](py::array out, py::array x) { sum_rows_py(std::move(out), std::move(x), true); },
      py::arg("out").noconvert(), py::arg("x").noconvert(), "Plain-loop oracle for sum_rows.");

  // ---- activations, softmax, losses, dropout, element-wise ----------------------------------

  for (const char* act : {"relu", "sigmoid", "tanh"}) {
    const std::string a = act;
    m.def((a + "_forward").c_str(),
          [a](py::array out, py::array x, std::optional<std::string> isa) {
            activation_forward_py(a, std::move(out), std::move(x), std::move(isa), false);
          },
          py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(),
          py::arg("isa") = py::none(),
          ("out = " + a + "(x), element-wise; out and x C-contiguous, same shape and dtype.").c_str());
    m.def((a + "_forward_reference").c_str(),
          [a](py::array out, py::array x) {
            activation_forward_py(a, std::move(out), std::move(x), std::nullopt, true);
          },
          py::arg("out").noconvert(), py::arg("x").noconvert(),
          ("Plain-loop oracle for " + a + "_forward (std::exp / std::tanh).").c_str());
    m.def((a + "_backward").c_str(),
          [a](py::array out, py::array dy, py::array y, std::optional<std::string> isa) {
            activation_backward_py(a, std::move(out), std::move(dy), std::move(y), std::move(isa), false);
          },
          py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
          py::kw_only(), py::arg("isa") = py::none(),
          ("out = dy * " + a + "'(x), computed from the forward output y.").c_str());
    m.def((a + "_backward_reference").c_str(),
          [a](py::array out, py::array dy, py::array y) {
            activation_backward_py(a, std::move(out), std::move(dy), std::move(y), std::nullopt, true);
          },
          py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
          ("Plain-loop oracle for " + a + "_backward.").c_str());
  }

  m.def(
      "softmax_forward",
      [](py::array out, py::array x, bool log, std::optional<std::string> isa) {
        softmax_forward_py(std::move(out), std::move(x), log, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("log") = false,
      py::arg("isa") = py::none(),
      R"pbdoc(out = softmax(x) (or log_softmax with log=True) along the LAST axis.

x and out C-contiguous, same shape and dtype. A row that is all -inf gives zeros (log: -inf).)pbdoc");
  m.def(
      "softmax_forward_reference",
      [](py::array out, py::array x, bool log) {
        softmax_forward_py(std::move(out), std::move(x), log, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("x").noconvert(), py::kw_only(), py::arg("log") = false,
      "Plain-loop oracle for softmax_forward.");
  m.def(
      "softmax_backward",
      [](py::array out, py::array dy, py::array y, bool log, std::optional<std::string> isa) {
        softmax_backward_py(std::move(out), std::move(dy), std::move(y), log, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
      py::kw_only(), py::arg("log") = false, py::arg("isa") = py::none(),
      "out = dx of softmax (y * (dy - sum(dy * y))) or log_softmax (dy - exp(y) * sum(dy)) along "
      "the last axis, from the forward output y.");
  m.def(
      "softmax_backward_reference",
      [](py::array out, py::array dy, py::array y, bool log) {
        softmax_backward_py(std::move(out), std::move(dy), std::move(y), log, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("dy").noconvert(), py::arg("y").noconvert(),
      py::kw_only(), py::arg("log") = false, "Plain-loop oracle for softmax_backward.");

  m.def(
      "cross_entropy_forward",
      [](py::array probs, py::array logits, py::array target, std::optional<std::string> isa) {
        return cross_entropy_forward_py(std::move(probs), std::move(logits), std::move(target),
                                        std::move(isa), false);
      },
      py::arg("probs").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Fused softmax + cross-entropy: fills probs (N, C) = softmax(logits) and returns the
mean loss over the N rows as a Python float. target is int64 (N,) with values in [0, C).)pbdoc");
  m.def(
      "cross_entropy_forward_reference",
      [](py::array probs, py::array logits, py::array target) {
        return cross_entropy_forward_py(std::move(probs), std::move(logits), std::move(target),
                                        std::nullopt, true);
      },
      py::arg("probs").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      "Plain-loop oracle for cross_entropy_forward.");
  m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("out").noconvert(),
        py::arg("probs").noconvert(), py::arg("target").noconvert(),
        "out (N, C) = (probs - onehot(target)) / N.");
  m.def(
      "mse_forward",
      [](py::array pred, py::array target) {
        return pointwise_loss_py("mse", std::move(pred), std::move(target));
      },
      py::arg("pred").noconvert(), py::arg("target").noconvert(),
      "mean((pred - target)^2) as a Python float (accumulated in double).");
  m.def(
      "mse_backward",
      [](py::array out, py::array pred, py::array target) {
        pointwise_loss_backward_py("mse", std::move(out), std::move(pred), std::move(target),
                                   std::nullopt);
      },
      py::arg("out").noconvert(), py::arg("pred").noconvert(), py::arg("target").noconvert(),
      "out = 2 (pred - target) / numel.");
  m.def(
      "bce_with_logits_forward",
      [](py::array logits, py::array target) {
        return pointwise_loss_py("bce", std::move(logits), std::move(target));
      },
      py::arg("logits").noconvert(), py::arg("target").noconvert(),
      "mean(max(x, 0) - x t + log1p(exp(-|x|))) as a Python float.");
  m.def(
      "bce_with_logits_backward",
      [](py::array out, py::array logits, py::array target, std::optional<std::string> isa) {
        pointwise_loss_backward_py("bce", std::move(out), std::move(logits), std::move(target),
                                   std::move(isa));
      },
      py::arg("out").noconvert(), py::arg("logits").noconvert(), py::arg("target").noconvert(),
      py::kw_only(), py::arg("isa") = py::none(), "out = (sigmoid(logits) - target) / numel.");

  m.def(
      "dropout_forward",
      [](py::array out, py::array mask, py::array x, double p, uint64_t seed,
         std::optional<std::string> isa) {
        dropout_forward_py(std::move(out), std::move(mask), std::move(x), p, seed, std::move(isa), false);
      },
      py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("x").noconvert(),
      py::arg("p"), py::arg("seed"), py::kw_only(), py::arg("isa") = py::none(),
      R"pbdoc(Inverted dropout: mask (uint8, 1 = kept) from a counter-based hash of (seed, index),
out = mask ? x / (1 - p) : 0. The same mask for every thread count and ISA.)pbdoc");
  m.def(
      "dropout_forward_reference",
      [](py::array out, py::array mask, py::array x, double p, uint64_t seed) {
        dropout_forward_py(std::move(out), std::move(mask), std::move(x), p, seed, std::nullopt, true);
      },
      py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("x").noconvert(),
      py::arg("p"), py::arg("seed"), "Element-at-a-time oracle for dropout_forward.");
  m.def("dropout_backward", &dropout_backward_py, py::arg("out").noconvert(),
        py::arg("dy").noconvert(), py::arg("mask").noconvert(), py::arg("p"),
        "out = mask ? dy / (1 - p) : 0.");
  m.def("bias_add", &bias_add_py, py::arg("out").noconvert(), py::arg("x").noconvert(),
        py::arg("b").noconvert(), py::arg("axis") = 1,
        "out = x + b, b (x.shape[axis],) broadcast along `axis`; all C-contiguous.");

  // ---- optimizers and gradient clipping ------------------------------------------------------
  m.def(
      "sgd_step_",
      [](py::object p, py::object g, py::object buf, double lr, double momentum,
         double weight_decay, bool nesterov, double dampening, bool maximize, bool first_step,
         std::optional<std::string> isa, bool reference) {
        fastdl::SgdHyper h;
        h.lr = lr, h.momentum = momentum, h.dampening = dampening, h.weight_decay = weight_decay;
        h.nesterov = nesterov, h.maximize = maximize, h.first_step = first_step;
        sgd_step_py(p, g, buf, h, std::move(isa), reference);
      },
      py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("lr"), py::arg("momentum") = 0.0,
      py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("dampening") = 0.0,
      py::kw_only(), py::arg("maximize") = false, py::arg("first_step") = false,
      py::arg("isa") = py::none(), py::arg("reference") = false,
      R"pbdoc(One SGD step, in place on p and buf (PyTorch's torch.optim.SGD update).

d = g (+ weight_decay * p); with momentum: buf = d on the first step (first_step=True), else
buf = momentum * buf + (1 - dampening) * d; d = d + momentum * buf (nesterov) or buf;
p -= lr * d. buf may be None when momentum == 0. isa / reference: for tests.)pbdoc");
  m.def(
      "adam_step_",
      [](py::object p, py::object g, py::object m_, py::object v, double step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool decoupled,
         bool amsgrad, py::object max_v, bool maximize, std::optional<std::string> isa,
         bool reference) {
        fastdl::AdamHyper h;
        h.step = step, h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps;
        h.weight_decay = weight_decay, h.decoupled = decoupled, h.amsgrad = amsgrad;
        h.maximize = maximize;
        adam_step_py(p, g, m_, v, max_v, h, std::move(isa), reference);
      },
      py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay") = 0.0,
      py::arg("decoupled") = false, py::kw_only(), py::arg("amsgrad") = false,
      py::arg("max_v") = py::none(), py::arg("maximize") = false, py::arg("isa") = py::none(),
      py::arg("reference") = false,
      R"pbdoc(One Adam (decoupled=False) or AdamW (decoupled=True) step, in place on p, m, v.

step is the 1-based step count of the bias corrections. p -= lr / (1 - beta1^step) * m /
(sqrt(v_hat) / sqrt(1 - beta2^step) + eps); amsgrad keeps v_hat = max_v = max(max_v, v).)pbdoc");
  m.def(
      "rmsprop_step_",
      [](py::object p, py::object g, py::object square_avg, double lr, double alpha, double eps,
         double weight_decay, double momentum, py::object buf, bool centered,
         py::object grad_avg, bool maximize, std::optional<std::string> isa, bool reference) {
        fastdl::RmspropHyper h;
        h.lr = lr, h.alpha = alpha, h.eps = eps, h.weight_decay = weight_decay;
        h.momentum = momentum, h.centered = centered, h.maximize = maximize;
        rmsprop_step_py(p, g, square_avg, buf, grad_avg, h, std::move(isa), reference);
      },
      py::arg("p"), py::arg("g"), py::arg("square_avg"), py::arg("lr"), py::arg("alpha") = 0.99,
      py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
      py::arg("buf") = py::none(), py::arg("centered") = false,
      py::arg("grad_avg") = py::none(), py::kw_only(), py::arg("maximize") = false,
      py::arg("isa") = py::none(), py::arg("reference") = false,
      R"pbdoc(One RMSprop step, in place (PyTorch's torch.optim.RMSprop update; eps after sqrt).

buf is needed when momentum > 0, grad_avg when centered.)pbdoc");
  m.def(
      "adagrad_step_",
      [](py::object p, py::object g, py::object sum_sq, double lr, double eps,
         double weight_decay, bool maximize, std::optional<std::string> isa, bool reference) {
        fastdl::AdagradHyper h;
        h.lr = lr, h.eps = eps, h.weight_decay = weight_decay, h.maximize = maximize;
        adagrad_step_py(p, g, sum_sq, h, std::move(isa), reference);
      },
      py::arg("p"), py::arg("g"), py::arg("sum_sq"), py::arg("lr"), py::arg("eps") = 1e-10,
      py::arg("weight_decay") = 0.0, py::kw_only(), py::arg("maximize") = false,
      py::arg("isa") = py::none(), py::arg("reference") = false,
      R"pbdoc(One Adagrad step, in place: sum_sq += d*d; p -= lr * d / (sqrt(sum_sq) + eps).

lr is PyTorch's decayed rate lr / (1 + (step - 1) * lr_decay), computed by the caller.)pbdoc");
  m.def("grads_norm", &grads_norm_py, py::arg("grads"), py::arg("norm_type") = 2.0,
        py::kw_only(), py::arg("isa") = py::none(),
        "The norm of all the arrays together, accumulated in float64 (norm_type > 0 or inf).");
  m.def("clip_grad_norm_", &clip_grad_norm_py, py::arg("grads"), py::arg("max_norm"),
        py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false, py::kw_only(),
        py::arg("isa") = py::none(),
        R"pbdoc(Scale the arrays in place so their total norm is at most max_norm; returns the
total norm before clipping (PyTorch's torch.nn.utils.clip_grad_norm_).)pbdoc");
}
