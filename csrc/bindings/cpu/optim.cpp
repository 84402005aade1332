// optim.cpp: _core bindings of the optimizer family (csrc/cpu/optim.*): fused SGD, Adam(W),
// RMSprop and Adagrad steps in place, gradient norms and clipping.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/optim.h"

namespace fastdl::bindings {

namespace {

// Optimizer steps update p and its state buffers in place, so each must already be a writable
// C-contiguous ndarray of p's dtype and shape (TypeError for type/dtype/layout, ValueError for
// shape); they are taken as py::object so nothing is ever converted into a temporary. The
// gradient is only read: anything numpy.asarray accepts, converted to p's dtype if needed.
std::string type_name(const py::handle& o) { return std::string(py::str(py::type::of(o).attr("__name__"))); }

ArrayView inplace_arg(const py::object& o, const std::string& op, const char* name) {
  FASTDL_CHECK(py::isinstance<py::array>(o), TypeError, op, ": ", name,
               ": expected a numpy.ndarray (updated in place), got ", type_name(o));
  const ArrayView a = view_of(py::reinterpret_borrow<py::array>(o), name);
  FASTDL_CHECK(a.dtype == kFloat32 || a.dtype == kFloat64, TypeError, op, ": ", name,
               ": expected dtype float32 or float64, got ", a.dtype_name());
  check_inplace(a, op);
  return a;
}

// A state buffer of p: same dtype (TypeError) and shape (ValueError).
ArrayView state_arg(const py::object& o, const ArrayView& p, const std::string& op,
                    const char* name) {
  FASTDL_CHECK(!o.is_none(), ValueError, op, ": ", name,
               ": expected an array of p's shape and dtype, got None");
  const ArrayView a = inplace_arg(o, op, name);
  check_state(a, p, op);
  return a;
}

// The gradient as a C-contiguous array of p's dtype and shape (copied only when it is not one).
template <typename T>
py::array_t<T> grad_arg(const py::object& o, const ArrayView& p, const std::string& op) {
  FASTDL_CHECK(!o.is_none(), TypeError, op, ": g: expected an array, got None");
  py::array a = py::array::ensure(o);
  FASTDL_CHECK(a, TypeError, op, ": g: expected an array, got ", type_name(o));
  FASTDL_CHECK(std::string("biuf").find(a.dtype().kind()) != std::string::npos, TypeError, op,
               ": g: expected a real dtype, got ", std::string(py::str(a.dtype())));
  check_grad_shape(view_of(a, "g"), p, op);
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

// PyTorch's hyper-parameter checks ("Invalid learning rate: -1"), as ValueError.
void sgd_step_py(const py::object& p_, const py::object& g_, const py::object& buf_,
                 const fastdl::SgdHyper& h, const std::optional<std::string>& isa,
                 bool reference) {
  const std::string op = "sgd_step_";
  fastdl::validate(h);
  FASTDL_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), ValueError, op,
               ": nesterov momentum requires momentum > 0 and dampening == 0, got momentum=",
               h.momentum, ", dampening=", h.dampening);
  const ArrayView p = inplace_arg(p_, op, "p");
  const bool mom = h.momentum != 0;
  const ArrayView buf = mom ? state_arg(buf_, p, op, "buf") : p;
  dispatch_float(p, [&](auto zero) {
    using T = decltype(zero);
    const py::array_t<T> g_arr = grad_arg<T>(g_, p, op);
    const ArrayView g = view_of(g_arr, "g");
    if (mom) check_distinct(op, {&p, &buf}, g);
    else check_distinct(op, {&p}, g);
    T* pp = p.mutable_data<T>();
    T* pb = mom ? buf.mutable_data<T>() : nullptr;
    const T* pg = g.data<T>();
    const int64_t n = p.size;
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::sgd_step_reference(pp, pb, pg, n, h);
    else fastdl::sgd_step(pp, pb, pg, n, h, chosen);
    return 0;
  });
}

void adam_step_py(const py::object& p_, const py::object& g_, const py::object& m_,
                  const py::object& v_, const py::object& max_v_, const fastdl::AdamHyper& h,
                  const std::optional<std::string>& isa, bool reference) {
  const std::string op = "adam_step_";
  fastdl::validate(h);
  FASTDL_CHECK(h.amsgrad || max_v_.is_none(), ValueError, op,
               ": max_v is only used with amsgrad=True");
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView m = state_arg(m_, p, op, "m");
  const ArrayView v = state_arg(v_, p, op, "v");
  const ArrayView mv = h.amsgrad ? state_arg(max_v_, p, op, "max_v") : p;
  dispatch_float(p, [&](auto zero) {
    using T = decltype(zero);
    const py::array_t<T> g_arr = grad_arg<T>(g_, p, op);
    const ArrayView g = view_of(g_arr, "g");
    if (h.amsgrad) check_distinct(op, {&p, &m, &v, &mv}, g);
    else check_distinct(op, {&p, &m, &v}, g);
    T* pp = p.mutable_data<T>();
    T* pm = m.mutable_data<T>();
    T* pv = v.mutable_data<T>();
    T* pmv = h.amsgrad ? mv.mutable_data<T>() : nullptr;
    const T* pg = g.data<T>();
    const int64_t n = p.size;
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::adam_step_reference(pp, pm, pv, pmv, pg, n, h);
    else fastdl::adam_step(pp, pm, pv, pmv, pg, n, h, chosen);
    return 0;
  });
}

void rmsprop_step_py(const py::object& p_, const py::object& g_, const py::object& sq_,
                     const py::object& buf_, const py::object& gavg_,
                     const fastdl::RmspropHyper& h, const std::optional<std::string>& isa,
                     bool reference) {
  const std::string op = "rmsprop_step_";
  fastdl::validate(h);
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView sq = state_arg(sq_, p, op, "square_avg");
  const bool mom = h.momentum > 0;
  const ArrayView buf = mom ? state_arg(buf_, p, op, "buf") : p;
  const ArrayView gavg = h.centered ? state_arg(gavg_, p, op, "grad_avg") : p;
  dispatch_float(p, [&](auto zero) {
    using T = decltype(zero);
    const py::array_t<T> g_arr = grad_arg<T>(g_, p, op);
    const ArrayView g = view_of(g_arr, "g");
    std::vector<const ArrayView*> written{&p, &sq};
    if (mom) written.push_back(&buf);
    if (h.centered) written.push_back(&gavg);
    check_distinct(op, written, g);
    T* pp = p.mutable_data<T>();
    T* ps = sq.mutable_data<T>();
    T* pb = mom ? buf.mutable_data<T>() : nullptr;
    T* pa = h.centered ? gavg.mutable_data<T>() : nullptr;
    const T* pg = g.data<T>();
    const int64_t n = p.size;
    const fastdl::Isa chosen = isa_arg(isa);
    py::gil_scoped_release nogil;
    if (reference) fastdl::rmsprop_step_reference(pp, ps, pb, pa, pg, n, h);
    else fastdl::rmsprop_step(pp, ps, pb, pa, pg, n, h, chosen);
    return 0;
  });
}

void adagrad_step_py(const py::object& p_, const py::object& g_, const py::object& sum_sq_,
                     const fastdl::AdagradHyper& h, const std::optional<std::string>& isa,
                     bool reference) {
  const std::string op = "adagrad_step_";
  fastdl::validate(h);
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView s = state_arg(sum_sq_, p, op, "sum_sq");
  dispatch_float(p, [&](auto zero) {
    using T = decltype(zero);
    const py::array_t<T> g_arr = grad_arg<T>(g_, p, op);
    const ArrayView g = view_of(g_arr, "g");
    check_distinct(op, {&p, &s}, g);
    T* pp = p.mutable_data<T>();
    T* ps = s.mutable_data<T>();
    const T* pg = g.data<T>();
    const int64_t n = p.size;
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
                                         std::vector<py::object>& keep) {
  std::vector<fastdl::GradView> views;
  size_t i = 0;
  for (const py::handle h : grads) {
    const std::string name = "grads[" + std::to_string(i++) + "]";
    if (h.is_none()) continue;
    keep.push_back(py::reinterpret_borrow<py::object>(h));
    const ArrayView a = inplace_arg(keep.back(), op, name.c_str());
    views.push_back({a.ptr, a.size, a.dtype == kFloat64});
  }
  return views;
}

double grads_norm_py(const py::iterable& grads, double norm_type,
                     const std::optional<std::string>& isa) {
  std::vector<py::object> keep;
  const auto views = grad_views(grads, "grads_norm", keep);
  const fastdl::Isa chosen = isa_arg(isa);
  py::gil_scoped_release nogil;
  return fastdl::grads_norm(views.data(), int64_t(views.size()), norm_type, chosen);
}

double clip_grad_norm_py(const py::iterable& grads, double max_norm, double norm_type,
                         bool error_if_nonfinite, const std::optional<std::string>& isa) {
  check_clip_args(max_norm, norm_type);
  std::vector<py::object> keep;
  const auto views = grad_views(grads, "clip_grad_norm_", keep);
  const fastdl::Isa chosen = isa_arg(isa);
  double total = 0;
  {
    py::gil_scoped_release nogil;
    total = fastdl::grads_norm(views.data(), int64_t(views.size()), norm_type, chosen);
  }
  const double coef = clip_coef(total, max_norm, norm_type, error_if_nonfinite);
  if (!(coef >= 1.0)) {
    py::gil_scoped_release nogil;
    fastdl::grads_scale(views.data(), int64_t(views.size()), coef, chosen);
  }
  return total;
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step_",
      [](py::object p, py::object g, py::object buf, double lr, double momentum,
         double weight_decay, bool nesterov, double dampening, bool maximize, bool first_step,
         std::optional<std::string> isa, bool reference) {
        sgd_step_py(p, g, buf,
                    sgd_hyper(lr, momentum, weight_decay, nesterov, dampening, maximize,
                              first_step),
                    std::move(isa), reference);
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
        adam_step_py(p, g, m_, v, max_v,
                     adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                                maximize),
                     std::move(isa), reference);
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
        rmsprop_step_py(p, g, square_avg, buf, grad_avg,
                        rmsprop_hyper(lr, alpha, eps, weight_decay, momentum, centered, maximize),
                        std::move(isa), reference);
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
        adagrad_step_py(p, g, sum_sq, adagrad_hyper(lr, eps, weight_decay, maximize),
                        std::move(isa), reference);
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

}  // namespace fastdl::bindings
