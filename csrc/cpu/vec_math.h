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
//
// erf / erfc (float only: the float64 kernels call std::erfc per element, no vector form here
// reaches 1e-15). Two fits, made for fastdl by least squares on Chebyshev nodes against mpmath
// (relative error of the fits before rounding: 1.6e-9 and 6.2e-9):
//   |z| < 0.75  erf(z) = z P(z^2), P of degree 5;
//   |z| >= 0.75 erfc(|z|) = exp(-z^2) t Q(t), t = 1 / (1 + |z| / 2), Q of degree 8 (the form of
//               Numerical Recipes' erfcc, refitted); exp(-z^2) by vexp_neg_sq, exact in its
//               argument.
// erfc keeps its relative accuracy in the tail (erfc(10) = 2.1e-45 in float, no cancellation),
// which is what gelu's x Phi(x) needs for negative x. Measured against math.erf/erfc over
// [-10, 10] (tests/test_activation.py): a few ulps.
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

// erf(z) / z = P(z^2) for |z| < 0.75 (float).
template <class V>
inline typename V::reg verf_small(typename V::reg z) {
  using R = typename V::reg;
  const R z2 = V::mul(z, z);
  R p = V::set1(-6.775746006e-04f);
  p = V::fmadd(p, z2, V::set1(5.118289031e-03f));
  p = V::fmadd(p, z2, V::set1(-2.683675103e-02f));
  p = V::fmadd(p, z2, V::set1(1.128342524e-01f));
  p = V::fmadd(p, z2, V::set1(-3.761262298e-01f));
  p = V::fmadd(p, z2, V::set1(1.128379226e+00f));
  return V::mul(z, p);
}

// exp(-k s^2) for s >= 0 (float), k = 1 or 1/2: s = h + (s - h) with h = s rounded to 12
// significant bits (Veltkamp's split), so k h^2 is exact and the rounding of s^2 (6e-6 relative
// at s = 10) never reaches the result. s is clamped to 16 first (exp(-128) underflows anyway).
template <class V>
inline typename V::reg vexp_neg_sq(typename V::reg s, float k) {
  using R = typename V::reg;
  s = V::min(V::set1(16.0f), s);  // keeps NaN (min returns its second operand on NaN)
  const R c = V::mul(s, V::set1(4097.0f));
  const R h = V::sub(c, V::sub(c, s));
  const R kv = V::set1(-k);
  const R e1 = vexp<V>(V::mul(kv, V::mul(h, h)));
  // |r| <= k s^2 2^-12 <= 1/16: exp(r) by its degree-4 Taylor polynomial (error < r^5/120 = 1e-8)
  const R r = V::mul(kv, V::mul(V::sub(s, h), V::add(s, h)));
  R p = V::fmadd(r, V::set1(1.0f / 24), V::set1(1.0f / 6));
  p = V::fmadd(p, r, V::set1(0.5f));
  p = V::fmadd(p, r, V::set1(1.0f));
  p = V::fmadd(p, r, V::set1(1.0f));
  return V::mul(e1, p);
}

// erfc(a) for a >= 0.75 (float) given e = exp(-a^2) (from vexp_neg_sq, of a or of a sqrt 2).
template <class V>
inline typename V::reg verfc_large(typename V::reg a, typename V::reg e) {
  using R = typename V::reg;
  static_assert(std::is_same_v<typename V::T, float>, "verfc_large: float only");
  a = V::min(V::set1(16.0f), a);
  const R one = V::set1(1.0f);
  const R t = V::div(one, V::fmadd(a, V::set1(0.5f), one));
  R q = V::set1(-5.147450417e-02f);
  q = V::fmadd(q, t, V::set1(2.623988092e-01f));
  q = V::fmadd(q, t, V::set1(-4.621632695e-01f));
  q = V::fmadd(q, t, V::set1(2.652166188e-01f));
  q = V::fmadd(q, t, V::set1(-2.471273020e-02f));
  q = V::fmadd(q, t, V::set1(2.036532164e-01f));
  q = V::fmadd(q, t, V::set1(2.426105589e-01f));
  q = V::fmadd(q, t, V::set1(2.824592292e-01f));
  q = V::fmadd(q, t, V::set1(2.820813656e-01f));
  return V::mul(e, V::mul(t, q));
}

template <class V>
inline typename V::reg verf(typename V::reg z) {
  using R = typename V::reg;
  const R a = V::abs(z);
  const R big = V::bor(V::sub(V::set1(1.0f), verfc_large<V>(a, vexp_neg_sq<V>(a, 1.0f))), V::sign(z));
  return V::select(V::lt(a, V::set1(0.75f)), verf_small<V>(z), big);
}

// erfc of z, or of z = s / sqrt 2 with e = exp(-s^2 / 2) computed from s itself (vnormcdf):
// the rounding of s / sqrt 2 would cost 2 a^2 * 6e-8 relative in the tail (100 ulps at a = 8).
template <class V>
inline typename V::reg verfc_with(typename V::reg z, typename V::reg e) {
  using R = typename V::reg;
  const R a = V::abs(z);
  const R big = verfc_large<V>(a, e);
  const R big_signed = V::select(V::lt(z, V::zero()), V::sub(V::set1(2.0f), big), big);
  return V::select(V::lt(a, V::set1(0.75f)), V::sub(V::set1(1.0f), verf_small<V>(z)), big_signed);
}

template <class V>
inline typename V::reg verfc(typename V::reg z) {
  return verfc_with<V>(z, vexp_neg_sq<V>(V::abs(z), 1.0f));
}

// Phi(x) = erfc(-x / sqrt 2) / 2, the standard normal CDF (float): relative accuracy in the
// lower tail, where 1 + erf(x / sqrt 2) would cancel.
template <class V>
inline typename V::reg vnormcdf(typename V::reg x) {
  const auto e = vexp_neg_sq<V>(V::abs(x), 0.5f);
  return V::mul(V::set1(0.5f), verfc_with<V>(V::mul(x, V::set1(-0.7071067811865476f)), e));
}

}  // namespace
}  // namespace fastdl
