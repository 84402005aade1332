// pool_simd.h: the per-plane pooling kernels (pool.h's PoolTable) written once over vector
// traits V and instantiated per ISA.
//
// Forward: lanes are consecutive outputs of one row, so lane j of the load for window cell
// (r, c) reads x[ih][(ow + j) * sw - pw + c * dw] (dw: max-pool dilation, else 1; the rows ih
// of a window are dh apart): a plain load for stride 1, two loads and an
// even-lane shuffle for stride 2, a gather otherwise. Windows that padding clips horizontally
// (the first and last few columns) and the row tails go one output at a time through the same
// arithmetic in the same cell order, so each output's value is independent of which path ran.
// Max keeps, per lane, the running max and the offset of its cell from the window's corner
// (a small integer, exact in T) and turns the offsets into flat argmax indices at the end.
//
// The loads vec_*.h does not have come from PoolOps<V>, specialised beside each instantiation
// (pool.cpp for the one-lane generic vector, pool_avx2.cpp, pool_avx512.cpp):
//   even2(p)                   p[0], p[2], ..., p[2W - 2]     (reads p[0 .. 2W - 1])
//   gather(p, s)               p[0], p[s], ..., p[(W - 1) s]
//   dup2(v, lo, hi)            lo = v0 v0 v1 v1 ..., hi = the second half likewise
//   store_index(d, b, s, off)  d[j] = b + j s + off[j]        (off integral, below 2^24)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/pool.h"
#include "cpu/vec_stream.h"

