// conv_simd.h: the direct convolution's inner kernels (conv.cpp, "direct"), written once over
// vector traits V (vec_generic.h contract) and instantiated per ISA (conv_avx2.cpp,
// conv_avx512.cpp; conv.cpp instantiates the one-lane generic version).
//
// Both work on one input plane that conv.cpp has laid out for them (ConvPlane): zero-padded,
// and split into stride_w phases, so every tap of every output row is a CONTIGUOUS run of the
// plane along ow whatever the stride, and no load needs a mask (each phase row ends in enough
// zeros for a whole block of vectors). Outputs are vectorised along ow, up to kBlock vectors of
// one output row at a time. The table also carries the strided im2col gather and the Winograd
// transforms (conv_winograd_simd.h), so the conv family has one ISA table.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/cpu.h"
#include "cpu/conv_winograd_simd.h"

namespace fastdl {

// The laid-out plane: virtual row i (0 <= i < rows), phase f (0 <= f < stride_w) starts at
// data + i * stride_w * wq + f * wq and holds virtual columns f, f + stride_w, ... (wq of them).
// Tap (r, q) of output (oh, ow) is virtual (oh*stride_h + r*dil_h, ow*stride_w + q*dil_w).
// tap[r*S + q]: the offset of tap (r, q) of output (0, 0) in the plane (precomputed: the kernels
// would otherwise divide by the stride for every tap of every row).
struct ConvPlaneGeom {
  std::int64_t out_h, out_w, r, s, dil_h, dil_w, stride_h, stride_w, wq;
  const std::int64_t* tap;
};

template <typename T>
struct ConvDirectTable {
  int lanes;  // V::W: conv.cpp sizes the zero tail of each phase row from it
  // For kb filters f: out + f*out_step (out_h x out_w) = init[f] (0 if init is null)
  // + sum_t taps[f*tap_step + t] * plane tap t, or out += that sum when acc.
  void (*rows)(T* out, std::int64_t out_step, const T* plane, const T* taps, std::int64_t tap_step,
               const T* init, int kb, bool acc, const ConvPlaneGeom& g);
  // out[r*S + q] += sum_{oh, ow} dy[oh*out_w + ow] * plane tap (r, q) at (oh, ow).
  void (*taps_dot)(T* out, const T* dy, const T* plane, const ConvPlaneGeom& g);
  // dst[t] = src[t] for lo <= t < hi, else 0, for t in [0, len) (one padded plane row; src is
  // read only in [lo, hi)).
  void (*pad_row)(T* dst, const T* src, std::int64_t lo, std::int64_t hi, std::int64_t len);
  // sum of x[0 .. n) (the bias gradient's per-plane sums), four vector accumulators.
  T (*sum)(const T* x, std::int64_t n);
  // dst[j] = src[j * stride] for j in [0, n), stride >= 2 (strided im2col runs); reads nothing
  // past src[(n - 1) * stride].
  void (*gather)(T* dst, const T* src, std::int64_t n, std::int64_t stride);
  // dst[e] = src[(e % 4) * src_step + e / 4] for e in [0, min(4 n, width)): four rows of n
  // values interleaved into one (Winograd's output tiles into an output row, cropped at width).
  void (*interleave4)(T* dst, const T* src, std::int64_t src_step, std::int64_t n,
                      std::int64_t width);
  // Winograd's tile gather: q[(6 i + j) * q_step + l] = plane[ih0 + i][iw0 + 4 l + j] for i, j in
  // [0, taps), l in [0, n) (n tiles of one tile row), 0 outside the h x w plane (the padding);
  // taps 6 (input tiles) or 4 (output-gradient tiles).
  void (*wino_gather)(T* q, std::int64_t q_step, const T* plane, std::int64_t ih0,
                      std::int64_t iw0, std::int64_t h, std::int64_t w, std::int64_t n, int taps);
  // The Winograd F(4x4, 3x3) transforms over n tiles (conv_winograd_simd.h).
  void (*wino_input)(T* v, std::int64_t v_step, const T* q, std::int64_t q_step, std::int64_t n);
  void (*wino_output)(T* o, std::int64_t o_step, const T* m, std::int64_t m_step, T bias,
                      std::int64_t n);
  void (*wino_grad_output)(T* z, std::int64_t z_step, const T* q, std::int64_t q_step,
                           std::int64_t n);
};

// One ISA's table, capped at what the processor supports (conv.cpp).
template <typename T>
const ConvDirectTable<T>& conv_direct_table(Isa isa);

constexpr int kConvBlock = 4;    // vectors of one output row computed together
constexpr int kConvFilters = 16;  // filters per rows() call (run in blocks of up to 4)

extern const ConvDirectTable<float> conv_direct_avx2_f32;
extern const ConvDirectTable<double> conv_direct_avx2_f64;
extern const ConvDirectTable<float> conv_direct_avx512_f32;
extern const ConvDirectTable<double> conv_direct_avx512_f64;

namespace {

// KB filters over RB output rows at once (outputs out + f*out_step, taps + f*tap_step): each
// tap's vectors are loaded once for KB filters' FMAs, and KB*RB*NB independent accumulators keep
// both FMA pipes busy (a single row of a depthwise filter is 9 dependent FMAs per vector: its
// latency, not the FMA rate, bounded it, ~40 cycles a row).
template <class V, int NB, int KB, int RB>
void direct_rows_nb(typename V::T* out, std::int64_t out_step, const typename V::T* plane,
                    const typename V::T* taps, std::int64_t tap_step, const typename V::T* init,
                    bool acc, std::int64_t oh0, std::int64_t oh1, const ConvPlaneGeom& g) {
  using T = typename V::T;
  using R = typename V::reg;
  const std::int64_t pitch = g.stride_w * g.wq, nt = g.r * g.s, rstep = g.stride_h * pitch;
  for (std::int64_t oh = oh0; oh + RB <= oh1; oh += RB) {
    for (std::int64_t ow0 = 0; ow0 < g.out_w; ow0 += NB * V::W) {
      R a[KB][RB][NB];
#pragma GCC unroll 4
      for (int f = 0; f < KB; ++f)
#pragma GCC unroll 4
        for (int i = 0; i < RB; ++i) {
          const T* orow = out + f * out_step + (oh + i) * g.out_w + ow0;
#pragma GCC unroll 4
          for (int v = 0; v < NB; ++v) {
            const std::int64_t left = g.out_w - ow0 - v * V::W;
            const int cnt = left >= V::W ? V::W : left > 0 ? int(left) : 0;
            a[f][i][v] = acc ? V::loadn(orow + v * V::W, cnt) : V::set1(init ? init[f] : T(0));
          }
        }
      const T* row = plane + oh * rstep + ow0;
      for (std::int64_t t = 0; t < nt; ++t) {
        const T* src = row + g.tap[t];
        R xv[RB][NB];
#pragma GCC unroll 4
        for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
          for (int v = 0; v < NB; ++v) xv[i][v] = V::load(src + i * rstep + v * V::W);
#pragma GCC unroll 4
        for (int f = 0; f < KB; ++f) {
          const R wv = V::set1(taps[f * tap_step + t]);
#pragma GCC unroll 4
          for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
            for (int v = 0; v < NB; ++v) a[f][i][v] = V::fmadd(wv, xv[i][v], a[f][i][v]);
        }
      }
#pragma GCC unroll 4
      for (int f = 0; f < KB; ++f)
#pragma GCC unroll 4
        for (int i = 0; i < RB; ++i) {
          T* orow = out + f * out_step + (oh + i) * g.out_w + ow0;
#pragma GCC unroll 4
          for (int v = 0; v < NB; ++v) {
            const std::int64_t left = g.out_w - ow0 - v * V::W;
            if (left <= 0) break;
            V::storen(orow + v * V::W, a[f][i][v], left >= V::W ? V::W : int(left));
          }
        }
    }
  }
}

// Rows in blocks of RB = kAcc / (NB*KB) (at most 4), the remainder one at a time.
template <class V, int NB, int KB>
void direct_rows_rb(typename V::T* out, std::int64_t out_step, const typename V::T* plane,
                    const typename V::T* taps, std::int64_t tap_step, const typename V::T* init,
                    bool acc, const ConvPlaneGeom& g) {
  // Accumulators: 16 of AVX-512's 32 registers, 8 of AVX2's 16 (the rest hold the tap's loads).
  constexpr int kAcc = sizeof(typename V::reg) >= 64 ? 16 : 8;
  constexpr int RB = NB * KB >= kAcc ? 1 : kAcc / (NB * KB) >= 4 ? 4 : kAcc / (NB * KB) >= 2 ? 2 : 1;
  const std::int64_t full = g.out_h / RB * RB;
  direct_rows_nb<V, NB, KB, RB>(out, out_step, plane, taps, tap_step, init, acc, 0, full, g);
  if constexpr (RB > 1)
    direct_rows_nb<V, NB, KB, 1>(out, out_step, plane, taps, tap_step, init, acc, full, g.out_h, g);
}

// kb filters (1 <= kb <= kConvFilters); NB from the row width; kb processed in runs of
// KB <= 8 / NB accumulator rows.
template <class V, int NB>
void direct_rows_kb(typename V::T* out, std::int64_t out_step, const typename V::T* plane,
                    const typename V::T* taps, std::int64_t tap_step, const typename V::T* init,
                    int kb, bool acc, const ConvPlaneGeom& g) {
  constexpr int kMax = NB >= 4 ? 2 : NB >= 2 ? 4 : 4;
  while (kb > 0) {
    const int f = kb >= kMax ? kMax : kb >= 2 ? 2 : 1;
    if (f == 4)
      direct_rows_rb<V, NB, 4>(out, out_step, plane, taps, tap_step, init, acc, g);
    else if (f == 2)
      direct_rows_rb<V, NB, 2>(out, out_step, plane, taps, tap_step, init, acc, g);
    else
      direct_rows_rb<V, NB, 1>(out, out_step, plane, taps, tap_step, init, acc, g);
    out += f * out_step, taps += f * tap_step, kb -= f;
    if (init) init += f;
  }
}

template <class V>
void direct_rows(typename V::T* out, std::int64_t out_step, const typename V::T* plane,
                 const typename V::T* taps, std::int64_t tap_step, const typename V::T* init,
                 int kb, bool acc, const ConvPlaneGeom& g) {
  const std::int64_t vecs = (g.out_w + V::W - 1) / V::W;
  if (vecs == 1) return direct_rows_kb<V, 1>(out, out_step, plane, taps, tap_step, init, kb, acc, g);
  if (vecs == 2) return direct_rows_kb<V, 2>(out, out_step, plane, taps, tap_step, init, kb, acc, g);
  if (vecs == 3) return direct_rows_kb<V, 3>(out, out_step, plane, taps, tap_step, init, kb, acc, g);
  direct_rows_kb<V, kConvBlock>(out, out_step, plane, taps, tap_step, init, kb, acc, g);
}

// Per tap, RB rows x NB vectors of independent accumulators (NB = the vectors of one row,
// fully unrolled: rows of a few vectors spent more time on loop control than on FMAs), dy's
// last vector of each row masked (dy has no zero tail).
template <class V, int NB, int RB>
void direct_taps_dot_nb(typename V::T* out, const typename V::T* dy, const typename V::T* plane,
                        const ConvPlaneGeom& g) {
  using T = typename V::T;
  using R = typename V::reg;
  const std::int64_t rstep = g.stride_h * g.stride_w * g.wq, nt = g.r * g.s;
  const int tail = int(g.out_w - (NB - 1) * V::W);  // lanes of the last vector, 1 .. W
  const std::int64_t full = g.out_h / RB * RB;
  for (std::int64_t t = 0; t < nt; ++t) {
    const T* base = plane + g.tap[t];
    R a[RB][NB];
#pragma GCC unroll 4
    for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NB; ++v) a[i][v] = V::zero();
    auto rows = [&](std::int64_t oh, auto rb) __attribute__((always_inline)) {
      constexpr int kRows = decltype(rb)::value;
#pragma GCC unroll 4
      for (int i = 0; i < kRows; ++i) {
        const T* d = dy + (oh + i) * g.out_w;
        const T* x = base + (oh + i) * rstep;
#pragma GCC unroll 4
        for (int v = 0; v < NB; ++v) {
          const R dv = v + 1 < NB ? V::load(d + v * V::W) : V::loadn(d + v * V::W, tail);
          a[i][v] = V::fmadd(dv, V::load(x + v * V::W), a[i][v]);
        }
      }
    };
    for (std::int64_t oh = 0; oh < full; oh += RB) rows(oh, std::integral_constant<int, RB>{});
    for (std::int64_t oh = full; oh < g.out_h; ++oh) rows(oh, std::integral_constant<int, 1>{});
    R sum = a[0][0];
#pragma GCC unroll 16
    for (int k = 1; k < RB * NB; ++k) sum = V::add(sum, a[k / NB][k % NB]);
    out[t] += V::hsum(sum);
  }
}

// Rows wider than kConvBlock vectors: the row walked in whole vectors, four chains per tap.
template <class V>
void direct_taps_dot_wide(typename V::T* out, const typename V::T* dy, const typename V::T* plane,
                          const ConvPlaneGeom& g) {
  using T = typename V::T;
  using R = typename V::reg;
  const std::int64_t rstep = g.stride_h * g.stride_w * g.wq, nt = g.r * g.s;
  const std::int64_t vecs = (g.out_w + V::W - 1) / V::W;
  const int tail = int(g.out_w - (vecs - 1) * V::W);
  for (std::int64_t t = 0; t < nt; ++t) {
    const T* base = plane + g.tap[t];
    R a[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
    for (std::int64_t oh = 0; oh < g.out_h; ++oh) {
      const T* d = dy + oh * g.out_w;
      const T* x = base + oh * rstep;
      std::int64_t v = 0;
      for (; v + 4 < vecs; v += 4)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j)
          a[j] = V::fmadd(V::load(d + (v + j) * V::W), V::load(x + (v + j) * V::W), a[j]);
      for (; v + 1 < vecs; ++v)
        a[v % 4] = V::fmadd(V::load(d + v * V::W), V::load(x + v * V::W), a[v % 4]);
      a[v % 4] = V::fmadd(V::loadn(d + v * V::W, tail), V::load(x + v * V::W), a[v % 4]);
    }
    out[t] += V::hsum(V::add(V::add(a[0], a[1]), V::add(a[2], a[3])));
  }
}

template <class V>
void direct_taps_dot(typename V::T* out, const typename V::T* dy, const typename V::T* plane,
                     const ConvPlaneGeom& g) {
  const std::int64_t vecs = (g.out_w + V::W - 1) / V::W;
  if (vecs == 1) return direct_taps_dot_nb<V, 1, 4>(out, dy, plane, g);
  if (vecs == 2) return direct_taps_dot_nb<V, 2, 4>(out, dy, plane, g);
  if (vecs == 3) return direct_taps_dot_nb<V, 3, 2>(out, dy, plane, g);
  if (vecs == 4) return direct_taps_dot_nb<V, 4, 2>(out, dy, plane, g);
  direct_taps_dot_wide<V>(out, dy, plane, g);
}

template <class V>
void direct_pad_row(typename V::T* __restrict dst, const typename V::T* __restrict src,
                    std::int64_t lo, std::int64_t hi, std::int64_t len) {
  using T = typename V::T;
  std::int64_t t = 0;
  for (; t < lo; ++t) dst[t] = T(0);  // the left padding: a few elements
  for (; t + V::W <= hi; t += V::W) V::store(dst + t, V::load(src + t));
  if (t < hi) {  // the last source vector, zero-filled past hi
    const std::int64_t room = len - t;
    V::storen(dst + t, V::loadn(src + t, int(hi - t)), room < V::W ? int(room) : V::W);
    t += V::W;
  }
  for (; t + V::W <= len; t += V::W) V::store(dst + t, V::zero());
  if (t < len) V::storen(dst + t, V::zero(), int(len - t));
}

template <class V>
typename V::T direct_sum(const typename V::T* x, std::int64_t n) {
  using R = typename V::reg;
  R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  std::int64_t i = 0;
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    a0 = V::add(a0, V::load(x + i));
    a1 = V::add(a1, V::load(x + i + V::W));
    a2 = V::add(a2, V::load(x + i + 2 * V::W));
    a3 = V::add(a3, V::load(x + i + 3 * V::W));
  }
  for (; i + V::W <= n; i += V::W) a0 = V::add(a0, V::load(x + i));
  if (i < n) a1 = V::add(a1, V::loadn(x + i, int(n - i)));
  return V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
}

