// activation.h: element-wise activations relu, sigmoid, tanh and their backward passes.
//
//   forward:  y = act(x)                 (n elements, contiguous)
//   backward: dx = dy * act'(x), written from the forward OUTPUT y:
//             relu: dy * (y > 0)   sigmoid: dy * y * (1 - y)   tanh: dy * (1 - y^2)
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

// Plain loops over <cmath> (std::exp, std::tanh): the test oracle.
template <typename T>
void activation_forward_reference(Activation act, T* y, const T* x, std::int64_t n);
template <typename T>
void activation_backward_reference(Activation act, T* dx, const T* dy, const T* y, std::int64_t n);

}  // namespace fastdl
