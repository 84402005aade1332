// optim.h: fused optimizer steps and gradient-norm clipping (the equations are in optim.cpp).
//
// Every step updates one parameter p (n elements) and its state buffers in place, in one pass,
// from the gradient g. Hyper-parameters arrive as doubles in a plain struct; the kernels fold them
// into constants of the element type once per call (bias corrections are computed in double).
// All buffers of one call are distinct, contiguous arrays of the same type T (float or double);
// g may alias p. Results are bitwise independent of the thread count (every element goes through
// the same vector arithmetic whichever thread or chunk it falls in).
#pragma once

#include <cstdint>

#include "common/check.h"

#include "common/cpu.h"

namespace fastdl {

struct SgdHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  bool first_step = false;  // momentum buffer is set to the gradient (PyTorch's first step)
};

struct AdamHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double step = 1;  // 1-based, used in the bias corrections
  bool decoupled = false, amsgrad = false, maximize = false;
};

struct RmspropHyper {
  double lr = 0, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false, maximize = false;
};

struct AdagradHyper {
  double lr = 0, eps = 1e-10, weight_decay = 0;  // lr is PyTorch's clr (lr_decay applied)
  bool maximize = false;
};

// Hyper-parameter checks shared by the CPU and CUDA bindings (PyTorch's rules): ValueError
// naming the op, the argument, what was expected and what was given.
inline void check_hyper(bool ok, const char* op, const char* name, double value,
                        const char* expected) {
  FASTDL_CHECK(ok, ValueError, op, ": invalid ", name, ": expected ", expected, ", got ", value);
}

inline void validate(const SgdHyper& h) {
  const char* op = "sgd_step_";
  check_hyper(h.lr >= 0, op, "lr", h.lr, ">= 0");
  check_hyper(h.momentum >= 0, op, "momentum", h.momentum, ">= 0");
  check_hyper(h.weight_decay >= 0, op, "weight_decay", h.weight_decay, ">= 0");
  check_hyper(h.dampening == h.dampening, op, "dampening", h.dampening, "a number");
}

inline void validate(const AdamHyper& h) {
  const char* op = "adam_step_";
  check_hyper(h.step >= 1, op, "step", h.step, ">= 1 (the 1-based step count)");
  check_hyper(h.lr >= 0, op, "lr", h.lr, ">= 0");
  check_hyper(h.eps >= 0, op, "eps", h.eps, ">= 0");
  check_hyper(h.beta1 >= 0 && h.beta1 < 1, op, "beta1", h.beta1, "0 <= beta1 < 1");
  check_hyper(h.beta2 >= 0 && h.beta2 < 1, op, "beta2", h.beta2, "0 <= beta2 < 1");
  check_hyper(h.weight_decay >= 0, op, "weight_decay", h.weight_decay, ">= 0");
}

inline void validate(const RmspropHyper& h) {
  const char* op = "rmsprop_step_";
  check_hyper(h.lr >= 0, op, "lr", h.lr, ">= 0");
  check_hyper(h.eps >= 0, op, "eps", h.eps, ">= 0");
  check_hyper(h.alpha >= 0, op, "alpha", h.alpha, ">= 0");
  check_hyper(h.momentum >= 0, op, "momentum", h.momentum, ">= 0");
  check_hyper(h.weight_decay >= 0, op, "weight_decay", h.weight_decay, ">= 0");
}

inline void validate(const AdagradHyper& h) {
  const char* op = "adagrad_step_";
  check_hyper(h.lr >= 0, op, "lr", h.lr, ">= 0");
  check_hyper(h.eps >= 0, op, "eps", h.eps, ">= 0");
  check_hyper(h.weight_decay >= 0, op, "weight_decay", h.weight_decay, ">= 0");
}

// buf may be null when momentum == 0.
template <typename T>
void sgd_step(T* p, T* buf, const T* g, std::int64_t n, const SgdHyper& h, Isa isa = cpu_isa());
// max_v is read and written only when h.amsgrad.
template <typename T>
void adam_step(T* p, T* m, T* v, T* max_v, const T* g, std::int64_t n, const AdamHyper& h,
               Isa isa = cpu_isa());
// buf is used when momentum > 0, grad_avg when centered.
template <typename T>
void rmsprop_step(T* p, T* square_avg, T* buf, T* grad_avg, const T* g, std::int64_t n,
                  const RmspropHyper& h, Isa isa = cpu_isa());
template <typename T>
void adagrad_step(T* p, T* sum_sq, const T* g, std::int64_t n, const AdagradHyper& h,
                  Isa isa = cpu_isa());

// Plain scalar loops with the same equations: the test oracle.
template <typename T>
void sgd_step_reference(T* p, T* buf, const T* g, std::int64_t n, const SgdHyper& h);
template <typename T>
void adam_step_reference(T* p, T* m, T* v, T* max_v, const T* g, std::int64_t n,
                         const AdamHyper& h);
template <typename T>
void rmsprop_step_reference(T* p, T* square_avg, T* buf, T* grad_avg, const T* g,
                            std::int64_t n, const RmspropHyper& h);
template <typename T>
void adagrad_step_reference(T* p, T* sum_sq, const T* g, std::int64_t n, const AdagradHyper& h);

// ---- gradient norms and clipping -------------------------------------------------------------

// One array of a list of gradients (float or double; lists may mix them).
struct GradView {
  void* data;
  std::int64_t n;
  bool is_double;
};

// The norm of all the arrays together, accumulated in double: norm_type 2 (the fast path), any
// finite norm_type > 0, or +inf (max |x|). NaN anywhere gives NaN. Independent of thread count:
// the arrays are cut into fixed blocks whose partial results are combined in a fixed order.
double grads_norm(const GradView* grads, std::int64_t count, double norm_type,
                  Isa isa = cpu_isa());
// x *= alpha for every array (alpha rounded once to each array's type).
void grads_scale(const GradView* grads, std::int64_t count, double alpha, Isa isa = cpu_isa());

}  // namespace fastdl
