// norm.cpp (bindings): batch normalisation of fastdl._core (csrc/cpu/norm.h).
//
// Outputs first, then inputs, then scalars, as the pinned extension API (the CUDA module has the
// same names and positional arguments). x, y, dy, dx are C-contiguous (N, C, L) arrays of one
// float dtype; per-channel vectors are (C,) of that dtype. Optional arrays are None. The running
// statistics are updated in place: they must already be C-contiguous, writable and of x's dtype
// (TypeError otherwise: a converted copy would be updated instead). `isa=` forces a lower
// instruction set; the *_reference functions are the plain double loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings/cpu/poolnorm_args.h"
#include "cpu/norm.h"

namespace fastdl::bindings {

namespace {
using namespace poolnorm;

// A (C,) vector of dtype dt: an input (C-contiguous) or, when written, writable too.
template <typename T>
T* channel_vector(const std::optional<py::array>& a, const py::dtype& dt, int64_t c,
                  const char* name, bool written) {
  if (!a) return nullptr;
  check_dtype(*a, dt, name);
  check_shape(*a, {c}, name);
  check_contiguous(*a, name);
  if (written) FASTDL_CHECK(a->writeable(), ValueError, name, ": updated in place, but read-only");
  return static_cast<T*>(const_cast<void*>(a->data()));
}

void batch_norm_forward_py(py::array y, py::array save_mean, py::array save_invstd, py::array x,
                           std::optional<py::array> weight, std::optional<py::array> bias,
                           std::optional<py::array> running_mean,
                           std::optional<py::array> running_var, bool training, double momentum,
                           double eps, std::optional<std::string> isa, bool reference) {
  check_output(y, "y");
  check_ndim(y, 3, "y");
  const int64_t n = y.shape(0), c = y.shape(1), l = y.shape(2);
  const py::dtype dt = y.dtype();
  check_input(x, dt, {n, c, l}, "x");
  for (auto [a, name] : {std::pair{&save_mean, "save_mean"}, {&save_invstd, "save_invstd"}}) {
    check_output(*a, name);
    check_dtype(*a, dt, name);
    check_shape(*a, {c}, name);
  }
  if (training) {
    FASTDL_CHECK(n * l > 1, ValueError, "x: expected more than 1 value per channel when training, got shape ",
                 shape_str(x), " (", n * l, " per channel)");
  } else {
    FASTDL_CHECK(running_mean && running_var, ValueError,
                 "running_mean, running_var: required in eval mode (training=False), got None");
  }
  FASTDL_CHECK(std::isfinite(eps) && eps >= 0, ValueError, "eps: expected a finite value >= 0, got ", eps);
  FASTDL_CHECK(std::isfinite(momentum), ValueError, "momentum: expected a finite value, got ", momentum);
  const Isa chosen = isa_arg(isa);
  dispatch_float(dt, "y", [&](auto zero) {
    using T = decltype(zero);
    const T* w = channel_vector<T>(weight, dt, c, "weight", false);
    const T* b = channel_vector<T>(bias, dt, c, "bias", false);
    T* rm = channel_vector<T>(running_mean, dt, c, "running_mean", training);
    T* rv = channel_vector<T>(running_var, dt, c, "running_var", training);
    T* py_ = static_cast<T*>(y.mutable_data());
    T* sm = static_cast<T*>(save_mean.mutable_data());
    T* si = static_cast<T*>(save_invstd.mutable_data());
    const T* px = static_cast<const T*>(x.data());
    py::gil_scoped_release nogil;
    if (reference)
      batch_norm_forward_reference(py_, sm, si, px, w, b, rm, rv, n, c, l, training, momentum, eps);
    else
      batch_norm_forward(py_, sm, si, px, w, b, rm, rv, n, c, l, training, momentum, eps, chosen);
    return 0;
  });
}

void batch_norm_backward_py(py::array dx, py::array dweight, py::array dbias, py::array dy,
                            py::array x, std::optional<py::array> weight, py::array save_mean,
                            py::array save_invstd, bool training, std::optional<std::string> isa,
                            bool reference) {
  check_output(dx, "dx");
  check_ndim(dx, 3, "dx");
  const int64_t n = dx.shape(0), c = dx.shape(1), l = dx.shape(2);
  const py::dtype dt = dx.dtype();
  check_input(dy, dt, {n, c, l}, "dy");
  check_input(x, dt, {n, c, l}, "x");
  for (auto [a, name] : {std::pair{&dweight, "dweight"}, {&dbias, "dbias"}}) {
    check_output(*a, name);
    check_dtype(*a, dt, name);
    check_shape(*a, {c}, name);
  }
  check_input(save_mean, dt, {c}, "save_mean");
  check_input(save_invstd, dt, {c}, "save_invstd");
  const Isa chosen = isa_arg(isa);
  dispatch_float(dt, "dx", [&](auto zero) {
    using T = decltype(zero);
    const T* w = channel_vector<T>(weight, dt, c, "weight", false);
    T* pdx = static_cast<T*>(dx.mutable_data());
    T* pdw = static_cast<T*>(dweight.mutable_data());
    T* pdb = static_cast<T*>(dbias.mutable_data());
    const T* pdy = static_cast<const T*>(dy.data());
    const T* px = static_cast<const T*>(x.data());
    const T* sm = static_cast<const T*>(save_mean.data());
    const T* si = static_cast<const T*>(save_invstd.data());
    py::gil_scoped_release nogil;
    if (reference)
      batch_norm_backward_reference(pdx, pdw, pdb, pdy, px, w, sm, si, n, c, l, training);
    else
      batch_norm_backward(pdx, pdw, pdb, pdy, px, w, sm, si, n, c, l, training, chosen);
    return 0;
  });
}
}  // namespace

void bind_norm(py::module_& m) {
  for (const bool ref : {false, true}) {
    const std::string sfx = ref ? "_reference" : "";
    const char* oracle = "The plain-loop oracle (double) of the kernel without the suffix (isa is ignored).";
    m.def(("batch_norm_forward" + sfx).c_str(),
          [ref](py::array y, py::array save_mean, py::array save_invstd, py::array x,
                std::optional<py::array> weight, std::optional<py::array> bias,
                std::optional<py::array> running_mean, std::optional<py::array> running_var,
                bool training, double momentum, double eps, std::optional<std::string> isa) {
            batch_norm_forward_py(std::move(y), std::move(save_mean), std::move(save_invstd),
                                  std::move(x), std::move(weight), std::move(bias),
                                  std::move(running_mean), std::move(running_var), training,
                                  momentum, eps, std::move(isa), ref);
          },
          py::arg("y").noconvert(), py::arg("save_mean").noconvert(),
          py::arg("save_invstd").noconvert(), py::arg("x").noconvert(),
          py::arg("weight").noconvert().none(true), py::arg("bias").noconvert().none(true),
          py::arg("running_mean").noconvert().none(true),
          py::arg("running_var").noconvert().none(true), py::arg("training"),
          py::arg("momentum"), py::arg("eps"), py::kw_only(), py::arg("isa") = py::none(),
          ref ? oracle
              : R"pbdoc(Batch norm of x (N, C, L) over N and L, per channel, into y (N, C, L).

training: the batch's mean and biased variance; running_mean / running_var (None or C-contiguous
(C,) arrays of x's dtype) become (1 - momentum) old + momentum batch, the variance unbiased.
eval: normalises with running_mean / running_var (required). save_mean / save_invstd (C,)
receive the mean and 1 / sqrt(var + eps) used. weight / bias None stand for 1 and 0.)pbdoc");
    m.def(("batch_norm_backward" + sfx).c_str(),
          [ref](py::array dx, py::array dweight, py::array dbias, py::array dy, py::array x,
                std::optional<py::array> weight, py::array save_mean, py::array save_invstd,
                bool training, std::optional<std::string> isa) {
            batch_norm_backward_py(std::move(dx), std::move(dweight), std::move(dbias),
                                   std::move(dy), std::move(x), std::move(weight),
                                   std::move(save_mean), std::move(save_invstd), training,
                                   std::move(isa), ref);
          },
          py::arg("dx").noconvert(), py::arg("dweight").noconvert(), py::arg("dbias").noconvert(),
          py::arg("dy").noconvert(), py::arg("x").noconvert(),
          py::arg("weight").noconvert().none(true), py::arg("save_mean").noconvert(),
          py::arg("save_invstd").noconvert(), py::arg("training"), py::kw_only(),
          py::arg("isa") = py::none(),
          ref ? oracle
              : R"pbdoc(Gradients of batch_norm_forward: dx (N, C, L), dweight = sum dy xhat and
dbias = sum dy (C,), always written. training: dx = weight invstd (dy - mean(dy) - xhat
mean(dy xhat)); eval: dx = weight invstd dy.)pbdoc");
  }
}

}  // namespace fastdl::bindings
