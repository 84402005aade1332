// rnn_simd.h: the point-wise rows of the recurrent cells (rnn.h's RnnTable), written once over
// vector traits V (vec_generic.h) and instantiated per ISA: rnn.cpp (generic), rnn_avx2.cpp,
// rnn_avx512.cpp. sigmoid and tanh are vec_math.h's, the activation family's. Full vectors in
// the loop, one masked vector for the tail.
#pragma once

#include <cstdint>

#include "cpu/rnn.h"
#include "cpu/vec_math.h"

namespace fastdl {
namespace {

template <class V>
void rnn_tanh_inplace(typename V::T* h, std::int64_t n) {
  map1<V>(h, h, n, [](auto v) { return vtanh<V>(v); });
}

template <class V>
void rnn_tanh_grad(typename V::T* da, const typename V::T* dh, const typename V::T* y,
                   std::int64_t n) {
  using T = typename V::T;
  map2<V>(da, dh, y, n, [](auto g, auto v) { return V::mul(g, V::fnmadd(v, v, V::set1(T(1)))); });
}

// Elements [u, u + cnt) of one LSTM row; cnt < W only for the tail (masked loads and stores).
// Gate k of unit u is z[k * zs + u] and gates[k * gs + u]; gates null: not stored (inference).
template <class V>
inline void lstm_step(typename V::T* gates, std::int64_t gs, typename V::T* c_new,
                      typename V::T* h_new, const typename V::T* z, std::int64_t zs,
                      const typename V::T* c, std::int64_t u, int cnt) {
  using R = typename V::reg;
  const bool full = cnt == V::W;
  auto ld = [&](const typename V::T* p) { return full ? V::load(p) : V::loadn(p, cnt); };
  auto st = [&](typename V::T* p, R v) { full ? V::store(p, v) : V::storen(p, v, cnt); };
  const R i = vsigmoid<V>(ld(z + u));
  const R f = vsigmoid<V>(ld(z + zs + u));
  const R g = vtanh<V>(ld(z + 2 * zs + u));
  const R o = vsigmoid<V>(ld(z + 3 * zs + u));
  const R cn = V::fmadd(f, ld(c + u), V::mul(i, g));
  if (gates) {
    st(gates + u, i);
    st(gates + gs + u, f);
    st(gates + 2 * gs + u, g);
    st(gates + 3 * gs + u, o);
  }
  st(c_new + u, cn);
  st(h_new + u, V::mul(o, vtanh<V>(cn)));
}

template <class V>
void lstm_row(typename V::T* gates, std::int64_t gs, typename V::T* c_new, typename V::T* h_new,
              const typename V::T* z, std::int64_t zs, const typename V::T* c,
              std::int64_t units) {
  std::int64_t u = 0;
  for (; u + V::W <= units; u += V::W) lstm_step<V>(gates, gs, c_new, h_new, z, zs, c, u, V::W);
  if (u < units) lstm_step<V>(gates, gs, c_new, h_new, z, zs, c, u, int(units - u));
}

// The LSTM gradients of one row (rnn.cpp's block comment): tc = tanh(c_new), do = dh tc,
// dct = dc + dh o (1 - tc^2), dc_prev = dct f, dz = [dct g i(1-i), dct c f(1-f),
// dct i (1-g^2), do o(1-o)].
template <class V>
inline void lstm_back_step(typename V::T* dz, typename V::T* dc_prev, const typename V::T* dh,
                           const typename V::T* dc, const typename V::T* gates,
                           const typename V::T* c, const typename V::T* c_new, std::int64_t hid,
                           const typename V::T* dy, std::int64_t u, int cnt) {
  using T = typename V::T;
  using R = typename V::reg;
  const bool full = cnt == V::W;
  auto ld = [&](const T* p) { return full ? V::load(p) : V::loadn(p, cnt); };
  auto st = [&](T* p, R v) { full ? V::store(p, v) : V::storen(p, v, cnt); };
  const R one = V::set1(T(1));
  const R i = ld(gates + u), f = ld(gates + hid + u), g = ld(gates + 2 * hid + u),
          o = ld(gates + 3 * hid + u);
  const R tc = vtanh<V>(ld(c_new + u));
  R dhv = dh ? ld(dh + u) : V::zero();
  if (dy) dhv = V::add(dhv, ld(dy + u));
  const R dcv = dc ? ld(dc + u) : V::zero();
  const R dct = V::fmadd(V::mul(dhv, o), V::fnmadd(tc, tc, one), dcv);
  const R d_o = V::mul(dhv, tc);
  st(dz + u, V::mul(V::mul(dct, g), V::mul(i, V::sub(one, i))));
  st(dz + hid + u, V::mul(V::mul(dct, ld(c + u)), V::mul(f, V::sub(one, f))));
  st(dz + 2 * hid + u, V::mul(V::mul(dct, i), V::fnmadd(g, g, one)));
  st(dz + 3 * hid + u, V::mul(d_o, V::mul(o, V::sub(one, o))));
  st(dc_prev + u, V::mul(dct, f));
}

template <class V>
void lstm_row_backward(typename V::T* dz, typename V::T* dc_prev, const typename V::T* dh,
                       const typename V::T* dy, const typename V::T* dc,
                       const typename V::T* gates, const typename V::T* c,
                       const typename V::T* c_new, std::int64_t hid, std::int64_t units) {
  std::int64_t u = 0;
  for (; u + V::W <= units; u += V::W)
    lstm_back_step<V>(dz, dc_prev, dh, dc, gates, c, c_new, hid, dy, u, V::W);
  if (u < units)
    lstm_back_step<V>(dz, dc_prev, dh, dc, gates, c, c_new, hid, dy, u, int(units - u));
}

template <class V>
constexpr RnnTable<typename V::T> make_rnn_table() {
  return {&rnn_tanh_inplace<V>, &rnn_tanh_grad<V>, &lstm_row<V>, &lstm_row_backward<V>};
}

}  // namespace
}  // namespace fastdl
