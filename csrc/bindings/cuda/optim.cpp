// optim.cpp: _cuda bindings of the optimizer family (csrc/cuda/optim.*): fused SGD, Adam(W),
// RMSprop and Adagrad steps in place on float32 CUDA arrays, and gradient clipping.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/optim.cuh"

namespace fastdl::bindings {

namespace {

// Optimizer steps update p and its state in place: each must be a writable C-contiguous float32
// CUDA array of p's shape (TypeError for type/dtype/layout, ValueError for shape or read-only).
// g is only read: a float32 CUDA array of p's shape, C-contiguous (fastdl.ops.optim copies
// views). Hyper-parameters are checked as on the CPU (PyTorch's checks, ValueError).
ArrayView inplace_arg(const py::handle& o, const std::string& op, const char* name) {
  FASTDL_CHECK(!o.is_none(), ValueError, op, ": ", name,
               ": expected an array of p's shape and dtype, got None");
  const ArrayView a = cuda_view(o, name);
  check_inplace(a, op);
  return a;
}

ArrayView state_arg(const py::handle& o, const ArrayView& p, const std::string& op,
                    const char* name) {
  const ArrayView a = inplace_arg(o, op, name);
  check_state(a, p, op);
  return a;
}

ArrayView grad_arg(const py::handle& o, const ArrayView& p, const std::string& op) {
  FASTDL_CHECK(!o.is_none(), TypeError, op, ": g: expected an array, got None");
  const ArrayView g = cuda_view(o, "g");
  check_grad_shape(g, p, op);
  FASTDL_CHECK(g.c_contiguous(), TypeError, op, ": g: must be C-contiguous");
  return g;
}

void sgd_step_py(const py::handle& p_, const py::handle& g_, const py::handle& buf_,
                 const fastdl::SgdHyper& h, std::uintptr_t stream) {
  const std::string op = "sgd_step_";
  fastdl::validate(h);
  FASTDL_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), ValueError, op,
               ": nesterov momentum requires momentum > 0 and dampening == 0, got momentum=",
               h.momentum, ", dampening=", h.dampening);
  const ArrayView p = inplace_arg(p_, op, "p");
  const bool mom = h.momentum != 0;
  const ArrayView buf = mom ? state_arg(buf_, p, op, "buf") : p;
  const ArrayView g = grad_arg(g_, p, op);
  if (mom) check_distinct(op, {&p, &buf}, g);
  else check_distinct(op, {&p}, g);
  if (p.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, mom ? &buf : nullptr});
  fastdl::cuda::sgd_step(p.mutable_data<float>(), mom ? buf.mutable_data<float>() : nullptr,
                         g.data<float>(), p.size, h, as_stream(stream));
}

void adam_step_py(const py::handle& p_, const py::handle& g_, const py::handle& m_,
                  const py::handle& v_, const py::handle& max_v_, const fastdl::AdamHyper& h,
                  std::uintptr_t stream) {
  const std::string op = "adam_step_";
  fastdl::validate(h);
  FASTDL_CHECK(h.amsgrad || max_v_.is_none(), ValueError, op,
               ": max_v is only used with amsgrad=True");
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView m = state_arg(m_, p, op, "m");
  const ArrayView v = state_arg(v_, p, op, "v");
  const ArrayView mv = h.amsgrad ? state_arg(max_v_, p, op, "max_v") : p;
  const ArrayView g = grad_arg(g_, p, op);
  if (h.amsgrad) check_distinct(op, {&p, &m, &v, &mv}, g);
  else check_distinct(op, {&p, &m, &v}, g);
  if (p.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &m, &v, h.amsgrad ? &mv : nullptr});
  fastdl::cuda::adam_step(p.mutable_data<float>(), m.mutable_data<float>(),
                          v.mutable_data<float>(), h.amsgrad ? mv.mutable_data<float>() : nullptr,
                          g.data<float>(), p.size, h, as_stream(stream));
}

void rmsprop_step_py(const py::handle& p_, const py::handle& g_, const py::handle& sq_,
                     const py::handle& buf_, const py::handle& gavg_,
                     const fastdl::RmspropHyper& h, std::uintptr_t stream) {
  const std::string op = "rmsprop_step_";
  fastdl::validate(h);
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView sq = state_arg(sq_, p, op, "square_avg");
  const bool mom = h.momentum > 0;
  const ArrayView buf = mom ? state_arg(buf_, p, op, "buf") : p;
  const ArrayView gavg = h.centered ? state_arg(gavg_, p, op, "grad_avg") : p;
  const ArrayView g = grad_arg(g_, p, op);
  std::vector<const ArrayView*> written{&p, &sq};
  if (mom) written.push_back(&buf);
  if (h.centered) written.push_back(&gavg);
  check_distinct(op, written, g);
  if (p.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &sq, mom ? &buf : nullptr, h.centered ? &gavg : nullptr});
  fastdl::cuda::rmsprop_step(p.mutable_data<float>(), sq.mutable_data<float>(),
                             mom ? buf.mutable_data<float>() : nullptr,
                             h.centered ? gavg.mutable_data<float>() : nullptr, g.data<float>(),
                             p.size, h, as_stream(stream));
}

