// activation.h: element-wise activations relu, sigmoid, tanh and their backward passes.
//
//   forward:  y = act(x)                 (n elements, contiguous)
//   backward: dx = dy * act'(x), written from the forward OUTPUT y:
//             relu: dy * (y > 0)   sigmoid: dy * y * (1 - y)   tanh: dy * (1 - y^2)
//   gelu:     y = x Phi(x) (approximate 0, exact erf) or PyTorch's tanh form (approximate 1);
//             its backward takes the forward INPUT x: dx = dy * gelu'(x).
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

enum class Activation : int { relu = 0, sigmoid = 1, tanh = 2 };
constexpr int kNumActivations = 3;

// One ISA's kernels, indexed by Activation; each processes a contiguous range single-threaded.
template <typename T>
struct ActivationTable {
  void (*forward[kNumActivations])(T* y, const T* x, std::int64_t n);
  void (*backward[kNumActivations])(T* dx, const T* dy, const T* y, std::int64_t n);
  // gelu, indexed by approximate (0 exact, 1 tanh form); the backward from the input x.
  void (*gelu_forward[2])(T* y, const T* x, std::int64_t n);
  void (*gelu_backward[2])(T* dx, const T* dy, const T* x, std::int64_t n);
};

template <typename T>
const ActivationTable<T>& activation_table(Isa isa);

extern const ActivationTable<float> activation_table_avx2_f32;
extern const ActivationTable<double> activation_table_avx2_f64;
extern const ActivationTable<float> activation_table_avx512_f32;
extern const ActivationTable<double> activation_table_avx512_f64;

// Fast path: the table's kernel for `isa`, OpenMP over chunks once n is large.
template <typename T>
void activation_forward(Activation act, T* y, const T* x, std::int64_t n, Isa isa = cpu_isa());
template <typename T>
void activation_backward(Activation act, T* dx, const T* dy, const T* y, std::int64_t n,
                         Isa isa = cpu_isa());

// gelu: approximate 0 = x Phi(x) with the exact erf, 1 = the tanh form.
template <typename T>
void gelu_forward(T* y, const T* x, std::int64_t n, int approximate, Isa isa = cpu_isa());
template <typename T>
void gelu_backward(T* dx, const T* dy, const T* x, std::int64_t n, int approximate,
                   Isa isa = cpu_isa());

// Plain loops over <cmath> (std::exp, std::tanh): the test oracle.
template <typename T>
void activation_forward_reference(Activation act, T* y, const T* x, std::int64_t n);
template <typename T>
void activation_backward_reference(Activation act, T* dx, const T* dy, const T* y, std::int64_t n);
template <typename T>
void gelu_forward_reference(T* y, const T* x, std::int64_t n, int approximate);
template <typename T>
void gelu_backward_reference(T* dx, const T* dy, const T* x, std::int64_t n, int approximate);

}  // namespace fastdl
