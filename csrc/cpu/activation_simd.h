// activation_simd.h: the activation kernels written once over vector traits V and instantiated
// per ISA (activation.cpp for generic, activation_avx2.cpp, activation_avx512.cpp). Full vectors
// in the loop, one masked vector for the tail: never a scalar remainder loop.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

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

// ---- gelu -------------------------------------------------------------------------------------
// Below x = -kGeluLow (20 float, 40 double) gelu and its derivative are 0 in T (x Phi(x) =
// -5.5e-88 at -20, -1e-348 at -40), so x is clamped there first: -inf then gives -0, not
// -inf * 0 = NaN. The backward also clamps above (x phi(x) = 0 past kGeluLow), so +inf gives
// dx = dy. NaN passes through (max/min return their second operand on NaN).
template <typename T>
constexpr T kGeluLow = std::is_same_v<T, float> ? T(20) : T(40);
constexpr double kSqrt2Pi = 0.7978845608028654;   // sqrt(2 / pi)
constexpr double kInvSqrt2Pi = 0.3989422804014327;  // 1 / sqrt(2 pi)
constexpr double kGeluCubic = 0.044715;

// Phi(x) in double: erfc(-x / sqrt 2) / 2 with the rounding of a = x / sqrt 2 corrected to first
// order (erfc(-a - d) = erfc(-a) + d 2/sqrt(pi) exp(-a^2)); uncorrected it would cost 2 a^2 ulps
// in the lower tail (200 at x = -14).
inline double normcdf_f64(double x) {
  constexpr double c_hi = 0.7071067811865476, c_lo = -4.833646656726457e-17;  // 1 / sqrt 2
  const double a = x * c_hi;
  double d = std::fma(x, c_hi, -a) + x * c_lo;
  if (!std::isfinite(d)) d = 0;  // x = +-inf
  return 0.5 * (std::erfc(-a) + d * 1.1283791670955126 * std::exp(-a * a));
}

// exp(-x^2 / 2) in double, with x^2's rounding folded back in (exp(-(p + e)/2), p = x*x rounded).
inline double exp_neg_half_sq_f64(double x) {
  const double p = x * x;
  const double e = std::fma(x, x, -p);
  return std::exp(-0.5 * p) * (1 - 0.5 * e);
}

// Exact: y = x Phi(x). float: vnormcdf (vec_math.h); double: std::erfc per element.
template <class V>
void gelu_exact_fwd(typename V::T* y, const typename V::T* x, std::int64_t n) {
  using T = typename V::T;
  if constexpr (std::is_same_v<T, float>) {
    map1<V>(y, x, n, [](auto v) {
      v = V::max(V::set1(-kGeluLow<T>), v);
      return V::mul(v, vnormcdf<V>(v));
    });
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      const T v = std::isnan(x[i]) ? x[i] : std::max(-kGeluLow<T>, x[i]);
      y[i] = v * normcdf_f64(v);
    }
  }
}

// dx = dy (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
template <class V>
void gelu_exact_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* x,
                    std::int64_t n) {
  using T = typename V::T;
  if constexpr (std::is_same_v<T, float>) {
    map2<V>(dx, dy, x, n, [](auto g, auto v) {
      v = V::min(V::set1(kGeluLow<T>), V::max(V::set1(-kGeluLow<T>), v));
      const auto pdf = V::mul(V::set1(T(kInvSqrt2Pi)), vexp_neg_sq<V>(V::abs(v), 0.5f));
      return V::mul(g, V::fmadd(v, pdf, vnormcdf<V>(v)));
    });
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      const T v = std::isnan(x[i]) ? x[i] : std::min(kGeluLow<T>, std::max(-kGeluLow<T>, x[i]));
      dx[i] = dy[i] * (normcdf_f64(v) + v * T(kInvSqrt2Pi) * exp_neg_half_sq_f64(v));
    }
  }
}

// tanh form: y = x (1 + tanh(u)) / 2 = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); the
// sigmoid keeps the lower tail's relative accuracy where 1 + tanh(u) would cancel.
template <class V>
inline typename V::reg gelu_tanh_2u(typename V::reg v) {
  using T = typename V::T;
  const auto x2 = V::mul(v, v);
  return V::mul(V::mul(V::set1(T(2 * kSqrt2Pi)), v), V::fmadd(V::set1(T(kGeluCubic)), x2, V::set1(T(1))));
}

template <class V>
void gelu_tanh_fwd(typename V::T* y, const typename V::T* x, std::int64_t n) {
  using T = typename V::T;
  map1<V>(y, x, n, [](auto v) {
    v = V::max(V::set1(-kGeluLow<T>), v);
    return V::mul(v, vsigmoid<V>(gelu_tanh_2u<V>(v)));
  });
}

// With s = sigmoid(2u): dx = dy (s + 2 x s (1 - s) u'(x)), u'(x) = sqrt(2/pi) (1 + 3 c x^2).
// s (1 - s) = e / (1 + e)^2 with e = exp(-|2u|): 1 - s would lose its digits where s nears 1.
template <class V>
void gelu_tanh_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* x,
                   std::int64_t n) {
  using T = typename V::T;
  map2<V>(dx, dy, x, n, [](auto g, auto v) {
    v = V::min(V::set1(kGeluLow<T>), V::max(V::set1(-kGeluLow<T>), v));
    const auto u2 = gelu_tanh_2u<V>(v);
    const auto one = V::set1(T(1));
    const auto e = vexp<V>(V::sub(V::zero(), V::abs(u2)));
    const auto inv = V::div(one, V::add(one, e));
    const auto s = V::select(V::ge(u2, V::zero()), inv, V::mul(e, inv));
    const auto ss = V::mul(V::mul(e, inv), inv);
    const auto du = V::mul(V::set1(T(2 * kSqrt2Pi)),
                           V::fmadd(V::set1(T(3 * kGeluCubic)), V::mul(v, v), V::set1(T(1))));
    const auto ds = V::mul(ss, V::mul(v, du));
    return V::mul(g, V::add(s, ds));
  });
}

template <class V>
constexpr ActivationTable<typename V::T> make_activation_table() {
  return {{&relu_fwd<V>, &sigmoid_fwd<V>, &tanh_fwd<V>},
          {&relu_bwd<V>, &sigmoid_bwd<V>, &tanh_bwd<V>},
          {&gelu_exact_fwd<V>, &gelu_tanh_fwd<V>},
          {&gelu_exact_bwd<V>, &gelu_tanh_bwd<V>}};
}

}  // namespace
}  // namespace fastdl
