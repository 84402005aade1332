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

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/cpu.h"
#include "common/threading.h"
#include "cpu/gemm.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/reduce.h"

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

  // ---- optimizers and gradient clipping ------------------------------------------------------
}