namespace fastdl {
namespace {

template <class V>
struct PoolOps;

// Window offsets (r * W + c) stay exact in the lanes of T below this; planes with larger windows
// take the one-output path.
template <typename T>
constexpr std::int64_t kExactOffset = std::int64_t(1) << 24;

// The rows of output row oh's window inside the image.
inline void window_rows(const Pool2dShape& s, std::int64_t oh, std::int64_t& h0, std::int64_t& h1) {
  h0 = std::max<std::int64_t>(oh * s.sh - s.ph, 0);
  h1 = std::min(oh * s.sh - s.ph + s.kh, s.h);
}

// First and one-past-last cell inside [0, n) of a dilated window starting at `start` (cells
// start, start + d, ..., start + d (k - 1)): a loop from `first` below `end` in steps of d.
inline void dilated_cells(std::int64_t start, std::int64_t k, std::int64_t d, std::int64_t n,
                          std::int64_t& first, std::int64_t& end) {
  first = start >= 0 ? start : start + (-start + d - 1) / d * d;
  end = std::min(start + d * (k - 1) + 1, n);
}

// Blocks of V::W outputs may start at ow_a <= ow < ow_b: their windows are whole horizontally
// and their vector loads stay inside the row. The other outputs take the one-output path.
inline void simd_columns(const Pool2dShape& s, int lanes, std::int64_t& ow_a, std::int64_t& ow_b,
                         std::int64_t dw = 1) {
  ow_a = std::min((s.pw + s.sw - 1) / s.sw, s.ow);  // first ow whose window starts at iw >= 0
  // The last lane of a block starting at ow reads up to (ow + lanes - 1) sw - pw + dw (kw - 1),
  // and one more for the stride-2 shuffle's odd partner: that must be at most w - 1.
  const std::int64_t last = s.w - 1 - dw * (s.kw - 1) - (s.sw == 2 ? 1 : 0) + s.pw;
  const std::int64_t end = last < 0 ? 0 : last / s.sw + 1 - (lanes - 1);
  ow_b = std::max(ow_a, std::min(end, s.ow - (lanes - 1)));
}

// Runs block(ow) over blocks of `lanes` outputs covering [ow_a, ow_b - 1 + lanes), the last one
// moved back to end exactly there (it recomputes a few outputs: the same values, written again).
// Returns the end of what the blocks covered.
template <class F>
inline std::int64_t for_blocks(std::int64_t ow_a, std::int64_t ow_b, int lanes, F block) {
  if (ow_a >= ow_b) return ow_a;
  std::int64_t ow = ow_a;
  for (; ow < ow_b; ow += lanes) block(ow);
  const std::int64_t end = ow_b - 1 + lanes;
  if (ow < end) block(ow_b - 1);
  return end;
}

// ---- max --------------------------------------------------------------------------------------

template <typename T>
inline void max_one(T* y, std::int64_t* am, const T* x, const Pool2dShape& s, std::int64_t h0,
                    std::int64_t h1, std::int64_t ow) {
  const std::int64_t w0 = std::max<std::int64_t>(ow * s.sw - s.pw, 0);
  const std::int64_t w1 = std::min(ow * s.sw - s.pw + s.kw, s.w);
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  T m = -std::numeric_limits<T>::infinity();
  std::int64_t at = h0 * s.w + w0;
  for (std::int64_t ih = h0; ih < h1; ++ih) {
    for (std::int64_t iw = w0; iw < w1; ++iw) {
      const T v = x[ih * s.w + iw];
      // Branch-free (selects, not jumps): on random data `v > m` is a coin flip, and a
      // mispredicted branch per cell cost more than the whole window on planes too narrow for
      // the vector path (ow < lanes, e.g. 8x8 -> 4x4). v != v is isnan(v).
      // (GCC turns `take ? v : m` on floats back into a jump, so the select is done on bits.)
      const bool take = (v > m) | (v != v);
      const U mask = U(0) - U(take);
      U vb, mb;
      std::memcpy(&vb, &v, sizeof(T));
      std::memcpy(&mb, &m, sizeof(T));
      mb = (mb & ~mask) | (vb & mask);
      std::memcpy(&m, &mb, sizeof(T));
      const std::int64_t imask = -std::int64_t(take);
      at = (at & ~imask) | ((ih * s.w + iw) & imask);
    }
  }
  *y = m;
  *am = at;
}

template <class V, int kStride>  // kStride: 1, 2, or 0 for any other stride (gather)
inline typename V::reg load_cols(const typename V::T* p, std::int64_t stride) {
  if constexpr (kStride == 1) {
    return V::load(p);
  } else if constexpr (kStride == 2) {
    return PoolOps<V>::even2(p);
  } else {
    return PoolOps<V>::gather(p, stride);
  }
}

template <class V, int kStride>
void max_row(typename V::T* y, std::int64_t* am, const typename V::T* x, const Pool2dShape& s,
             std::int64_t oh) {
  using T = typename V::T;
  using R = typename V::reg;
  std::int64_t h0, h1, ow_a, ow_b;
  window_rows(s, oh, h0, h1);
  simd_columns(s, V::W, ow_a, ow_b);
  if (s.kh * s.w >= kExactOffset<T>) ow_a = ow_b = 0;
  std::int64_t ow = 0;
  for (; ow < ow_a; ++ow) max_one(y + ow, am + ow, x, s, h0, h1, ow);
  const R ninf = V::set1(-std::numeric_limits<T>::infinity());
  ow = for_blocks(ow, ow_b, V::W, [&](std::int64_t o) {
    const std::int64_t iw0 = o * s.sw - s.pw;
    R m = ninf, at = V::zero();
    for (std::int64_t ih = h0; ih < h1; ++ih) {
      const T* row = x + ih * s.w + iw0;
      for (std::int64_t c = 0; c < s.kw; ++c) {
        const R v = load_cols<V, kStride>(row + c, s.sw);
        const R off = V::set1(T((ih - h0) * s.w + c));
        // v > max takes v; a NaN v takes v whatever the max (v <= v is false only for NaN).
        const auto gt = V::gt(v, m);
        const R m2 = V::select(gt, v, m), at2 = V::select(gt, off, at);
        const auto num = V::le(v, v);
        m = V::select(num, m2, v);
        at = V::select(num, at2, off);
      }
    }
    V::store(y + o, m);
    PoolOps<V>::store_index(am + o, h0 * s.w + iw0, s.sw, at);
  });
  for (; ow < s.ow; ++ow) max_one(y + ow, am + ow, x, s, h0, h1, ow);
}

template <class V>
void pool_max_rows(typename V::T* y, std::int64_t* am, const typename V::T* x, const Pool2dShape& s,
                   std::int64_t oh0, std::int64_t oh1) {
  for (std::int64_t oh = oh0; oh < oh1; ++oh) {
    typename V::T* yr = y + oh * s.ow;
    std::int64_t* ar = am + oh * s.ow;
    if (s.sw == 1)
      max_row<V, 1>(yr, ar, x, s, oh);
    else if (s.sw == 2)
      max_row<V, 2>(yr, ar, x, s, oh);
    else
      max_row<V, 0>(yr, ar, x, s, oh);
  }
}

// ---- max, dilated (MaxPool2d(dilation=...)) --------------------------------------------------
// The same two paths as above with the window's cells dh / dw apart: loads c * dw further along
// the row, rows dh apart, offsets (ih - h0) W + c dw. Kept beside the kernels above rather than
// folded into them by a template flag: the undilated kernels stay the exact code they were
// (GCC's if-conversion of the one-lane select is fragile -- with the flag, even at a constant
// dilation of 1, the generic ISA's stride-2 selects became jumps, 2.6x slower on random data).

template <typename T>
inline void max_one_dilated(T* y, std::int64_t* am, const T* x, const Pool2dShape& s,
                            std::int64_t h0, std::int64_t h1, std::int64_t ow) {
  std::int64_t w0, w1;
  dilated_cells(ow * s.sw - s.pw, s.kw, s.dw, s.w, w0, w1);
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  T m = -std::numeric_limits<T>::infinity();
  std::int64_t at = h0 * s.w + w0;
  for (std::int64_t ih = h0; ih < h1; ih += s.dh) {
    for (std::int64_t iw = w0; iw < w1; iw += s.dw) {
      const T v = x[ih * s.w + iw];
      const bool take = (v > m) | (v != v);  // max_one's branch-free select, on bits
      const U mask = U(0) - U(take);
      U vb, mb;
      std::memcpy(&vb, &v, sizeof(T));
      std::memcpy(&mb, &m, sizeof(T));
      mb = (mb & ~mask) | (vb & mask);
      std::memcpy(&m, &mb, sizeof(T));
      const std::int64_t imask = -std::int64_t(take);
      at = (at & ~imask) | ((ih * s.w + iw) & imask);
    }
  }
  *y = m;
  *am = at;
}

template <class V, int kStride>
void max_row_dilated(typename V::T* y, std::int64_t* am, const typename V::T* x,
                     const Pool2dShape& s, std::int64_t oh) {
  using T = typename V::T;
  using R = typename V::reg;
  const std::int64_t dh = s.dh, dw = s.dw;
  std::int64_t h0, h1, ow_a, ow_b;
  dilated_cells(oh * s.sh - s.ph, s.kh, dh, s.h, h0, h1);
  simd_columns(s, V::W, ow_a, ow_b, dw);
  if ((h1 - h0) * s.w >= kExactOffset<T>) ow_a = ow_b = 0;
  std::int64_t ow = 0;
  for (; ow < ow_a; ++ow) max_one_dilated(y + ow, am + ow, x, s, h0, h1, ow);
  const R ninf = V::set1(-std::numeric_limits<T>::infinity());
  ow = for_blocks(ow, ow_b, V::W, [&](std::int64_t o) {
    const std::int64_t iw0 = o * s.sw - s.pw;
    R m = ninf, at = V::zero();
    for (std::int64_t ih = h0; ih < h1; ih += dh) {
      const T* row = x + ih * s.w + iw0;
      for (std::int64_t c = 0; c < s.kw; ++c) {
        const R v = load_cols<V, kStride>(row + c * dw, s.sw);
        const R off = V::set1(T((ih - h0) * s.w + c * dw));
        const auto gt = V::gt(v, m);
        const R m2 = V::select(gt, v, m), at2 = V::select(gt, off, at);
        const auto num = V::le(v, v);
        m = V::select(num, m2, v);
        at = V::select(num, at2, off);
      }
    }
    V::store(y + o, m);
    PoolOps<V>::store_index(am + o, h0 * s.w + iw0, s.sw, at);
  });
  for (; ow < s.ow; ++ow) max_one_dilated(y + ow, am + ow, x, s, h0, h1, ow);
}

template <class V>
void pool_max_rows_dilated(typename V::T* y, std::int64_t* am, const typename V::T* x,
                           const Pool2dShape& s, std::int64_t oh0, std::int64_t oh1) {
  for (std::int64_t oh = oh0; oh < oh1; ++oh) {
    typename V::T* yr = y + oh * s.ow;
    std::int64_t* ar = am + oh * s.ow;
    if (s.sw == 1)
      max_row_dilated<V, 1>(yr, ar, x, s, oh);
    else if (s.sw == 2)
      max_row_dilated<V, 2>(yr, ar, x, s, oh);
    else
      max_row_dilated<V, 0>(yr, ar, x, s, oh);
  }
}

// ---- avg --------------------------------------------------------------------------------------

// The divisor of output (oh, ow) (pool.h's PoolDivisor): by default the window clipped to the
// padded extent (kh * kw in floor mode), or clipped to the image, or the fixed override.
// kModes = false compiles the default (padded) alone: the avg kernels are instantiated twice,
// so that the default keeps the code it had before the other modes existed.
template <bool kModes>
inline std::int64_t avg_divisor(const Pool2dShape& s, std::int64_t oh, std::int64_t ow) {
  const std::int64_t hs = oh * s.sh - s.ph, ws = ow * s.sw - s.pw;
  const std::int64_t he = std::min(hs + s.kh, s.h + s.ph), we = std::min(ws + s.kw, s.w + s.pw);
  if (!kModes || s.divisor_mode == PoolDivisor::padded) return (he - hs) * (we - ws);
  if (s.divisor_mode == PoolDivisor::fixed) return s.divisor;
  return (std::min(he, s.h) - std::max<std::int64_t>(hs, 0)) *
         (std::min(we, s.w) - std::max<std::int64_t>(ws, 0));
}

template <typename T, bool kModes>
inline T avg_one(const T* x, const Pool2dShape& s, std::int64_t oh, std::int64_t h0,
                 std::int64_t h1, std::int64_t ow) {
  const std::int64_t w0 = std::max<std::int64_t>(ow * s.sw - s.pw, 0);
  const std::int64_t w1 = std::min(ow * s.sw - s.pw + s.kw, s.w);
  T sum = T(0);
  for (std::int64_t ih = h0; ih < h1; ++ih)
    for (std::int64_t iw = w0; iw < w1; ++iw) sum += x[ih * s.w + iw];
  return sum / T(avg_divisor<kModes>(s, oh, ow));
}

template <class V, int kStride, bool kModes>
void avg_row(typename V::T* y, const typename V::T* x, const Pool2dShape& s, std::int64_t oh) {
  using T = typename V::T;
  using R = typename V::reg;
  std::int64_t h0, h1, ow_a, ow_b;
  window_rows(s, oh, h0, h1);
  simd_columns(s, V::W, ow_a, ow_b);
  std::int64_t ow = 0;
  for (; ow < ow_a; ++ow) y[ow] = avg_one<T, kModes>(x, s, oh, h0, h1, ow);
  // Every window of [ow_a, ow_b) is whole horizontally: one divisor for the block.
  const R div = V::set1(T(ow_a < ow_b ? avg_divisor<kModes>(s, oh, ow_a) : 1));
  ow = for_blocks(ow, ow_b, V::W, [&](std::int64_t o) {
    const std::int64_t iw0 = o * s.sw - s.pw;
    R acc = V::zero();
    for (std::int64_t ih = h0; ih < h1; ++ih) {
      const T* row = x + ih * s.w + iw0;
      for (std::int64_t c = 0; c < s.kw; ++c) acc = V::add(acc, load_cols<V, kStride>(row + c, s.sw));
    }
    V::store(y + o, V::div(acc, div));
  });
  for (; ow < s.ow; ++ow) y[ow] = avg_one<T, kModes>(x, s, oh, h0, h1, ow);
}

template <class V, bool kModes>
void avg_rows(typename V::T* y, const typename V::T* x, const Pool2dShape& s, std::int64_t oh0,
              std::int64_t oh1) {
  for (std::int64_t oh = oh0; oh < oh1; ++oh) {
    typename V::T* yr = y + oh * s.ow;
    if (s.sw == 1)
      avg_row<V, 1, kModes>(yr, x, s, oh);
    else if (s.sw == 2)
      avg_row<V, 2, kModes>(yr, x, s, oh);
    else
      avg_row<V, 0, kModes>(yr, x, s, oh);
  }
}

// ---- row steps and the backward scatter -----------------------------------------------------

template <class V>
void pool_row_put(typename V::T* dst, const typename V::T* src, std::int64_t n, bool add) {
  std::int64_t i = 0;
  if (add) {
    for (; i + V::W <= n; i += V::W) V::store(dst + i, V::add(V::load(dst + i), V::load(src + i)));
    if (i < n) {
      const int r = int(n - i);
      V::storen(dst + i, V::add(V::loadn(dst + i, r), V::loadn(src + i, r)), r);
    }
  } else {
    std::memcpy(static_cast<void*>(dst), src, std::size_t(n) * sizeof(typename V::T));
  }
}

template <class V>
void pool_row_acc(typename V::T* dst, const typename V::T* src, std::int64_t n) {
  pool_row_put<V>(dst, src, n, true);
}

// Rows [from, to) of a plane set to zero.
template <typename T>
inline void zero_rows(T* d, std::int64_t w, std::int64_t from, std::int64_t to) {
  if (to > from) std::memset(static_cast<void*>(d + from * w), 0, std::size_t((to - from) * w) * sizeof(T));
}

// dx of one plane: for each output row, the gradient one input row of its window receives
// (each output's dy / divisor spread over its columns), put into every row of the window --
// stored into rows no earlier window reached, added to the others.
template <class V, bool kModes>
void avg_plane_backward(typename V::T* dx, const typename V::T* dy, const Pool2dShape& s,
                        typename V::T* scratch) {
  using T = typename V::T;
  T* row = scratch;  // s.w
  std::int64_t done = 0;
  // The common 2x2 / stride 2 case, where every window is whole horizontally (not so when ceil
  // mode adds a last window over an odd width's last column).
  const bool pairs = s.kw == 2 && s.sw == 2 && s.pw == 0 && 2 * s.ow <= s.w;
  for (std::int64_t oh = 0; oh < s.oh; ++oh) {
    std::int64_t h0, h1;
    window_rows(s, oh, h0, h1);
    const T* g = dy + oh * s.ow;
    std::int64_t ow = 0;
    if (pairs) {
      // Each input column belongs to exactly one window: row = dy / div, each value twice.
      const auto div = V::set1(T(avg_divisor<kModes>(s, oh, 0)));
      for (; ow + V::W <= s.ow; ow += V::W) {
        typename V::reg lo, hi;
        PoolOps<V>::dup2(V::div(V::load(g + ow), div), lo, hi);
        V::store(row + 2 * ow, lo);
        V::store(row + 2 * ow + V::W, hi);
      }
      for (; ow < s.ow; ++ow) row[2 * ow] = row[2 * ow + 1] = g[ow] / T(avg_divisor<kModes>(s, oh, ow));
      for (std::int64_t iw = 2 * s.ow; iw < s.w; ++iw) row[iw] = T(0);
    } else {
      std::fill(row, row + s.w, T(0));
      for (; ow < s.ow; ++ow) {
        const T share = g[ow] / T(avg_divisor<kModes>(s, oh, ow));
        const std::int64_t w0 = std::max<std::int64_t>(ow * s.sw - s.pw, 0);
        const std::int64_t w1 = std::min(ow * s.sw - s.pw + s.kw, s.w);
        for (std::int64_t iw = w0; iw < w1; ++iw) row[iw] += share;
      }
    }
    zero_rows(dx, s.w, done, h0);
    for (std::int64_t ih = h0; ih < h1; ++ih) pool_row_put<V>(dx + ih * s.w, row, s.w, ih < done);
    done = std::max(done, h1);
  }
  zero_rows(dx, s.w, done, s.h);
}

template <class V>
void pool_row_stream(typename V::T* dst, const typename V::T* src, std::int64_t n) {
  stream_row<V>(dst, src, n);
}

template <class V>
constexpr PoolTable<typename V::T> make_pool_table() {
  return {&pool_max_rows<V>,            &pool_max_rows_dilated<V>,     &avg_rows<V, false>,
          &avg_rows<V, true>,           &avg_plane_backward<V, false>, &avg_plane_backward<V, true>,
          &pool_row_put<V>,             &pool_row_acc<V>,              &pool_row_stream<V>};
}

}  // namespace
}  // namespace fastdl