void adagrad_step_py(const py::handle& p_, const py::handle& g_, const py::handle& s_,
                     const fastdl::AdagradHyper& h, std::uintptr_t stream) {
  const std::string op = "adagrad_step_";
  fastdl::validate(h);
  const ArrayView p = inplace_arg(p_, op, "p");
  const ArrayView s = state_arg(s_, p, op, "sum_sq");
  const ArrayView g = grad_arg(g_, p, op);
  check_distinct(op, {&p, &s}, g);
  if (p.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &s});
  fastdl::cuda::adagrad_step(p.mutable_data<float>(), s.mutable_data<float>(), g.data<float>(),
                             p.size, h, as_stream(stream));
}

double clip_grad_norm_py(const py::iterable& grads, double max_norm, double norm_type,
                         bool error_if_nonfinite, std::uintptr_t stream) {
  const std::string op = "clip_grad_norm_";
  check_clip_args(max_norm, norm_type);
  std::vector<ArrayView> arrays;
  std::vector<py::object> keep;  // the arrays the views borrow from, alive while they are used
  for (const py::handle o : grads) {
    if (o.is_none()) continue;
    keep.push_back(py::reinterpret_borrow<py::object>(o));
    arrays.push_back(inplace_arg(o, op, "grads"));
  }
  std::vector<float*> ptrs;
  std::vector<int64_t> sizes;
  for (const ArrayView& a : arrays) {
    ptrs.push_back(a.mutable_data<float>());
    sizes.push_back(a.size);
  }
  const auto count = int64_t(arrays.size());
  double total = 0;
  {
    py::gil_scoped_release nogil;
    for (const ArrayView& a : arrays) check_on_current_device({&a});
    total = fastdl::cuda::grads_norm(ptrs.data(), sizes.data(), count, norm_type, as_stream(stream));
  }
  const double coef = clip_coef(total, max_norm, norm_type, error_if_nonfinite);
  if (!(coef >= 1.0)) {
    py::gil_scoped_release nogil;
    fastdl::cuda::grads_scale(ptrs.data(), sizes.data(), count, coef, as_stream(stream));
  }
  return total;
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step_",
      [](py::object p, py::object g, py::object buf, double lr, double momentum,
         double weight_decay, bool nesterov, double dampening, bool maximize, bool first_step,
         std::uintptr_t stream) {
        sgd_step_py(p, g, buf,
                    sgd_hyper(lr, momentum, weight_decay, nesterov, dampening, maximize,
                              first_step),
                    stream);
      },
      py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("lr"), py::arg("momentum") = 0.0,
      py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("dampening") = 0.0,
      py::kw_only(), py::arg("maximize") = false, py::arg("first_step") = false,
      py::arg("stream") = 0,
      "One SGD step in place on float32 CUDA arrays p and buf (the _core contract).");
  m.def(
      "adam_step_",
      [](py::object p, py::object g, py::object m_, py::object v, double step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool decoupled,
         bool amsgrad, py::object max_v, bool maximize, std::uintptr_t stream) {
        adam_step_py(p, g, m_, v, max_v,
                     adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                                maximize),
                     stream);
      },
      py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay") = 0.0,
      py::arg("decoupled") = false, py::kw_only(), py::arg("amsgrad") = false,
      py::arg("max_v") = py::none(), py::arg("maximize") = false, py::arg("stream") = 0,
      "One Adam / AdamW (decoupled=True) step in place on float32 CUDA arrays p, m, v.");
  m.def(
      "rmsprop_step_",
      [](py::object p, py::object g, py::object square_avg, double lr, double alpha, double eps,
         double weight_decay, double momentum, py::object buf, bool centered,
         py::object grad_avg, bool maximize, std::uintptr_t stream) {
        rmsprop_step_py(p, g, square_avg, buf, grad_avg,
                        rmsprop_hyper(lr, alpha, eps, weight_decay, momentum, centered, maximize),
                        stream);
      },
      py::arg("p"), py::arg("g"), py::arg("square_avg"), py::arg("lr"), py::arg("alpha") = 0.99,
      py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
      py::arg("buf") = py::none(), py::arg("centered") = false,
      py::arg("grad_avg") = py::none(), py::kw_only(), py::arg("maximize") = false,
      py::arg("stream") = 0, "One RMSprop step in place on float32 CUDA arrays.");
  m.def(
      "adagrad_step_",
      [](py::object p, py::object g, py::object sum_sq, double lr, double eps,
         double weight_decay, bool maximize, std::uintptr_t stream) {
        adagrad_step_py(p, g, sum_sq, adagrad_hyper(lr, eps, weight_decay, maximize), stream);
      },
      py::arg("p"), py::arg("g"), py::arg("sum_sq"), py::arg("lr"), py::arg("eps") = 1e-10,
      py::arg("weight_decay") = 0.0, py::kw_only(), py::arg("maximize") = false,
      py::arg("stream") = 0, "One Adagrad step in place on float32 CUDA arrays.");
  m.def("clip_grad_norm_", &clip_grad_norm_py, py::arg("grads"), py::arg("max_norm"),
        py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false, py::kw_only(),
        py::arg("stream") = 0,
        R"pbdoc(Scale a list of float32 CUDA arrays in place so their total norm is <= max_norm; returns
the total norm before clipping (a deterministic double reduction; synchronises the stream).)pbdoc");
}

}  // namespace fastdl::bindings
