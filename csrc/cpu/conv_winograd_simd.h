// conv_winograd_simd.h: the Winograd F(4x4, 3x3) input, output and output-gradient transforms
// (conv.cpp, "winograd"), written once over vector traits V (vec_generic.h contract) and
// instantiated per ISA through conv_simd.h's table.
//
// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2015), interpolation points
// 0, +-1, +-2, infinity. With d a 6x6 input tile, g a 3x3 filter and Y the 4x4 output tile,
//   Y = A^T [ (G g G^T) o (B^T d B) ] A
//   B^T = [ 4  0 -5  0  1  0 ]   G = [  1/4     0     0  ]   A^T = [ 1  1  1  1  1  0 ]
//         [ 0 -4 -4  1  1  0 ]       [ -1/6  -1/6  -1/6  ]         [ 0  1 -1  2 -2  0 ]
//         [ 0  4 -4 -1  1  0 ]       [ -1/6   1/6  -1/6  ]         [ 0  1  1  4  4  0 ]
//         [ 0 -2 -1  2  1  0 ]       [ 1/24  1/12   1/6  ]         [ 0  1 -1  8 -8  1 ]
//         [ 0  2 -1 -2  1  0 ]       [ 1/24 -1/12   1/6  ]
//         [ 0  4  0 -5  0  1 ]       [   0     0     1   ]
// Backward-weight needs the adjoint of the output transform, Z = A dY A^T (4x4 -> 6x6,
// wino_grad_output); its products and G^T dU G are in conv.cpp.
// The transforms are vectorised ACROSS TILES: element (i, j) of consecutive tiles lies
// contiguous (the table's wino_gather lays the tiles' 36 elements out as 36 rows), so every load
// and store is a plain vector and the 2-D transform is two passes of six 1-D transforms over
// registers, no shuffles. The filter transform (K x C/G x 36, once per call) is plain C in
// conv.cpp.
#pragma once

#include <cstdint>

namespace fastdl {
namespace {

// r = B^T d over six vectors (one column or row of six tiles' elements), 12 adds/FMAs.
template <class V>
inline void wino_bt(typename V::reg* r, const typename V::reg* d) {
  using R = typename V::reg;
  const R four = V::set1(typename V::T(4)), five = V::set1(typename V::T(5));
  const R two = V::set1(typename V::T(2));
  const R t1 = V::fnmadd(four, d[2], d[4]);  // d4 - 4 d2
  const R t2 = V::fnmadd(four, d[1], d[3]);  // d3 - 4 d1
  const R t3 = V::sub(d[4], d[2]);
  const R t4 = V::mul(two, V::sub(d[3], d[1]));
  r[0] = V::fmadd(four, d[0], V::fnmadd(five, d[2], d[4]));
  r[1] = V::add(t1, t2);
  r[2] = V::sub(t1, t2);
  r[3] = V::add(t3, t4);
  r[4] = V::sub(t3, t4);
  r[5] = V::fmadd(four, d[1], V::fnmadd(five, d[3], d[5]));
}

// o = A^T m over six vectors, four results.
template <class V>
inline void wino_at(typename V::reg* o, const typename V::reg* m) {
  using R = typename V::reg;
  const R a = V::add(m[1], m[2]), b = V::sub(m[1], m[2]);
  const R c = V::add(m[3], m[4]), d = V::sub(m[3], m[4]);
  o[0] = V::add(V::add(m[0], a), c);
  o[1] = V::fmadd(V::set1(typename V::T(2)), d, b);
  o[2] = V::fmadd(V::set1(typename V::T(4)), c, a);
  o[3] = V::add(V::fmadd(V::set1(typename V::T(8)), d, b), m[5]);
}

// Loads and stores of one vector of tiles: whole vectors in the body, masked in the tail.
template <class V, bool Full>
inline typename V::reg wino_load(const typename V::T* p, int cnt) {
  if constexpr (Full) return V::load(p);
  else return V::loadn(p, cnt);
}
template <class V, bool Full>
inline void wino_store(typename V::T* p, typename V::reg v, int cnt) {
  if constexpr (Full) V::store(p, v);
  else V::storen(p, v, cnt);
}

// One vector of tiles (cnt of them) of wino_input.
template <class V, bool Full>
inline void wino_input_vec(typename V::T* __restrict v, std::int64_t v_step,
                           const typename V::T* __restrict q, std::int64_t q_step, int cnt) {
  using R = typename V::reg;
  R w[36];  // B^T d, row i of the result at w[6 i ..]
#pragma GCC unroll 6
  for (int j = 0; j < 6; ++j) {
    R col[6], out[6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) col[i] = wino_load<V, Full>(q + (6 * i + j) * q_step, cnt);
    wino_bt<V>(out, col);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) w[6 * i + j] = out[i];
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    R out[6];
    wino_bt<V>(out, w + 6 * i);
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) wino_store<V, Full>(v + (6 * i + j) * v_step, out[j], cnt);
  }
}

