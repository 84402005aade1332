// softmax_simd.h: the softmax row primitives (softmax.h) written once over vector traits V and
// instantiated per ISA. Reductions keep four vector accumulators (latency hiding) and combine
// them in a fixed order, so a row's result depends only on the ISA, never on the thread count.
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/softmax.h"
#include "cpu/vec_math.h"  // vexp, map1, map2

namespace fastdl {
namespace {

template <class V>
typename V::T sm_row_max(const typename V::T* x, std::int64_t n) {
  using R = typename V::reg;
  const R ninf = V::set1(-std::numeric_limits<typename V::T>::infinity());
  R a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
  std::int64_t i = 0;
  // max(v, a) returns a when v is NaN: NaN is skipped here and caught by the exp-sum instead.
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    a0 = V::max(V::load(x + i), a0);
    a1 = V::max(V::load(x + i + V::W), a1);
    a2 = V::max(V::load(x + i + 2 * V::W), a2);
    a3 = V::max(V::load(x + i + 3 * V::W), a3);
  }
  for (; i + V::W <= n; i += V::W) a0 = V::max(V::load(x + i), a0);
  if (i < n) a1 = V::max(V::select(V::lanes(int(n - i)), V::loadn(x + i, int(n - i)), ninf), a1);
  return V::hmax(V::max(V::max(a0, a1), V::max(a2, a3)));
}

// sum exp(x - shift), storing the terms in y when kStore. The tail's masked lanes read -inf, whose
// exp adds nothing.
template <class V, bool kStore>
typename V::T sm_exp_sum_rows(typename V::T* y, const typename V::T* x, std::int64_t n,
                              typename V::T shift) {
  using T = typename V::T;
  using R = typename V::reg;
  const R s = V::set1(shift);
  R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  auto step = [&](R& a, std::int64_t i) {
    const R e = vexp<V>(V::sub(V::load(x + i), s));
    if constexpr (kStore) V::store(y + i, e);
    a = V::add(a, e);
  };
  std::int64_t i = 0;
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    step(a0, i);
    step(a1, i + V::W);
    step(a2, i + 2 * V::W);
    step(a3, i + 3 * V::W);
  }
  for (; i + V::W <= n; i += V::W) step(a0, i);
  if (i < n) {
    const int r = int(n - i);
    const R v = V::select(V::lanes(r), V::loadn(x + i, r), V::set1(-std::numeric_limits<T>::infinity()));
    const R e = vexp<V>(V::sub(v, s));
    if constexpr (kStore) V::storen(y + i, e, r);
    a1 = V::add(a1, e);
  }
  return V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
}

template <class V>
typename V::T sm_exp_sum_store(typename V::T* y, const typename V::T* x, std::int64_t n,
                               typename V::T shift) {
  return sm_exp_sum_rows<V, true>(y, x, n, shift);
}
template <class V>
typename V::T sm_exp_sum(const typename V::T* x, std::int64_t n, typename V::T shift) {
  return sm_exp_sum_rows<V, false>(nullptr, x, n, shift);
}

template <class V>
void sm_scale(typename V::T* y, std::int64_t n, typename V::T s) {
  const auto sv = V::set1(s);
  map1<V>(y, y, n, [&](auto v) { return V::mul(v, sv); });
}

template <class V>
void sm_shift(typename V::T* y, const typename V::T* x, std::int64_t n, typename V::T a,
              typename V::T b) {
  const auto av = V::set1(a), bv = V::set1(b);
  map1<V>(y, x, n, [&](auto v) { return V::sub(V::sub(v, av), bv); });
}

template <class V, class F>
inline typename V::T reduce2(const typename V::T* a, const typename V::T* b, std::int64_t n, F f) {
  using R = typename V::reg;
  R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  std::int64_t i = 0;
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    a0 = f(a0, V::load(a + i), V::load(b + i));
    a1 = f(a1, V::load(a + i + V::W), V::load(b + i + V::W));
    a2 = f(a2, V::load(a + i + 2 * V::W), V::load(b + i + 2 * V::W));
    a3 = f(a3, V::load(a + i + 3 * V::W), V::load(b + i + 3 * V::W));
  }
  for (; i + V::W <= n; i += V::W) a0 = f(a0, V::load(a + i), V::load(b + i));
  if (i < n) a1 = f(a1, V::loadn(a + i, int(n - i)), V::loadn(b + i, int(n - i)));  // zeros
  return V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
}

template <class V>
typename V::T sm_dot(const typename V::T* a, const typename V::T* b, std::int64_t n) {
  return reduce2<V>(a, b, n, [](auto acc, auto u, auto v) { return V::fmadd(u, v, acc); });
}
template <class V>
typename V::T sm_sum(const typename V::T* a, std::int64_t n) {
  return reduce2<V>(a, a, n, [](auto acc, auto u, auto) { return V::add(acc, u); });
}

template <class V>
void sm_softmax_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* y,
                    std::int64_t n, typename V::T dot) {
  const auto d = V::set1(dot);
  map2<V>(dx, dy, y, n, [&](auto g, auto v) { return V::mul(v, V::sub(g, d)); });
}
template <class V>
void sm_log_softmax_bwd(typename V::T* dx, const typename V::T* dy, const typename V::T* y,
                        std::int64_t n, typename V::T s) {
  const auto sv = V::set1(s);
  map2<V>(dx, dy, y, n, [&](auto g, auto v) { return V::fnmadd(vexp<V>(v), sv, g); });
}

template <class V>
constexpr SoftmaxTable<typename V::T> make_softmax_table() {
  return {&sm_row_max<V>, &sm_exp_sum_store<V>, &sm_exp_sum<V>, &sm_scale<V>, &sm_shift<V>,
          &sm_dot<V>, &sm_sum<V>, &sm_softmax_bwd<V>, &sm_log_softmax_bwd<V>};
}

}  // namespace
}  // namespace fastdl
