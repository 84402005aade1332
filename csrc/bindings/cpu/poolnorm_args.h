// poolnorm_args.h: the argument checks of the pool and norm bindings, until the shared
// csrc/bindings/args.h lands (tag bindings-split); then these move there and this file goes.
// Messages name the argument, what was expected and what was given: TypeError for type, dtype
// and layout, ValueError for shapes and values.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/check.h"
#include "common/cpu.h"

namespace fastdl::bindings::poolnorm {

namespace py = pybind11;
using std::int64_t;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline bool same_dtype(const py::dtype& a, const py::dtype& b) { return a.is(b) || a.equal(b); }
inline std::string dtype_str(const py::dtype& d) { return std::string(py::str(d)); }

inline void check_dtype(const py::array& a, const py::dtype& want, const char* name) {
  FASTDL_CHECK(same_dtype(a.dtype(), want), TypeError, name, ": expected dtype ", dtype_str(want),
               ", got ", dtype_str(a.dtype()));
}
inline void check_ndim(const py::array& a, int ndim, const char* name) {
  FASTDL_CHECK(a.ndim() == ndim, ValueError, name, ": expected a ", ndim, "-D array, got shape ",
               shape_str(a));
}
inline void check_contiguous(const py::array& a, const char* name) {
  FASTDL_CHECK(a.flags() & py::array::c_style, TypeError, name, ": must be C-contiguous");
}
inline void check_output(const py::array& a, const char* name) {
  FASTDL_CHECK(a.writeable(), ValueError, name, ": output array is read-only");
  check_contiguous(a, name);
}
// a has exactly the given shape (ValueError naming both shapes).
inline void check_shape(const py::array& a, std::initializer_list<int64_t> want, const char* name) {
  bool ok = a.ndim() == py::ssize_t(want.size());
  std::string w = "(";
  int i = 0;
  for (int64_t d : want) {
    if (i) w += ", ";
    w += std::to_string(d);
    if (ok && a.shape(i) != d) ok = false;
    ++i;
  }
  w += want.size() == 1 ? ",)" : ")";
  FASTDL_CHECK(ok, ValueError, name, ": expected shape ", w, ", got shape ", shape_str(a));
}
// An input array: the dtype, C-contiguous, the shape.
inline void check_input(const py::array& a, const py::dtype& dt, std::initializer_list<int64_t> shape,
                        const char* name) {
  check_dtype(a, dt, name);
  check_shape(a, shape, name);
  check_contiguous(a, name);
}

template <typename F>
auto dispatch_float(const py::dtype& dt, const char* name, F&& f) {
  if (same_dtype(dt, py::dtype::of<float>())) return f(float{});
  if (same_dtype(dt, py::dtype::of<double>())) return f(double{});
  throw fastdl::TypeError(std::string(name) + ": expected dtype float32 or float64, got " + dtype_str(dt));
}

inline fastdl::Isa isa_arg(const std::optional<std::string>& isa) {
  return isa ? fastdl::isa_from_name(*isa) : fastdl::cpu_isa();
}

}  // namespace fastdl::bindings::poolnorm