// v[xi * v_step + t] = (B^T d_t B)[xi] for t in [0, n), xi = 6 i + j, where element (i, j) of
// tile t is q[(6 i + j) * q_step + t].
template <class V>
void wino_input(typename V::T* __restrict v, std::int64_t v_step, const typename V::T* __restrict q,
                std::int64_t q_step, std::int64_t n) {
  std::int64_t t = 0;
  for (; t + V::W <= n; t += V::W) wino_input_vec<V, true>(v + t, v_step, q + t, q_step, V::W);
  if (t < n) wino_input_vec<V, false>(v + t, v_step, q + t, q_step, int(n - t));
}

template <class V, bool Full>
inline void wino_output_vec(typename V::T* __restrict o, std::int64_t o_step,
                            const typename V::T* __restrict m, std::int64_t m_step,
                            typename V::reg bias, int cnt) {
  using R = typename V::reg;
  R w[24];  // A^T M, row i of the result at w[6 i ..]
#pragma GCC unroll 6
  for (int j = 0; j < 6; ++j) {
    R col[6], out[4];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) col[i] = wino_load<V, Full>(m + (6 * i + j) * m_step, cnt);
    wino_at<V>(out, col);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) w[6 * i + j] = out[i];
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    R out[4];
    wino_at<V>(out, w + 6 * i);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
      wino_store<V, Full>(o + (4 * i + j) * o_step, V::add(out[j], bias), cnt);
  }
}

// o[(4 i + j) * o_step + t] = (A^T M_t A)[i][j] + bias for t in [0, n), where M_t[xi] is
// m[xi * m_step + t].
template <class V>
void wino_output(typename V::T* __restrict o, std::int64_t o_step, const typename V::T* __restrict m,
                 std::int64_t m_step, typename V::T bias, std::int64_t n) {
  const typename V::reg bv = V::set1(bias);
  std::int64_t t = 0;
  for (; t + V::W <= n; t += V::W) wino_output_vec<V, true>(o + t, o_step, m + t, m_step, bv, V::W);
  if (t < n) wino_output_vec<V, false>(o + t, o_step, m + t, m_step, bv, int(n - t));
}

// z = A y over four vectors (an output-gradient tile's column or row), six results: the
// adjoint of wino_at, for the weight gradient.
template <class V>
inline void wino_a(typename V::reg* z, const typename V::reg* y) {
  using R = typename V::reg;
  const R e = V::add(y[0], y[2]), o = V::add(y[1], y[3]);
  const R e4 = V::fmadd(V::set1(typename V::T(4)), y[2], y[0]);
  const R o8 = V::fmadd(V::set1(typename V::T(8)), y[3], V::add(y[1], y[1]));
  z[0] = y[0];
  z[1] = V::add(e, o);
  z[2] = V::sub(e, o);
  z[3] = V::add(e4, o8);
  z[4] = V::sub(e4, o8);
  z[5] = y[3];
}

template <class V, bool Full>
inline void wino_grad_vec(typename V::T* __restrict z, std::int64_t z_step,
                          const typename V::T* __restrict q, std::int64_t q_step, int cnt) {
  using R = typename V::reg;
  R w[24];  // A dY: 6 x 4, row i at w[4 i ..]
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    R col[4], out[6];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) col[i] = wino_load<V, Full>(q + (6 * i + j) * q_step, cnt);
    wino_a<V>(out, col);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) w[4 * i + j] = out[i];
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    R out[6];
    wino_a<V>(out, w + 4 * i);
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) wino_store<V, Full>(z + (6 * i + j) * z_step, out[j], cnt);
  }
}

// z[xi * z_step + t] = (A dY_t A^T)[xi] for t in [0, n), where element (i, j) of the 4x4
// output-gradient tile t is q[(6 i + j) * q_step + t] (wino_gather's layout, i, j < 4 used).
template <class V>
void wino_grad_output(typename V::T* __restrict z, std::int64_t z_step,
                      const typename V::T* __restrict q, std::int64_t q_step, std::int64_t n) {
  std::int64_t t = 0;
  for (; t + V::W <= n; t += V::W) wino_grad_vec<V, true>(z + t, z_step, q + t, q_step, V::W);
  if (t < n) wino_grad_vec<V, false>(z + t, z_step, q + t, q_step, int(n - t));
}

}  // namespace
}  // namespace fastdl
