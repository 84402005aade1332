// pool.cpp: 2-D max, average and adaptive-average pooling of NCHW planes, forward and backward.
//
// Shapes: x, dx (planes = N*C, H, W); y, dy, argmax (planes, OH, OW), contiguous. The caller
// (bindings/args.cpp) sizes OH by PyTorch's rule, E = dh (kh - 1) + 1 the dilated extent:
//   floor mode  OH = (H + 2 ph - E) / sh + 1
//   ceil mode   OH = ceil((H + 2 ph - E) / sh) + 1, less one if the last window would start at or
//               past H + ph (every window starts inside the image or the left padding)
// likewise OW, with ph <= kh / 2 and pw <= kw / 2 (PyTorch's rule), and checks that every window
// holds at least one cell of the image (dilation can space a window's cells around the image).
//   max      window cells ih = oh sh - ph + r dh (r < kh), likewise iw; y = max over those
//            inside the image (padding -inf); argmax = ih * W + iw of the FIRST maximum in
//            row-major window order; a NaN counts as larger than anything (the last NaN of the
//            window wins, as PyTorch's CPU kernel: `val > max || isnan(val)`).
//            dx = 0, then dx[argmax] += dy (overlapping windows accumulate).
//   avg      y = sum over the window's image cells / divisor, the divisor (PoolDivisor) being
//            PyTorch's: the cells of the window inside the padded extent [-p, H + p), before
//            clipping to the image (count_include_pad=True: kh * kw in floor mode, fewer where
//            ceil mode runs a window past the padding), or its cells inside the image
//            (count_include_pad=False), or divisor_override for every window.
//            dx[cell] = sum over the windows holding it of dy / divisor.
//   adaptive window of output i along an axis of n inputs and m outputs:
//            [floor(i n / m), ceil((i + 1) n / m)), as PyTorch; y = mean over it,
//            dx[cell] = sum over the windows holding it of dy / window size.
// Gradients are written (=), never accumulated into the caller's array.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops over every window cell; the oracle for tests.
//   2. the per-plane kernels of pool_simd.h over a one-lane vector (generic ISA),
//   3. ... over AVX2 and AVX-512 vectors (pool_avx2.cpp, pool_avx512.cpp): forward vectorised
//      over ow (stride 1 loads, stride 2 loads + deinterleave, gathers otherwise), the border
//      windows that padding clips done one at a time (the row's last vector block moved back
//      to end at its last output rather than leaving a scalar tail); backward as row scatters
//      within a cache-resident plane, which large gradients (kStreamBytes) build in a buffer
//      and write out with non-temporal stores (vec_stream.h). Forward rows narrower than an
//      AVX-512 vector run the AVX2 kernels; rows narrower than that go one output at a time
//      (branch-free selects in max_one).
//   The PyTorch options run these same kernels: ceil mode only changes OH / OW (the windows it
//   runs past the image are clipped ones, done one at a time); the divisor mode is one more
//   case of avg_divisor (a vector block's windows lie whole in the image, so one divisor per
//   block still holds); max-pool dilation is a template flag of the max kernels (loads dw
//   apart, rows dh apart), so that dilation 1 compiles to the code it always was.
// OpenMP splits planes (and output rows of the forward passes when there are fewer planes than
// threads); every output is computed by the same code whatever the split, so results do not
// depend on the thread count.
#include "cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/threading.h"
#include "cpu/pool_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

namespace {
// Adaptive window [start, end) of output i along an axis of n inputs and m outputs.
inline std::int64_t adaptive_start(std::int64_t i, std::int64_t n, std::int64_t m) {
  return i * n / m;
}
inline std::int64_t adaptive_end(std::int64_t i, std::int64_t n, std::int64_t m) {
  return ((i + 1) * n + m - 1) / m;
}
}  // namespace