template <typename T>
void gather_scalar(T* __restrict dst, const T* __restrict src, std::int64_t n, std::int64_t stride) {
  for (std::int64_t j = 0; j < n; ++j) dst[j] = src[j * stride];
}

template <typename T>
void interleave4_scalar(T* __restrict dst, const T* __restrict src, std::int64_t step,
                        std::int64_t n, std::int64_t width) {
  const std::int64_t lim = std::min(4 * n, width);
  for (std::int64_t e = 0; e < lim; ++e) dst[e] = src[(e & 3) * step + (e >> 2)];
}

// wino_gather over a stride-4 gather g(dst, src, n) (dst[l] = src[4 l]): the columns of each
// tap j that lie inside the plane are one gather, the few outside (the padding) zeros.
template <typename T, void (*G)(T*, const T*, std::int64_t)>
void wino_gather_rows(T* __restrict q, std::int64_t q_step, const T* __restrict plane,
                      std::int64_t ih0, std::int64_t iw0, std::int64_t h, std::int64_t w,
                      std::int64_t n, int taps) {
  for (int i = 0; i < taps; ++i) {
    T* qi = q + 6 * i * q_step;
    const std::int64_t r = ih0 + i;
    if (r < 0 || r >= h) {
      for (int j = 0; j < taps; ++j) std::fill(qi + j * q_step, qi + j * q_step + n, T(0));
      continue;
    }
    const T* row = plane + r * w;
    for (int j = 0; j < taps; ++j) {
      T* d = qi + j * q_step;
      const std::int64_t c0 = iw0 + j;  // column of tile l: c0 + 4 l
      const std::int64_t lo = c0 >= 0 ? 0 : std::min<std::int64_t>((-c0 + 3) / 4, n);
      const std::int64_t hi = c0 >= w ? lo : std::clamp<std::int64_t>((w - c0 + 3) / 4, lo, n);
      std::fill(d, d + lo, T(0));
      if (hi > lo) G(d + lo, row + c0 + 4 * lo, hi - lo);
      std::fill(d + hi, d + n, T(0));
    }
  }
}

template <typename T>
void gather4_scalar(T* __restrict dst, const T* __restrict src, std::int64_t n) {
  for (std::int64_t l = 0; l < n; ++l) dst[l] = src[4 * l];
}

template <class V>
constexpr ConvDirectTable<typename V::T> make_conv_direct_table(
    void (*gather)(typename V::T*, const typename V::T*, std::int64_t, std::int64_t) =
        &gather_scalar<typename V::T>,
    void (*interleave4)(typename V::T*, const typename V::T*, std::int64_t, std::int64_t,
                        std::int64_t) = &interleave4_scalar<typename V::T>,
    void (*wino_gather)(typename V::T*, std::int64_t, const typename V::T*, std::int64_t,
                        std::int64_t, std::int64_t, std::int64_t, std::int64_t, int) =
        &wino_gather_rows<typename V::T, &gather4_scalar<typename V::T>>) {
  return {V::W,        &direct_rows<V>, &direct_taps_dot<V>, &direct_pad_row<V>, &direct_sum<V>,
          gather,      interleave4,     wino_gather,         &wino_input<V>,     &wino_output<V>,
          &wino_grad_output<V>};
}

}  // namespace
}  // namespace fastdl
