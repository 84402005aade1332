// softmax.h: softmax and log_softmax over the last axis of a (rows, n) row-major array, forward
// and backward; the row primitives are shared with the fused cross-entropy (loss.cpp).
//
//   softmax      y = exp(x - max) / sum exp(x - max)        dx = y * (dy - sum(dy * y))
//   log_softmax  y = (x - max) - log sum exp(x - max)       dx = dy - exp(y) * sum(dy)
// A row that is entirely -inf gives zeros (softmax) and -inf (log_softmax), never NaN.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// One ISA's row primitives (single-threaded, contiguous rows of n elements).
template <typename T>
struct SoftmaxTable {
  T (*row_max)(const T* x, std::int64_t n);                       // max, ignoring NaN
  T (*exp_sum_store)(T* y, const T* x, std::int64_t n, T shift);  // y = exp(x - shift); sum y
  T (*exp_sum)(const T* x, std::int64_t n, T shift);              // sum exp(x - shift)
  void (*scale)(T* y, std::int64_t n, T s);                        // y *= s
  void (*shift)(T* y, const T* x, std::int64_t n, T a, T b);       // y = (x - a) - b
  T (*dot)(const T* a, const T* b, std::int64_t n);
  T (*sum)(const T* a, std::int64_t n);
  void (*softmax_bwd)(T* dx, const T* dy, const T* y, std::int64_t n, T dot);  // y (dy - dot)
  void (*log_softmax_bwd)(T* dx, const T* dy, const T* y, std::int64_t n, T s);  // dy - e^y s
};

template <typename T>
const SoftmaxTable<T>& softmax_table(Isa isa);

extern const SoftmaxTable<float> softmax_table_avx2_f32;
extern const SoftmaxTable<double> softmax_table_avx2_f64;
extern const SoftmaxTable<float> softmax_table_avx512_f32;
extern const SoftmaxTable<double> softmax_table_avx512_f64;

template <typename T>
void softmax_forward(T* y, const T* x, std::int64_t rows, std::int64_t n, bool log,
                     Isa isa = cpu_isa());
template <typename T>
void softmax_backward(T* dx, const T* dy, const T* y, std::int64_t rows, std::int64_t n, bool log,
                      Isa isa = cpu_isa());

template <typename T>
void softmax_forward_reference(T* y, const T* x, std::int64_t rows, std::int64_t n, bool log);
template <typename T>
void softmax_backward_reference(T* dx, const T* dy, const T* y, std::int64_t rows, std::int64_t n,
                                bool log);

}  // namespace fastdl