template <typename T>
void max_pool2d_forward_reference(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s) {
  for (std::int64_t p = 0; p < s.planes; ++p) {
    const T* xp = x + p * s.h * s.w;
    for (std::int64_t oh = 0; oh < s.oh; ++oh) {
      for (std::int64_t ow = 0; ow < s.ow; ++ow) {
        T m = -std::numeric_limits<T>::infinity();
        std::int64_t at = -1;  // becomes the first image cell: the argmax of a window of -inf
        for (std::int64_t r = 0; r < s.kh; ++r) {
          const std::int64_t ih = oh * s.sh - s.ph + r * s.dh;
          if (ih < 0 || ih >= s.h) continue;
          for (std::int64_t c = 0; c < s.kw; ++c) {
            const std::int64_t iw = ow * s.sw - s.pw + c * s.dw;
            if (iw < 0 || iw >= s.w) continue;
            const T v = xp[ih * s.w + iw];
            if (at < 0) at = ih * s.w + iw;
            if (v > m || std::isnan(v)) {
              m = v;
              at = ih * s.w + iw;
            }
          }
        }
        const std::int64_t o = (p * s.oh + oh) * s.ow + ow;
        y[o] = m;
        argmax[o] = at;
      }
    }
  }
}

template <typename T>
std::int64_t max_pool2d_backward_reference(T* dx, const T* dy, const std::int64_t* argmax,
                                           const Pool2dShape& s) {
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  std::int64_t bad = -1;
  std::fill(dx, dx + s.planes * hw, T(0));
  for (std::int64_t p = 0; p < s.planes; ++p) {
    for (std::int64_t o = 0; o < ohw; ++o) {
      const std::int64_t a = argmax[p * ohw + o];
      if (a < 0 || a >= hw) {
        if (bad < 0) bad = p * ohw + o;
        continue;
      }
      dx[p * hw + a] += dy[p * ohw + o];
    }
  }
  return bad;
}

namespace {
// PyTorch's avg_pool2d divisor of the window whose padded cells are [hs, hs + kh) x [ws, ws + kw).
std::int64_t reference_divisor(const Pool2dShape& s, std::int64_t hs, std::int64_t ws) {
  const std::int64_t he = std::min(hs + s.kh, s.h + s.ph), we = std::min(ws + s.kw, s.w + s.pw);
  switch (s.divisor_mode) {
    case PoolDivisor::fixed:
      return s.divisor;
    case PoolDivisor::real:
      return (std::min(he, s.h) - std::max<std::int64_t>(hs, 0)) *
             (std::min(we, s.w) - std::max<std::int64_t>(ws, 0));
    case PoolDivisor::padded:
      break;
  }
  return (he - hs) * (we - ws);
}
}  // namespace

template <typename T>
void avg_pool2d_forward_reference(T* y, const T* x, const Pool2dShape& s) {
  for (std::int64_t p = 0; p < s.planes; ++p) {
    const T* xp = x + p * s.h * s.w;
    for (std::int64_t oh = 0; oh < s.oh; ++oh) {
      for (std::int64_t ow = 0; ow < s.ow; ++ow) {
        const std::int64_t hs = oh * s.sh - s.ph, ws = ow * s.sw - s.pw;
        double sum = 0;
        for (std::int64_t ih = std::max<std::int64_t>(hs, 0); ih < std::min(hs + s.kh, s.h); ++ih)
          for (std::int64_t iw = std::max<std::int64_t>(ws, 0); iw < std::min(ws + s.kw, s.w); ++iw)
            sum += double(xp[ih * s.w + iw]);
        y[(p * s.oh + oh) * s.ow + ow] = T(sum / double(reference_divisor(s, hs, ws)));
      }
    }
  }
}

