// activation_simd.h: the activation kernels written once over vector traits V and instantiated
// per ISA (activation.cpp for generic, activation_avx2.cpp, activation_avx512.cpp). Full vectors
// in the loop, one masked vector for the tail: never a scalar remainder loop.
#pragma once

#include <cstdint>

#include "cpu/activation.h"
#include "cpu/vec_math.h"

namespace fastdl {
namespace {

template <class V>
void relu_fwd(typename V::T* y, const typename V::T* x, std::int64_t n) {
  // max(0, x): x86 max returns its second operand on NaN, so NaN passes through (as PyTorch).
  map1<V>(y, x, n, [](auto v) { return V::max(V::zero(), v); });
}
template <class V>
void sigmoid_fwd(typename V::T* y, const typename V::T* x, std::int64_t n) {
  map1<V>(y, x, n, [](auto v) { return vsigmoid<V>(v); });
}
template <class V>
void tanh_fwd(typename V::T* y, const typename V::T* x, std::int64_t n) {
  map1<V>(y, x, n, [](auto v) { return vtanh<V>(v); });
}

template <class V>
void relu_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* y, std::int64_t n) {
  // A select, not a product: dy = inf where y = 0 gives 0, not NaN.
  map2<V>(dx, dy, y, n, [](auto g, auto v) { return V::select(V::gt(v, V::zero()), g, V::zero()); });
}
template <class V>
void sigmoid_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* y,
                 std::int64_t n) {
  using T = typename V::T;
  map2<V>(dx, dy, y, n, [](auto g, auto v) { return V::mul(V::mul(g, v), V::sub(V::set1(T(1)), v)); });
}
template <class V>
void tanh_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* y, std::int64_t n) {
  using T = typename V::T;
  map2<V>(dx, dy, y, n, [](auto g, auto v) { return V::mul(g, V::fnmadd(v, v, V::set1(T(1)))); });
}

template <class V>
constexpr ActivationTable<typename V::T> make_activation_table() {
  return {{&relu_fwd<V>, &sigmoid_fwd<V>, &tanh_fwd<V>}, {&relu_bwd<V>, &sigmoid_bwd<V>, &tanh_bwd<V>}};
}

}  // namespace
}  // namespace fastdl
