// core.cpp: the only file that binds the CPU kernels to Python (module fastdl._core).
//
// Functions are flat and verb-named; outputs come first and are allocated by the Python layer
// (fastdl.ops), which also does the user-facing validation. The checks here are the last line
// of defence for direct callers: wrong dtype -> TypeError, wrong shape -> ValueError, never a
// crash. Inputs may be strided views (element strides are passed to the kernels); outputs must
// be C-contiguous, writable and of the exact dtype. The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/cpu.h"
#include "common/threading.h"
#include "cpu/gemm.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/activation.h"
#include "cpu/dropout.h"
#include "cpu/elementwise.h"
#include "cpu/loss.h"
#include "cpu/reduce.h"
#include "cpu/softmax.h"

namespace py = pybind11;
using std::int64_t;

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

#define CHECK_DTYPE(arr, dt, name)                                                          \
  FASTDL_CHECK((arr).dtype().is(dt), TypeError, name, ": expected dtype ",                 \
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
  if (dt.is(py::dtype::of<float>())) return f(float{});
  if (dt.is(py::dtype::of<double>())) return f(double{});
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

}  // namespace

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = "fastdl CPU kernels (C++, SIMD + OpenMP). Use fastdl.ops, not this module directly.";

  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastdl::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastdl::RuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

#ifdef FASTDL_VERSION
  m.attr("__version__") = FASTDL_VERSION;
#endif

  m.def("cpu_isa", [] { return fastdl::isa_name(fastdl::cpu_isa()); },
        "The ISA the kernels use: generic, avx2 or avx512 (capped by FASTDL_CPU_ISA).");
  m.def("cpu_isa_supported", [] { return fastdl::isa_name(fastdl::cpu_isa_supported()); },
        "The best ISA this processor supports.");
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
          return d;
        });
      },
      py::arg("dtype"), py::arg("isa") = py::none(),
      "The GEMM register tile (mr x nr) and cache blocks (kc, mc, nc) for a dtype and ISA.");
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
}