template <typename T>
void avg_pool2d_backward_reference(T* dx, const T* dy, const Pool2dShape& s) {
  std::fill(dx, dx + s.planes * s.h * s.w, T(0));
  for (std::int64_t p = 0; p < s.planes; ++p) {
    T* dxp = dx + p * s.h * s.w;
    for (std::int64_t oh = 0; oh < s.oh; ++oh) {
      for (std::int64_t ow = 0; ow < s.ow; ++ow) {
        const std::int64_t hs = oh * s.sh - s.ph, ws = ow * s.sw - s.pw;
        const T g = dy[(p * s.oh + oh) * s.ow + ow] / T(reference_divisor(s, hs, ws));
        for (std::int64_t ih = std::max<std::int64_t>(hs, 0); ih < std::min(hs + s.kh, s.h); ++ih)
          for (std::int64_t iw = std::max<std::int64_t>(ws, 0); iw < std::min(ws + s.kw, s.w); ++iw)
            dxp[ih * s.w + iw] += g;
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_forward_reference(T* y, const T* x, const Pool2dShape& s) {
  for (std::int64_t p = 0; p < s.planes; ++p) {
    const T* xp = x + p * s.h * s.w;
    for (std::int64_t oh = 0; oh < s.oh; ++oh) {
      const std::int64_t h0 = adaptive_start(oh, s.h, s.oh), h1 = adaptive_end(oh, s.h, s.oh);
      for (std::int64_t ow = 0; ow < s.ow; ++ow) {
        const std::int64_t w0 = adaptive_start(ow, s.w, s.ow), w1 = adaptive_end(ow, s.w, s.ow);
        double sum = 0;
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = w0; iw < w1; ++iw) sum += double(xp[ih * s.w + iw]);
        y[(p * s.oh + oh) * s.ow + ow] = T(sum / double((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_backward_reference(T* dx, const T* dy, const Pool2dShape& s) {
  std::fill(dx, dx + s.planes * s.h * s.w, T(0));
  for (std::int64_t p = 0; p < s.planes; ++p) {
    T* dxp = dx + p * s.h * s.w;
    for (std::int64_t oh = 0; oh < s.oh; ++oh) {
      const std::int64_t h0 = adaptive_start(oh, s.h, s.oh), h1 = adaptive_end(oh, s.h, s.oh);
      for (std::int64_t ow = 0; ow < s.ow; ++ow) {
        const std::int64_t w0 = adaptive_start(ow, s.w, s.ow), w1 = adaptive_end(ow, s.w, s.ow);
        const T g = dy[(p * s.oh + oh) * s.ow + ow] / T((h1 - h0) * (w1 - w0));
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = w0; iw < w1; ++iw) dxp[ih * s.w + iw] += g;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fast kernels: the generic table here, the SIMD tables in pool_avx2/avx512.cpp
// ---------------------------------------------------------------------------------------------

namespace {
template <typename Tp>
struct PoolOps<VecScalar<Tp>> {
  static Tp even2(const Tp* p) { return *p; }
  static Tp gather(const Tp* p, std::int64_t) { return *p; }
  static void dup2(Tp v, Tp& lo, Tp& hi) { lo = hi = v; }
  static void store_index(std::int64_t* d, std::int64_t b, std::int64_t, Tp off) {
    *d = b + std::int64_t(off);
  }
};

const PoolTable<float> pool_table_generic_f32 = make_pool_table<VecScalar<float>>();
const PoolTable<double> pool_table_generic_f64 = make_pool_table<VecScalar<double>>();

// Elements (input + output) per thread below which a second thread costs more than it gives.
constexpr std::int64_t kGrain = 1 << 15;
// Input gradients of at least kStreamBytes are built a plane at a time in a cache-resident
// buffer (planes up to kScratchBytes) and written out with non-temporal stores: each byte of dx
// then costs one write to memory instead of a read for ownership and a write (vec_stream.h).
constexpr std::int64_t kStreamBytes = std::int64_t(16) << 20;
constexpr std::int64_t kScratchBytes = std::int64_t(1) << 20;

template <typename T>
bool stream_planes(const Pool2dShape& s) {
  const std::int64_t plane = s.h * s.w * std::int64_t(sizeof(T));
  return s.planes * plane >= kStreamBytes && plane <= kScratchBytes;
}

int pool_threads(std::int64_t elems, std::int64_t items) {
  return int(std::min<std::int64_t>(
      {get_num_threads(), std::max<std::int64_t>(items, 1), std::max<std::int64_t>(1, elems / kGrain)}));
}

// Runs f(plane, oh0, oh1) over every plane, cutting the output rows into blocks when there are
// too few planes to keep every thread busy (forward passes only: output rows are independent).
template <class F>
void for_output_rows(const Pool2dShape& s, std::int64_t elems, F f) {
  if (s.planes == 0 || s.oh == 0) return;
  const int threads = pool_threads(elems, s.planes * s.oh);
  std::int64_t per_plane = 1;
  if (s.planes < 4 * threads) per_plane = std::min<std::int64_t>(s.oh, (4 * threads + s.planes - 1) / s.planes);
  const std::int64_t rows = (s.oh + per_plane - 1) / std::max<std::int64_t>(per_plane, 1);
  const std::int64_t items = s.planes * per_plane;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t p = it / per_plane, b = it % per_plane;
    const std::int64_t oh0 = std::min(s.oh, b * rows), oh1 = std::min(s.oh, oh0 + rows);
    if (oh0 < oh1) f(p, oh0, oh1);
  }
}

template <class F>
void for_planes(const Pool2dShape& s, std::int64_t elems, F f) {
  const int threads = pool_threads(elems, s.planes);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t p = 0; p < s.planes; ++p) f(p);
}

std::int64_t elems_of(const Pool2dShape& s) { return s.planes * (s.h * s.w + s.oh * s.ow); }

// The forward kernels vectorise over ow and leave rows narrower than a vector to the
// one-output path (~13 ns an output against ~3 vectorised): an AVX-512 float row needs ow >= 16,
// so 28 -> 14 pooling ran entirely scalar. Rows narrower than an AVX-512 vector take the AVX2
// kernels (8 float / 4 double lanes), which compute the same values in the same cell order.
Isa forward_isa(Isa isa, const Pool2dShape& s, std::int64_t lanes512) {
  return isa == Isa::avx512 && s.ow < lanes512 ? Isa::avx2 : isa;
}
}  // namespace

template <>
const PoolTable<float>& pool_table<float>(Isa isa) {
  return pick_isa(isa, pool_table_generic_f32, pool_table_avx2_f32, pool_table_avx512_f32);
}
template <>
const PoolTable<double>& pool_table<double>(Isa isa) {
  return pick_isa(isa, pool_table_generic_f64, pool_table_avx2_f64, pool_table_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

template <typename T>
void max_pool2d_forward(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(forward_isa(isa, s, 64 / std::int64_t(sizeof(T))));
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  const auto rows = s.dh == 1 && s.dw == 1 ? t.max_rows : t.max_rows_dilated;
  for_output_rows(s, elems_of(s), [&](std::int64_t p, std::int64_t oh0, std::int64_t oh1) {
    rows(y + p * ohw, argmax + p * ohw, x + p * hw, s, oh0, oh1);
  });
}

template <typename T>
std::int64_t max_pool2d_backward(T* dx, const T* dy, const std::int64_t* argmax,
                                 const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(isa);
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  const bool stream = stream_planes<T>(s);
  std::vector<std::int64_t> bad(std::size_t(std::max<std::int64_t>(s.planes, 0)), -1);
  const int threads = pool_threads(elems_of(s), s.planes);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> scratch(stream ? std::size_t(hw) : 0);
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < s.planes; ++p) {
      // Zero and scatter one plane at a time, so the scatter hits a plane still in cache.
      T* d = stream ? scratch.data() : dx + p * hw;
      const T* g = dy + p * ohw;
      const std::int64_t* a = argmax + p * ohw;
      std::memset(static_cast<void*>(d), 0, std::size_t(hw) * sizeof(T));
      for (std::int64_t o = 0; o < ohw; ++o) {
        // One unsigned compare catches negative and too-large indices alike.
        if (static_cast<std::uint64_t>(a[o]) >= static_cast<std::uint64_t>(hw)) {
          if (bad[std::size_t(p)] < 0) bad[std::size_t(p)] = p * ohw + o;
          continue;
        }
        d[a[o]] += g[o];
      }
      if (stream) t.row_stream(dx + p * hw, d, hw);
    }
  }
  for (std::int64_t b : bad)
    if (b >= 0) return b;
  return -1;
}

template <typename T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(forward_isa(isa, s, 64 / std::int64_t(sizeof(T))));
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  const auto rows = s.divisor_mode == PoolDivisor::padded ? t.avg_rows : t.avg_rows_modes;
  for_output_rows(s, elems_of(s), [&](std::int64_t p, std::int64_t oh0, std::int64_t oh1) {
    rows(y + p * ohw, x + p * hw, s, oh0, oh1);
  });
}

template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(isa);
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  const bool stream = stream_planes<T>(s);
  const int threads = pool_threads(elems_of(s), s.planes);
  const auto plane_backward =
      s.divisor_mode == PoolDivisor::padded ? t.avg_plane_backward : t.avg_plane_backward_modes;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> scratch(std::size_t(s.w + s.ow));  // one expanded row + one scaled dy row
    std::vector<T> plane(stream ? std::size_t(hw) : 0);
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < s.planes; ++p) {
      plane_backward(stream ? plane.data() : dx + p * hw, dy + p * ohw, s, scratch.data());
      if (stream) t.row_stream(dx + p * hw, plane.data(), hw);
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(isa);
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  const int threads = pool_threads(elems_of(s), s.planes * s.oh);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> colsum(std::size_t(s.w));
#pragma omp for schedule(static) collapse(2)
    for (std::int64_t p = 0; p < s.planes; ++p) {
      for (std::int64_t oh = 0; oh < s.oh; ++oh) {
        const T* xp = x + p * hw;
        const std::int64_t h0 = adaptive_start(oh, s.h, s.oh), h1 = adaptive_end(oh, s.h, s.oh);
        // Column sums of the window's rows (vectorised), then each output's run of columns.
        t.row_put(colsum.data(), xp + h0 * s.w, s.w, false);
        for (std::int64_t ih = h0 + 1; ih < h1; ++ih) t.row_acc(colsum.data(), xp + ih * s.w, s.w);
        T* yr = y + p * ohw + oh * s.ow;
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          const std::int64_t w0 = adaptive_start(ow, s.w, s.ow), w1 = adaptive_end(ow, s.w, s.ow);
          T sum = T(0);
          for (std::int64_t iw = w0; iw < w1; ++iw) sum += colsum[std::size_t(iw)];
          yr[ow] = sum / T((h1 - h0) * (w1 - w0));
        }
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, Isa isa) {
  const PoolTable<T>& t = pool_table<T>(isa);
  const std::int64_t hw = s.h * s.w, ohw = s.oh * s.ow;
  if (s.oh == 0 || s.ow == 0) {  // no window: no gradient
    std::fill(dx, dx + s.planes * hw, T(0));
    return;
  }
  const bool stream = stream_planes<T>(s);
  const int threads = pool_threads(elems_of(s), s.planes);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> row(std::size_t(s.w));
    std::vector<T> plane(stream ? std::size_t(hw) : 0);
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < s.planes; ++p) {
      T* d = stream ? plane.data() : dx + p * hw;
      std::int64_t done = 0;  // rows [0, done) of the plane are written
      for (std::int64_t oh = 0; oh < s.oh; ++oh) {
        const std::int64_t h0 = adaptive_start(oh, s.h, s.oh), h1 = adaptive_end(oh, s.h, s.oh);
        // The gradient one input row of this window receives: each output's share over its run.
        std::fill(row.begin(), row.end(), T(0));
        const T* g = dy + p * ohw + oh * s.ow;
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          const std::int64_t w0 = adaptive_start(ow, s.w, s.ow), w1 = adaptive_end(ow, s.w, s.ow);
          const T share = g[ow] / T((h1 - h0) * (w1 - w0));
          for (std::int64_t iw = w0; iw < w1; ++iw) row[std::size_t(iw)] += share;
        }
        for (std::int64_t ih = h0; ih < h1; ++ih) t.row_put(d + ih * s.w, row.data(), s.w, ih < done);
        done = std::max(done, h1);
      }
      if (stream) t.row_stream(dx + p * hw, d, hw);
    }
  }
}

#define FASTDL_INSTANTIATE(T)                                                                    \
  template void max_pool2d_forward<T>(T*, std::int64_t*, const T*, const Pool2dShape&, Isa);     \
  template std::int64_t max_pool2d_backward<T>(T*, const T*, const std::int64_t*,                \
                                               const Pool2dShape&, Isa);                         \
  template void avg_pool2d_forward<T>(T*, const T*, const Pool2dShape&, Isa);                    \
  template void avg_pool2d_backward<T>(T*, const T*, const Pool2dShape&, Isa);                   \
  template void adaptive_avg_pool2d_forward<T>(T*, const T*, const Pool2dShape&, Isa);           \
  template void adaptive_avg_pool2d_backward<T>(T*, const T*, const Pool2dShape&, Isa);          \
  template void max_pool2d_forward_reference<T>(T*, std::int64_t*, const T*, const Pool2dShape&); \
  template std::int64_t max_pool2d_backward_reference<T>(T*, const T*, const std::int64_t*,      \
                                                         const Pool2dShape&);                    \
  template void avg_pool2d_forward_reference<T>(T*, const T*, const Pool2dShape&);               \
  template void avg_pool2d_backward_reference<T>(T*, const T*, const Pool2dShape&);              \
  template void adaptive_avg_pool2d_forward_reference<T>(T*, const T*, const Pool2dShape&);      \
  template void adaptive_avg_pool2d_backward_reference<T>(T*, const T*, const Pool2dShape&);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
