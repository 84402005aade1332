// vec_math.h: element-wise maps (map1, map2) and exp, sigmoid, tanh over a vector-traits type V
// (vec_generic.h documents the contract): the core of activation_simd.h and softmax_simd.h.
//
// exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2] (Cody-Waite:
// ln 2 split in a short high part, exact in n * hi, and a low part). e^r is a polynomial: Cephes'
// degree-5 minimax for float (1-2 ulp), the degree-13 Taylor series for double (error < 1e-17
// relative before rounding). 2^n is applied as two factors 2^(n/2) so that results in the
// subnormal range round once, correctly, and n = 128 still overflows to +inf. The input is
// clamped first (NaN kept: max/min return their second operand on NaN), so +-inf give inf / 0.
//
// sigmoid(x) = (x >= 0 ? 1 : e) / (1 + e) with e = exp(-|x|): never overflows, and sigmoid(-100)
// is the correct subnormal 3.7e-44 in float rather than 0.
// tanh(x) = x + x^3 P(x^2) for |x| < 0.625 (Cephes), else sign(x) (1 - 2 / (exp(2|x|) + 1)).
#pragma once

#include <cstdint>
#include <type_traits>

namespace fastdl {
namespace {

// y[i] = f(x[i])
template <class V, class F>
inline void map1(typename V::T* y, const typename V::T* x, std::int64_t n, F f) {
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W) V::store(y + i, f(V::load(x + i)));
  if (i < n) V::storen(y + i, f(V::loadn(x + i, int(n - i))), int(n - i));
}

// out[i] = f(a[i], b[i])
template <class V, class F>
inline void map2(typename V::T* out, const typename V::T* a, const typename V::T* b,
                 std::int64_t n, F f) {
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W) V::store(out + i, f(V::load(a + i), V::load(b + i)));
  if (i < n) {
    const int r = int(n - i);
    V::storen(out + i, f(V::loadn(a + i, r), V::loadn(b + i, r)), r);
  }
}


template <class V>
inline typename V::reg vexp(typename V::reg x) {
  using T = typename V::T;
  using R = typename V::reg;
  constexpr bool f32 = std::is_same_v<T, float>;
  // exp(lo) underflows to 0 and exp(hi) overflows to inf in T; n stays in the exponent range.
  const R lo = V::set1(f32 ? T(-104.0) : T(-746.0));
  const R hi = V::set1(f32 ? T(89.0) : T(710.0));
  x = V::min(hi, V::max(lo, x));
  const R n = V::round(V::mul(x, V::set1(T(1.44269504088896340736))));
  R r;
  R p;
  if constexpr (f32) {
    r = V::fnmadd(n, V::set1(0.693359375f), x);
    r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
    p = V::set1(1.9875691500e-4f);
    p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
    p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
    p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
    p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
    p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
    p = V::fmadd(p, V::mul(r, r), r);
    p = V::add(p, V::set1(1.0f));
  } else {
    r = V::fnmadd(n, V::set1(6.93145751953125e-1), x);
    r = V::fnmadd(n, V::set1(1.42860682030941723212e-6), r);
    constexpr double inv_fact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                   1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                   1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                   1.0 / 24.0,         1.0 / 6.0,         0.5};
    p = V::set1(inv_fact[0]);
    for (int i = 1; i < 12; ++i) p = V::fmadd(p, r, V::set1(inv_fact[i]));
    p = V::fmadd(p, V::mul(r, r), r);
    p = V::add(p, V::set1(1.0));
  }
  const R n1 = V::floor(V::mul(n, V::set1(T(0.5))));
  return V::mul(V::mul(p, V::pow2i(n1)), V::pow2i(V::sub(n, n1)));
}

template <class V>
inline typename V::reg vsigmoid(typename V::reg x) {
  using T = typename V::T;
  const auto one = V::set1(T(1));
  const auto e = vexp<V>(V::sub(V::zero(), V::abs(x)));
  return V::div(V::select(V::ge(x, V::zero()), one, e), V::add(one, e));
}

template <class V>
inline typename V::reg vtanh(typename V::reg x) {
  using T = typename V::T;
  using R = typename V::reg;
  const R one = V::set1(T(1));
  const R a = V::abs(x);
  const R z = V::mul(x, x);
  R small;
  if constexpr (std::is_same_v<T, float>) {
    R p = V::set1(-5.70498872745e-3f);
    p = V::fmadd(p, z, V::set1(2.06390887954e-2f));
    p = V::fmadd(p, z, V::set1(-5.37397155531e-2f));
    p = V::fmadd(p, z, V::set1(1.33314422036e-1f));
    p = V::fmadd(p, z, V::set1(-3.33332819422e-1f));
    small = V::fmadd(V::mul(x, z), p, x);
  } else {
    R p = V::set1(-9.64399179425052238628e-1);
    p = V::fmadd(p, z, V::set1(-9.92877231001918586564e1));
    p = V::fmadd(p, z, V::set1(-1.61468768441708447952e3));
    R q = V::add(z, V::set1(1.12811678491632931402e2));
    q = V::fmadd(q, z, V::set1(2.23548839060100448583e3));
    q = V::fmadd(q, z, V::set1(4.84406305325125486048e3));
    small = V::fmadd(V::mul(x, z), V::div(p, q), x);
  }
  const R e = vexp<V>(V::add(a, a));
  const R big = V::bor(V::fnmadd(V::set1(T(2)), V::div(one, V::add(e, one)), one), V::sign(x));
  return V::select(V::lt(a, V::set1(T(0.625))), small, big);
}

}  // namespace
}  // namespace fastdl
