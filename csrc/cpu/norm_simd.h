// norm_simd.h: the normalisation run primitives (norm.h's NormTable) written once over vector
// traits V and instantiated per ISA. Reductions keep four vector accumulators in T over a run
// (norm.cpp keeps runs short: at most kRun elements) and hand their sum to the caller in double;
// they combine in a fixed order, so a run's result depends only on the ISA.
#pragma once

#include <cstdint>

#include "cpu/norm.h"
#include "cpu/vec_math.h"    // map1, map2
#include "cpu/vec_stream.h"  // map1_stream, map2_stream

namespace fastdl {
namespace {

// sum f(acc, i) over the run: f adds the contribution of the W elements at i to acc; tail(acc,
// i, r) those of the last r < W elements.
template <class V, class F, class G>
inline typename V::reg nm_reduce(std::int64_t n, F f, G tail) {
  using R = typename V::reg;
  R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  std::int64_t i = 0;
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    a0 = f(a0, i);
    a1 = f(a1, i + V::W);
    a2 = f(a2, i + 2 * V::W);
    a3 = f(a3, i + 3 * V::W);
  }
  for (; i + V::W <= n; i += V::W) a0 = f(a0, i);
  if (i < n) a1 = tail(a1, i, int(n - i));
  return V::add(V::add(a0, a1), V::add(a2, a3));
}

// Two passes: a first estimate of the mean, then the deviations from it (whose sum corrects the
// estimate). Deviations from a nearby shift are small, so neither sum loses the digits a
// one-pass sum of squares would (inputs like 1e4 + noise in float32).
template <class V>
void nm_moments(double* mean, double* m2, const typename V::T* x, std::int64_t n) {
  using T = typename V::T;
  using R = typename V::reg;
  const R s = nm_reduce<V>(
      n, [&](R acc, std::int64_t i) { return V::add(acc, V::load(x + i)); },
      [&](R acc, std::int64_t i, int r) { return V::add(acc, V::loadn(x + i, r)); });
  const T a = T(double(V::hsum(s)) / double(n));
  const R av = V::set1(a);
  R s2 = V::zero();  // the second sum rides along the first's loop
  const R s1 = nm_reduce<V>(
      n,
      [&](R acc, std::int64_t i) {
        const R d = V::sub(V::load(x + i), av);
        s2 = V::fmadd(d, d, s2);
        return V::add(acc, d);
      },
      [&](R acc, std::int64_t i, int r) {
        const R d = V::select(V::lanes(r), V::sub(V::loadn(x + i, r), av), V::zero());
        s2 = V::fmadd(d, d, s2);
        return V::add(acc, d);
      });
  const double d1 = double(V::hsum(s1));
  *mean = double(a) + d1 / double(n);
  *m2 = double(V::hsum(s2)) - d1 * d1 / double(n);
}

template <class V>
void nm_affine(typename V::T* y, const typename V::T* x, std::int64_t n, typename V::T a,
               typename V::T b, typename V::T c, bool stream) {
  const auto av = V::set1(a), bv = V::set1(b), cv = V::set1(c);
  const auto f = [&](auto v) { return V::fmadd(V::sub(v, av), bv, cv); };
  if (stream)
    map1_stream<V>(y, x, n, f);
  else
    map1<V>(y, x, n, f);
}

template <class V>
void nm_grad_sums(double* sdy, double* sdyx, const typename V::T* dy, const typename V::T* x,
                  std::int64_t n, typename V::T a) {
  using R = typename V::reg;
  const R av = V::set1(a);
  R sx = V::zero();
  const R sg = nm_reduce<V>(
      n,
      [&](R acc, std::int64_t i) {
        const R g = V::load(dy + i);
        sx = V::fmadd(g, V::sub(V::load(x + i), av), sx);
        return V::add(acc, g);
      },
      [&](R acc, std::int64_t i, int r) {
        const R g = V::loadn(dy + i, r);
        const R d = V::select(V::lanes(r), V::sub(V::loadn(x + i, r), av), V::zero());
        sx = V::fmadd(g, d, sx);
        return V::add(acc, g);
      });
  *sdy = double(V::hsum(sg));
  *sdyx = double(V::hsum(sx));
}

template <class V>
void nm_grad_input(typename V::T* dx, const typename V::T* dy, const typename V::T* x,
                   std::int64_t n, typename V::T a, typename V::T k, typename V::T b,
                   typename V::T c, bool stream) {
  const auto av = V::set1(a), kv = V::set1(k), bv = V::set1(b), cv = V::set1(c);
  const auto f = [&](auto g, auto v) { return V::fnmadd(V::sub(v, av), bv, V::fmadd(g, kv, cv)); };
  if (stream)
    map2_stream<V>(dx, dy, x, n, f);
  else
    map2<V>(dx, dy, x, n, f);
}

// ---- layer_norm rows: per-element weight and bias, each a compile-time present/absent ----------

template <class V, bool HasW, bool HasB>
void ln_affine_impl(typename V::T* y, const typename V::T* x, const typename V::T* w,
                    const typename V::T* b, std::int64_t n, typename V::T a, typename V::T r,
                    typename V::T c) {
  using R = typename V::reg;
  const R av = V::set1(a), rv = V::set1(r), cv = V::set1(c);
  auto one = [&](R v, R wv, R bv) {
    R t = V::fmadd(V::sub(v, av), rv, cv);
    if constexpr (HasW) t = HasB ? V::fmadd(t, wv, bv) : V::mul(t, wv);
    else if constexpr (HasB) t = V::add(t, bv);
    return t;
  };
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W)
    V::store(y + i, one(V::load(x + i), HasW ? V::load(w + i) : R{}, HasB ? V::load(b + i) : R{}));
  if (i < n) {
    const int k = int(n - i);
    V::storen(y + i, one(V::loadn(x + i, k), HasW ? V::loadn(w + i, k) : R{}, HasB ? V::loadn(b + i, k) : R{}), k);
  }
}

template <class V>
void nm_ln_affine(typename V::T* y, const typename V::T* x, const typename V::T* w,
                  const typename V::T* b, std::int64_t n, typename V::T a, typename V::T r,
                  typename V::T c) {
  if (w && b) ln_affine_impl<V, true, true>(y, x, w, b, n, a, r, c);
  else if (w) ln_affine_impl<V, true, false>(y, x, w, b, n, a, r, c);
  else if (b) ln_affine_impl<V, false, true>(y, x, w, b, n, a, r, c);
  else ln_affine_impl<V, false, false>(y, x, w, b, n, a, r, c);
}

template <class V, bool HasW>
void ln_grad_sums_impl(double* sg, double* sgx, const typename V::T* dy, const typename V::T* x,
                       const typename V::T* w, std::int64_t n, typename V::T a, typename V::T r) {
  using R = typename V::reg;
  const R av = V::set1(a), rv = V::set1(r);
  R sx = V::zero();  // the second sum rides along the first's loop
  const R s = nm_reduce<V>(
      n,
      [&](R acc, std::int64_t i) {
        const R g = HasW ? V::mul(V::load(dy + i), V::load(w + i)) : V::load(dy + i);
        const R xh = V::mul(V::sub(V::load(x + i), av), rv);
        sx = V::fmadd(g, xh, sx);
        return V::add(acc, g);
      },
      [&](R acc, std::int64_t i, int k) {
        const R g = HasW ? V::mul(V::loadn(dy + i, k), V::loadn(w + i, k)) : V::loadn(dy + i, k);
        const R xh = V::mul(V::sub(V::loadn(x + i, k), av), rv);  // g = 0 past the row
        sx = V::fmadd(g, xh, sx);
        return V::add(acc, g);
      });
  *sg = double(V::hsum(s));
  *sgx = double(V::hsum(sx));
}

template <class V>
void nm_ln_grad_sums(double* sg, double* sgx, const typename V::T* dy, const typename V::T* x,
                     const typename V::T* w, std::int64_t n, typename V::T a, typename V::T r) {
  if (w) ln_grad_sums_impl<V, true>(sg, sgx, dy, x, w, n, a, r);
  else ln_grad_sums_impl<V, false>(sg, sgx, dy, x, w, n, a, r);
}

template <class V, bool HasW>
void ln_grad_input_impl(typename V::T* dx, typename V::T* dw, typename V::T* db,
                        const typename V::T* dy, const typename V::T* x, const typename V::T* w,
                        std::int64_t n, typename V::T a, typename V::T r, typename V::T k,
                        typename V::T q) {
  using R = typename V::reg;
  const R av = V::set1(a), rv = V::set1(r), kv = V::set1(k), qv = V::set1(q);
  auto one = [&](std::int64_t i, R d, R v, R wv, R dwv, R dbv, auto store) {
    const R xh = V::mul(V::sub(v, av), rv);
    const R g = HasW ? V::mul(d, wv) : d;
    store(dx + i, V::fnmadd(xh, qv, V::fmadd(g, rv, kv)));
    store(dw + i, V::fmadd(d, xh, dwv));
    store(db + i, V::add(dbv, d));
  };
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W)
    one(i, V::load(dy + i), V::load(x + i), HasW ? V::load(w + i) : R{}, V::load(dw + i),
        V::load(db + i), [](typename V::T* p, R v) { V::store(p, v); });
  if (i < n) {
    const int m = int(n - i);
    one(i, V::loadn(dy + i, m), V::loadn(x + i, m), HasW ? V::loadn(w + i, m) : R{},
        V::loadn(dw + i, m), V::loadn(db + i, m),
        [m](typename V::T* p, R v) { V::storen(p, v, m); });
  }
}

template <class V>
void nm_ln_grad_input(typename V::T* dx, typename V::T* dw, typename V::T* db,
                      const typename V::T* dy, const typename V::T* x, const typename V::T* w,
                      std::int64_t n, typename V::T a, typename V::T r, typename V::T k,
                      typename V::T q) {
  if (w) ln_grad_input_impl<V, true>(dx, dw, db, dy, x, w, n, a, r, k, q);
  else ln_grad_input_impl<V, false>(dx, dw, db, dy, x, w, n, a, r, k, q);
}

template <class V>
constexpr NormTable<typename V::T> make_norm_table() {
  return {&nm_moments<V>,   &nm_affine<V>,         &nm_grad_sums<V>, &nm_grad_input<V>,
          &nm_ln_affine<V>, &nm_ln_grad_sums<V>, &nm_ln_grad_input<V>};
}

}  // namespace
}  // namespace fastdl
