// conv.cpp: 2-D convolution with stride, padding, dilation and groups: forward, backward-data,
// backward-weight.
//
// Shapes: x (N, C, H, W), w (K, C/G, R, S), b (K,), y (N, K, OH, OW), C-contiguous; G groups,
// filter k sees input channels [g*C/G, (g+1)*C/G) with g = k / (K/G); P = OH*OW.
//   forward          y[n,k,oh,ow] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n,gC/G+c, oh*sh-ph+r*dh, ow*sw-pw+s*dw]
//   backward-data    dx = the adjoint of x -> y (every element written, zeros where no window
//                    reaches; dx's H, W may exceed the smallest input giving OH, OW)
//   backward-weight  dw[k,c,r,s] = sum_{n,oh,ow} dy[n,k,oh,ow] x[n, gC/G+c, ...];  db[k] = sum dy[n,k]
// Gradients are written (=), never accumulated. Padding may be negative internally (the flipped
// backward-data form); out-of-range taps read 0. Zero channels (C = 0 or K = 0) are answered
// before any kernel, as PyTorch does: y = b (or 0), dx = 0, dw empty, db = dy summed. An axis
// with a single output takes stride 1 (exact) so no workspace grows with a huge stride.
//
// Variants, in order of increasing complexity (ConvAlgo; conv_choose picks one per pass):
//   1. reference: plain loops; the oracle for tests and the fallback.
//   2. gemm1x1: a 1x1, stride-1, unpadded conv is a plain GEMM per image and group on x as it lies.
//   3. implicit_gemm: the packed GEMM (gemm.cpp) with the im2col matrix gathered straight into
//      its packed-B panels by a packing hook (gemm_packed_b); backward-weight gathers im2col^T
//      the same way; backward-data is the forward on dy with flipped filters (stride 1) or a GEMM
//      into bounded column chunks scattered back by col2im (stride > 1).
//   4. direct: depthwise and other layers whose GEMM form has fewer than 8 rows; each input
//      plane is laid out once (padded, split into stride phases) and every tap is a contiguous
//      vector run (conv_simd.h, instantiated per ISA in conv_avx2.cpp / conv_avx512.cpp).
//   5. winograd: F(4x4, 3x3) for 3x3, stride 1, dilation 1 (any padding, any groups), every
//      pass: filter, input and output transforms around 36 GEMMs per L2-sized block of tiles,
//      the transforms vectorised across tiles (conv_winograd_simd.h); backward-data is the
//      forward in the flipped form, backward-weight the transforms' adjoint.
// Threads: whole rounds of images over the threads (weight gradients summed per thread, then in
// thread order), the remaining images (fewer than the threads) with each GEMM split across all
// of them; the direct kernels split images x groups (forward,
// backward-data) or filter ranges (backward-weight). Results are bitwise repeatable at a fixed
// thread count.
//
// Workspace, all thread-local, grown on first use and kept (common/memory.h ScratchBuffer), so
// steady-state calls take no page faults. Per thread: the GEMM's own packing buffers; for
// backward-weight's im2col^T one NR x (KC + KC/8) block; for images smaller than 256 pixels
// batched into one product, K/G x (256 + P) elements; for col2im at most
// max(2^18, 64*C/G*R*S) column elements; for the direct kernels one laid-out plane (about
// (OH*sh + dh*(R-1) + 1) x (OW*sw rounded up to 4 vectors + dw*(S-1)) elements); for winograd one
// block of NB tiles, (36 (C/G + K/G + 1) + 16) x NB elements (NB chosen so that this is about
// half of gemm_config's L2, at least one GEMM panel of NR tiles). Per call (the calling thread):
// (threads - 1) x K*C/G*R*S partial weight gradients, K*C/G*R*S flipped filters for
// backward-data, winograd's 36 x K*C/G (+ 32 per group) transformed filters, and for its
// backward-weight threads x 36 x (K*C/G + 32 G) partial sums (auto takes it only while
// K/G*C/G <= 2^16: 9.4 MB a thread in float32).
#include "cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "common/check.h"
#include "common/memory.h"
#include "common/threading.h"
#include "cpu/gemm.h"
#include "cpu/gemm_config.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/conv_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

const char* conv_algo_name(ConvAlgo a) {
  switch (a) {
    case ConvAlgo::automatic: return "auto";
    case ConvAlgo::reference: return "reference";
    case ConvAlgo::gemm1x1: return "gemm1x1";
    case ConvAlgo::implicit_gemm: return "implicit_gemm";
    case ConvAlgo::direct: return "direct";
    case ConvAlgo::winograd: return "winograd";
  }
  return "?";
}

ConvAlgo conv_algo_from_name(const std::string& name) {
  for (ConvAlgo a : {ConvAlgo::automatic, ConvAlgo::reference, ConvAlgo::gemm1x1,
                     ConvAlgo::implicit_gemm, ConvAlgo::direct, ConvAlgo::winograd})
    if (name == conv_algo_name(a)) return a;
  throw ValueError(
      "variant: expected one of auto, reference, gemm1x1, implicit_gemm, direct, winograd, got '" +
      name + "'");
}

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
static void conv2d_forward_reference(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t k = 0; k < s.k; ++k) {
      const T* xg = x + (n * s.c + k / kg * cg) * s.h * s.w;
      const T* wk = w + k * cg * s.r * s.s;
      T* yk = y + (n * s.k + k) * s.oh * s.ow;
      for (std::int64_t oh = 0; oh < s.oh; ++oh)
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          T acc = b ? b[k] : T(0);
          for (std::int64_t c = 0; c < cg; ++c)
            for (std::int64_t r = 0; r < s.r; ++r) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t q = 0; q < s.s; ++q) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                acc += wk[(c * s.r + r) * s.s + q] * xg[(c * s.h + ih) * s.w + iw];
              }
            }
          yk[oh * s.ow + ow] = acc;
        }
    }
}

template <typename T>
static void conv2d_backward_data_reference(T* dx, const T* dy, const T* w, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  std::fill(dx, dx + s.n * s.c * s.h * s.w, T(0));
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t k = 0; k < s.k; ++k) {
      T* dxg = dx + (n * s.c + k / kg * cg) * s.h * s.w;
      const T* wk = w + k * cg * s.r * s.s;
      const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
      for (std::int64_t oh = 0; oh < s.oh; ++oh)
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          const T g = dyk[oh * s.ow + ow];
          for (std::int64_t c = 0; c < cg; ++c)
            for (std::int64_t r = 0; r < s.r; ++r) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t q = 0; q < s.s; ++q) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                dxg[(c * s.h + ih) * s.w + iw] += g * wk[(c * s.r + r) * s.s + q];
              }
            }
        }
    }
}

template <typename T>
static void conv2d_backward_weight_reference(T* dw, T* db, const T* dy, const T* x,
                                             const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  for (std::int64_t k = 0; k < s.k; ++k) {
    T* dwk = dw + k * cg * s.r * s.s;
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t r = 0; r < s.r; ++r)
        for (std::int64_t q = 0; q < s.s; ++q) {
          T acc = T(0);
          for (std::int64_t n = 0; n < s.n; ++n) {
            const T* xc = x + (n * s.c + k / kg * cg + c) * s.h * s.w;
            const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
            for (std::int64_t oh = 0; oh < s.oh; ++oh) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t ow = 0; ow < s.ow; ++ow) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                acc += dyk[oh * s.ow + ow] * xc[ih * s.w + iw];
              }
            }
          }
          dwk[(c * s.r + r) * s.s + q] = acc;
        }
    if (db) {
      T acc = T(0);
      for (std::int64_t n = 0; n < s.n; ++n) {
        const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
        for (std::int64_t i = 0; i < s.oh * s.ow; ++i) acc += dyk[i];
      }
      db[k] = acc;
    }
  }
}

// The conv family's ISA table (conv_simd.h: the direct kernels and the strided im2col gather).
template <>
const ConvDirectTable<float>& conv_direct_table<float>(Isa isa) {
  static const ConvDirectTable<float> generic = make_conv_direct_table<VecScalar<float>>();
  return pick_isa(isa, generic, conv_direct_avx2_f32, conv_direct_avx512_f32);
}
template <>
const ConvDirectTable<double>& conv_direct_table<double>(Isa isa) {
  static const ConvDirectTable<double> generic = make_conv_direct_table<VecScalar<double>>();
  return pick_isa(isa, generic, conv_direct_avx2_f64, conv_direct_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Implicit GEMM on the packed GEMM (gemm.h: gemm_packed_b)
// ---------------------------------------------------------------------------------------------
//
// Per image n and group g, with P = OH*OW pixels and CRS = C/G*R*S:
//   forward          Y_g (K/G x P)   = W_g (K/G x CRS) * im2col(x_g) (CRS x P)     + b (fused)
//   backward-weight  dW_g (K/G x CRS) += dY_g (K/G x P) * im2col(x_g)^T (P x CRS)  (images in order)
// The im2col matrix is never formed: its KC x NC blocks are gathered straight into the GEMM's
// packed-B panels where the loop nest packs B (pack_im2col, pack_im2col_t), so the blocking,
// threading and micro-kernels are the GEMM's own.

// One output row's run of pixels within a packed panel: columns [off, off + len) of the panel are
// output pixels (oh, ow .. ow + len) of image img (counted from the product's first image),
// whose windows start at input row ih0 = oh*sh - ph and column iw0 = ow*sw - pw.
struct PixelRun {
  std::int64_t off, len, ih0, iw0, img;
};

// The runs covering columns p0 .. p0 + count of a product over consecutive images (column
// n*P + pixel); returns how many (at most count / OW + 2: an image ends where a row does).
static int pixel_runs(PixelRun* runs, std::int64_t p0, std::int64_t count, const ConvShape& s) {
  const std::int64_t pixels = s.oh * s.ow;
  std::int64_t img = p0 / pixels, oh = p0 % pixels / s.ow, ow = p0 % s.ow, off = 0;
  int n = 0;
  while (off < count) {
    const std::int64_t len = std::min(count - off, s.ow - ow);
    runs[n++] = {off, len, oh * s.stride_h - s.pad_h, ow * s.stride_w - s.pad_w, img};
    off += len, ow = 0;
    if (++oh == s.oh) oh = 0, ++img;
  }
  return n;
}

// dst[run] = x_c[ih0 + r*dh][iw0 + q*dw + j*sw] for j in [0, len), zero outside the input (the
// padding): the im2col row (c, r, q) over one run of pixels. Division-free: it runs once per
// packed row and run.
template <typename T>
static inline void im2col_run(T* __restrict dst, const T* __restrict xc, const PixelRun& u,
                              std::int64_t r, std::int64_t q, const ConvShape& s,
                              void (*gather)(T*, const T*, std::int64_t, std::int64_t)) {
  T* d = dst + u.off;
  const std::int64_t ih = u.ih0 + r * s.dil_h;
  if (ih < 0 || ih >= s.h) {
    std::fill(d, d + u.len, T(0));
    return;
  }
  const T* xr = xc + u.img * s.c * s.h * s.w + ih * s.w;
  const std::int64_t iw0 = u.iw0 + q * s.dil_w;
  if (s.stride_w == 1) {
    const std::int64_t lo = std::clamp<std::int64_t>(-iw0, 0, u.len);
    const std::int64_t hi = std::clamp<std::int64_t>(s.w - iw0, lo, u.len);
    std::fill(d, d + lo, T(0));
    const T* src = xr + iw0;
    for (std::int64_t j = lo; j < hi; ++j) d[j] = src[j];
    std::fill(d + hi, d + u.len, T(0));
  } else {  // the padding reaches at most a few taps into a run: walk in from both ends
    const std::int64_t sw = s.stride_w;
    std::int64_t lo = 0, hi = u.len;
    while (lo < hi && iw0 + lo * sw < 0) d[lo++] = T(0);
    while (hi > lo && iw0 + (hi - 1) * sw >= s.w) d[--hi] = T(0);
    if (hi > lo) gather(d + lo, xr + iw0 + lo * sw, hi - lo, sw);
  }
}

constexpr int kMaxPanel = 64;  // the widest packed panel (NR) of any GEMM table

template <typename T>
struct Im2col {
  const T* x;  // the group's first input plane of the product's first image
  const ConvShape* s;
  pack_fn<T> pack_b;  // the GEMM's own packer (pack_im2col_t transposes through it)
  void (*gather)(T*, const T*, std::int64_t, std::int64_t);  // strided runs (conv_simd.h)
};

// Forward B (CRS x P): row p = (c, r, q), column j = pixel.
template <typename T>
static bool pack_im2col(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc,
                        std::int64_t j0, std::int64_t nc, int nr) {
  const Im2col<T>& g = *static_cast<const Im2col<T>*>(ctx);
  const ConvShape& s = *g.s;
  const std::int64_t rs = s.r * s.s, hw = s.h * s.w;
  PixelRun runs[kMaxPanel + 2];
  static_assert(gemm_config::Avx512F32::NR <= kMaxPanel, "a panel's runs must fit in runs[]");
  for (std::int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const std::int64_t cols = std::min<std::int64_t>(nr, nc - jp);
    const int nruns = pixel_runs(runs, j0 + jp, cols, s);
    std::int64_t c = k0 / rs, r = k0 % rs / s.s, q = k0 % s.s;
    for (std::int64_t p = 0; p < kc; ++p) {
      T* row = dst + p * nr;
      const T* xc = g.x + c * hw;
      for (int i = 0; i < nruns; ++i) im2col_run(row, xc, runs[i], r, q, s, g.gather);
      std::fill(row + cols, row + nr, T(0));
      if (++q == s.s) q = 0, r = r + 1 == s.r ? (++c, 0) : r + 1;
    }
  }
  return true;
}

// Backward-weight B = im2col^T (P x CRS): row p = pixel, column j = (c, r, q). Each panel's
// im2col rows are gathered contiguously into a scratch block, then transposed into the packed
// format by the GEMM's own (vectorised) packer.
thread_local ScratchBuffer tls_im2col_t, tls_runs;

template <typename T>
static bool pack_im2col_t(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc,
                          std::int64_t j0, std::int64_t nc, int nr) {
  const Im2col<T>& g = *static_cast<const Im2col<T>*>(ctx);
  const ConvShape& s = *g.s;
  const std::int64_t rs = s.r * s.s, hw = s.h * s.w;
  T* rows = static_cast<T*>(tls_im2col_t.get(sizeof(T) * std::size_t(nr * kc)));
  PixelRun* runs = static_cast<PixelRun*>(
      tls_runs.get(sizeof(PixelRun) * std::size_t(kc / std::max<std::int64_t>(s.ow, 1) + 2)));
  if (!rows || !runs) return false;
  const int nruns = pixel_runs(runs, k0, kc, s);  // the same k block for every panel
  for (std::int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const std::int64_t cols = std::min<std::int64_t>(nr, nc - jp);
    for (std::int64_t jj = 0; jj < cols; ++jj) {
      const std::int64_t crs = j0 + jp + jj, r = crs % rs / s.s, q = crs % s.s;
      const T* xc = g.x + crs / rs * hw;
      for (int i = 0; i < nruns; ++i) im2col_run(rows + jj * kc, xc, runs[i], r, q, s, g.gather);
    }
    g.pack_b(dst, rows, kc, 1, cols, kc);
  }
  return true;
}

// ---- Threads: over images, or inside each product --------------------------------------------
//
// Whole rounds of images (one per thread) run in one OpenMP region, each product on one thread
// (a busy core then delays one region, not one per image); the images left over, fewer than the
// threads, run in turn with each product split across the threads by the GEMM. Either way every
// element of a product is computed by the same operations (gemm.cpp).

// Runs body(task) for task in [0, tasks) on `threads` threads (static schedule); rethrows
// std::bad_alloc after the region (an exception must not leave an OpenMP region).
template <class F>
static void parallel_tasks(std::int64_t tasks, int threads, F&& body) {
  std::atomic<bool> ok{true};
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t t = 0; t < tasks; ++t) {
    try {
      body(t);
    } catch (const std::bad_alloc&) {
      ok.store(false);
    }
  }
  if (!ok.load()) throw std::bad_alloc();
}

static int image_threads(std::int64_t images) {
  const int t = get_num_threads();
  return images >= t ? t : 1;
}

// body(n, max_threads) for every image n (max_threads for the GEMM: 1 inside the region, 0 =
// all). Whole rounds of one image per thread run in the region; the remainder (fewer images than
// threads) runs after it, each product split across the threads (3 images on 2 threads would
// otherwise take two images' time), as gemm_batched does.
template <class F>
static void over_images(std::int64_t images, F&& body) {
  const int threads = image_threads(images);
  const std::int64_t rounds = threads > 1 ? images / threads * threads : 0;
  if (rounds > 0) parallel_tasks(rounds, threads, [&](std::int64_t n) { body(n, 1); });
  for (std::int64_t n = rounds; n < images; ++n) body(n, 0);
}

thread_local ScratchBuffer tls_partials;

// dst (elems) = the sum over images of body(n, out, beta, max_threads)'s terms (beta 0: write
// image n's term into out, 1: add it). Over images, each thread sums its own run of whole rounds
// of images (the first thread into dst, the others into partials), added into dst in thread
// order, then the remaining images are added one by one, each product split across the threads:
// bitwise repeatable at a fixed thread count. Workspace: (threads - 1) * elems.
template <typename T, class F>
static void sum_over_images(T* dst, std::int64_t elems, std::int64_t images, F&& body) {
  if (images == 0) {
    std::fill(dst, dst + elems, T(0));
    return;
  }
  const int threads = image_threads(images);
  const std::int64_t rounds = threads > 1 ? images / threads * threads : 0;
  if (rounds > 0) {
    T* part = static_cast<T*>(tls_partials.get(sizeof(T) * std::size_t((threads - 1) * elems)));
    if (!part) throw std::bad_alloc();
    parallel_tasks(threads, threads, [&](std::int64_t t) {
      const std::int64_t n0 = rounds * t / threads, n1 = rounds * (t + 1) / threads;
      T* out = t == 0 ? dst : part + (t - 1) * elems;
      for (std::int64_t n = n0; n < n1; ++n) body(n, out, n > n0 ? T(1) : T(0), 1);
    });
    for (int t = 1; t < threads; ++t) {
      const T* src = part + (t - 1) * elems;
      for (std::int64_t i = 0; i < elems; ++i) dst[i] += src[i];
    }
  }
  for (std::int64_t n = rounds; n < images; ++n) body(n, dst, n > 0 ? T(1) : T(0), 0);
}

// ---- The implicit-GEMM passes ----------------------------------------------------------------
//
// Small images are batched: a product covers `image_chunk` consecutive images (columns
// n*P + pixel), so that it has at least kMinColumns columns; its result goes through a
// thread-local block (K/G x columns, bounded by K/G * (kMinColumns + P)) and is copied into y.
// Measured, one thread: N64 C16 4x4 -> K32 3x3 fwd 0.36 ms one image per product, 0.31 batched,
// PyTorch 0.12 (what remains is packing: im2col runs of 4 pixels).

constexpr std::int64_t kMinColumns = 256;
thread_local ScratchBuffer tls_chunk;

static std::int64_t image_chunk(std::int64_t images, std::int64_t pixels) {
  if (pixels >= kMinColumns || images <= 1) return 1;
  const std::int64_t want = (kMinColumns + pixels - 1) / pixels;
  const std::int64_t per_thread = std::max<std::int64_t>(1, images / get_num_threads());
  return std::clamp<std::int64_t>(std::min(want, per_thread), 1, images);
}

template <typename T>
static void forward_implicit(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                             Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, crs = cg * s.r * s.s;
  const std::int64_t p = s.oh * s.ow;
  const pack_fn<T> pb = gemm_table<T>(isa).pack_b;
  const auto gather = conv_direct_table<T>(isa).gather;
  const std::int64_t nb = image_chunk(s.n, p), chunks = (s.n + nb - 1) / nb;
  over_images(chunks, [&](std::int64_t ci, int mt) {
    const std::int64_t n0 = ci * nb, cnt = std::min(nb, s.n - n0), cols = cnt * p;
    T* tmp = nullptr;
    if (cnt > 1) {
      tmp = static_cast<T*>(tls_chunk.get(sizeof(T) * std::size_t(kg * cols)));
      if (!tmp) throw std::bad_alloc();
    }
    for (std::int64_t g = 0; g < s.groups; ++g) {
      const Im2col<T> ctx{x + (n0 * s.c + g * cg) * s.h * s.w, &s, pb, gather};
      GemmParams<T> gp;
      gp.bias = b ? b + g * kg : nullptr;
      gp.bias_axis = BiasAxis::row;
      T* c = tmp ? tmp : y + (n0 * s.k + g * kg) * p;
      gemm_packed_b(c, tmp ? cols : p, w + g * kg * crs, crs, std::int64_t(1),
                    GemmPackB<T>{&pack_im2col<T>, &ctx}, kg, cols, crs, gp, isa, mt);
      if (tmp)
        for (std::int64_t i = 0; i < cnt; ++i)
          for (std::int64_t kk = 0; kk < kg; ++kk)
            std::copy(tmp + kk * cols + i * p, tmp + kk * cols + (i + 1) * p,
                      y + ((n0 + i) * s.k + g * kg + kk) * p);
    }
  });
}

template <typename T>
static void backward_weight_implicit(T* dw, const T* dy, const T* x, const ConvShape& s, Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, crs = cg * s.r * s.s;
  const std::int64_t p = s.oh * s.ow;
  const pack_fn<T> pb = gemm_table<T>(isa).pack_b;
  const auto gather = conv_direct_table<T>(isa).gather;
  const std::int64_t nb = image_chunk(s.n, p), chunks = (s.n + nb - 1) / nb;
  sum_over_images(dw, s.k * crs, chunks, [&](std::int64_t ci, T* out, T beta, int mt) {
    const std::int64_t n0 = ci * nb, cnt = std::min(nb, s.n - n0), cols = cnt * p;
    T* tmp = nullptr;  // the chunk's dy_g as one (K/G x cnt*P) matrix
    if (cnt > 1) {
      tmp = static_cast<T*>(tls_chunk.get(sizeof(T) * std::size_t(kg * cols)));
      if (!tmp) throw std::bad_alloc();
    }
    for (std::int64_t g = 0; g < s.groups; ++g) {
      const Im2col<T> ctx{x + (n0 * s.c + g * cg) * s.h * s.w, &s, pb, gather};
      if (tmp)
        for (std::int64_t i = 0; i < cnt; ++i)
          for (std::int64_t kk = 0; kk < kg; ++kk) {
            const T* src = dy + ((n0 + i) * s.k + g * kg + kk) * p;
            std::copy(src, src + p, tmp + kk * cols + i * p);
          }
      GemmParams<T> gp;
      gp.beta = beta;
      gemm_packed_b(out + g * kg * crs, crs, tmp ? tmp : dy + (n0 * s.k + g * kg) * p,
                    tmp ? cols : p, std::int64_t(1), GemmPackB<T>{&pack_im2col_t<T>, &ctx}, kg,
                    crs, cols, gp, isa, mt);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// 1x1, stride 1, no padding: each image is a plain GEMM on x as it lies
// ---------------------------------------------------------------------------------------------
//   forward          Y_g (K/G x HW) = W_g (K/G x C/G) * X_g (C/G x HW) + b
//   backward-data    dX_g = W_g^T * dY_g
//   backward-weight  dW_g = sum_n dY_g * X_g^T

static bool is_1x1(const ConvShape& s) {
  return s.r == 1 && s.s == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0 && s.oh == s.h && s.ow == s.w;
}

template <typename T>
static void forward_1x1(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, p = s.h * s.w;
  over_images(s.n, [&](std::int64_t n, int mt) {
    for (std::int64_t g = 0; g < s.groups; ++g) {
      GemmParams<T> gp;
      gp.bias = b ? b + g * kg : nullptr;
      gp.bias_axis = BiasAxis::row;
      gemm(y + (n * s.k + g * kg) * p, p, w + g * kg * cg, cg, std::int64_t(1),
           x + (n * s.c + g * cg) * p, p, std::int64_t(1), kg, p, cg, gp, isa, mt);
    }
  });
}

template <typename T>
static void backward_data_1x1(T* dx, const T* dy, const T* w, const ConvShape& s, Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, p = s.h * s.w;
  over_images(s.n, [&](std::int64_t n, int mt) {
    for (std::int64_t g = 0; g < s.groups; ++g)
      gemm(dx + (n * s.c + g * cg) * p, p, w + g * kg * cg, std::int64_t(1), cg,
           dy + (n * s.k + g * kg) * p, p, std::int64_t(1), cg, p, kg, GemmParams<T>{}, isa, mt);
  });
}

template <typename T>
static void backward_weight_1x1(T* dw, const T* dy, const T* x, const ConvShape& s, Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, p = s.h * s.w;
  sum_over_images(dw, s.k * cg, s.n, [&](std::int64_t n, T* out, T beta, int mt) {
    for (std::int64_t g = 0; g < s.groups; ++g) {
      GemmParams<T> gp;
      gp.beta = beta;
      gemm(out + g * kg * cg, cg, dy + (n * s.k + g * kg) * p, p, std::int64_t(1),
           x + (n * s.c + g * cg) * p, std::int64_t(1), p, kg, cg, p, gp, isa, mt);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backward-data through the GEMM
// ---------------------------------------------------------------------------------------------
//
// Stride 1: dx is the forward convolution of dy with the flipped filters, channels swapped within
// each group (w'[c, k, r, q] = w[k, c, R-1-r, S-1-q]) and padding (R-1)*dil - pad (negative when
// the padding exceeds the dilated kernel: the window then starts inside dy): the implicit GEMM
// above with K*C/G*R*S of reordered weights as its only workspace.
// Stride > 1 (where that form would multiply by the inserted zeros): per image and group,
// cols (CRS x P) = W_g^T * dY_g, in chunks of pixels bounded by kCol2imElems, then col2im adds
// each column back into its window of dx.

thread_local ScratchBuffer tls_flipped, tls_cols;

constexpr std::int64_t kCol2imElems = std::int64_t(1) << 18;  // 1 MiB of fp32 columns

template <typename T>
static void forward_winograd(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Isa isa);

template <typename T>
static void backward_data_flipped(T* dx, const T* dy, const T* w, const ConvShape& s, Isa isa,
                                  bool winograd = false) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, rs = s.r * s.s;
  T* wf = static_cast<T*>(tls_flipped.get(sizeof(T) * std::size_t(s.k * cg * rs)));
  if (!wf) throw std::bad_alloc();
  for (std::int64_t g = 0; g < s.groups; ++g)
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t k = 0; k < kg; ++k)
        for (std::int64_t i = 0; i < rs; ++i)
          wf[((g * cg + c) * kg + k) * rs + i] = w[((g * kg + k) * cg + c) * rs + (rs - 1 - i)];
  ConvShape t = s;
  t.c = s.k, t.h = s.oh, t.w = s.ow, t.k = s.c, t.oh = s.h, t.ow = s.w;
  t.pad_h = (s.r - 1) * s.dil_h - s.pad_h;
  t.pad_w = (s.s - 1) * s.dil_w - s.pad_w;
  if (winograd) return forward_winograd(dx, dy, wf, static_cast<const T*>(nullptr), t, isa);
  forward_implicit(dx, dy, wf, static_cast<const T*>(nullptr), t, isa);
}

// dx_g += cols scattered into their windows, for pixels p0 .. p0 + pc; threads over channels
// (each dx element has one owner, its sums in a fixed order).
template <typename T>
static void col2im(T* dxg, const T* cols, std::int64_t ldc, std::int64_t p0, std::int64_t pc,
                   const ConvShape& s, std::int64_t cg, int max_threads) {
  const std::int64_t rs = s.r * s.s, hw = s.h * s.w;
  const int threads = int(std::min<std::int64_t>(max_threads, cg));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && cg * rs * pc > 32768)
  for (std::int64_t c = 0; c < cg; ++c)
    for (std::int64_t r = 0; r < s.r; ++r)
      for (std::int64_t q = 0; q < s.s; ++q) {
        const T* src = cols + ((c * s.r + r) * s.s + q) * ldc;
        T* xc = dxg + c * hw;
        std::int64_t oh = p0 / s.ow, ow = p0 % s.ow;
        for (std::int64_t j = 0; j < pc;) {
          const std::int64_t len = std::min(pc - j, s.ow - ow);
          const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
          if (ih >= 0 && ih < s.h) {
            const std::int64_t iw0 = ow * s.stride_w - s.pad_w + q * s.dil_w, sw = s.stride_w;
            const std::int64_t lo =
                std::clamp<std::int64_t>(iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw, 0, len);
            const std::int64_t hi =
                std::clamp<std::int64_t>(s.w - iw0 <= 0 ? 0 : (s.w - iw0 + sw - 1) / sw, lo, len);
            T* xr = xc + ih * s.w + iw0;
            for (std::int64_t i = lo; i < hi; ++i) xr[i * sw] += src[j + i];
          }
          j += len, ow = 0, ++oh;
        }
      }
}

template <typename T>
static void backward_data_col2im(T* dx, const T* dy, const T* w, const ConvShape& s, Isa isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, crs = cg * s.r * s.s;
  const std::int64_t p = s.oh * s.ow, chw = s.c * s.h * s.w;
  const std::int64_t chunk = std::clamp<std::int64_t>(kCol2imElems / crs / 64 * 64, 64, p);
  over_images(s.n, [&](std::int64_t n, int mt) {
    T* cols = static_cast<T*>(tls_cols.get(sizeof(T) * std::size_t(crs * chunk)));
    if (!cols) throw std::bad_alloc();
    std::fill(dx + n * chw, dx + (n + 1) * chw, T(0));
    for (std::int64_t g = 0; g < s.groups; ++g) {
      const T* dyg = dy + (n * s.k + g * kg) * p;
      for (std::int64_t p0 = 0; p0 < p; p0 += chunk) {
        const std::int64_t pc = std::min(chunk, p - p0);
        gemm(cols, pc, w + g * kg * crs, std::int64_t(1), crs, dyg + p0, p, std::int64_t(1), crs,
             pc, kg, GemmParams<T>{}, isa, mt);
        col2im(dx + n * chw + g * cg * s.h * s.w, cols, pc, p0, pc, s, cg,
               mt == 1 ? 1 : get_num_threads());
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Direct convolution (depthwise and few-channel layers)
// ---------------------------------------------------------------------------------------------
//
// When each filter sees few input values per output (C/G*R*S small: depthwise, or LeNet's one
// input channel), a GEMM has too short a k to amortise its tiles, and the work is better done
// plane by plane: each input plane is laid out once (zero-padded, split into stride_w phases,
// conv_simd.h's ConvPlane) in a thread-local buffer, and every filter tap of an output row is a
// contiguous run of it, vectorised along ow (conv_simd.h).
//   forward          tasks (n, g): y[n, k] = b[k] + sum_c taps(w[k, c]) * plane(x[n, c])
//   backward-data    the same kernel on dy: zeros inserted stride - 1 apart, padded by
//                    dil*(R-1) - pad, with the flipped filters, channels swapped in the group
//   backward-weight  tasks (k range of a group): dw[k, c, r, q] += dot(dy[n, k], tap (r, q) of
//                    plane(x[n, c])), images in order.


// Where a plane's virtual values come from: virtual (i, j) is src[(i - pad_h) / up_h]
// [(j - pad_w) / up_w] when both are whole and in range, else 0 (up > 1: zeros inserted).
struct PlaneSource {
  std::int64_t h, w, up_h, up_w, pad_h, pad_w;
};

// The plane layout for an out_h x out_w output; tap (R*S entries) receives the tap offsets.
static ConvPlaneGeom plane_geom(std::int64_t out_h, std::int64_t out_w, std::int64_t stride_h,
                                std::int64_t stride_w, const ConvShape& s, int lanes,
                                std::vector<std::int64_t>& tap) {
  // direct_rows computes min(kConvBlock, vectors per row) vectors at a time and may read a whole
  // block past the row; the rest of the tail holds the taps' reach.
  const std::int64_t vecs = std::clamp<std::int64_t>((out_w + lanes - 1) / lanes, 1, kConvBlock);
  const std::int64_t block = vecs * lanes;
  const std::int64_t wq = (out_w + block - 1) / block * block + (s.s - 1) * s.dil_w / stride_w;
  tap.resize(std::size_t(s.r * s.s));
  for (std::int64_t r = 0; r < s.r; ++r)
    for (std::int64_t q = 0; q < s.s; ++q) {
      const std::int64_t col = q * s.dil_w;
      tap[std::size_t(r * s.s + q)] =
          r * s.dil_h * stride_w * wq + col % stride_w * wq + col / stride_w;
    }
  return {out_h, out_w, s.r, s.s, s.dil_h, s.dil_w, stride_h, stride_w, wq, tap.data()};
}

static std::int64_t plane_rows(const ConvPlaneGeom& g) {
  return (g.out_h - 1) * g.stride_h + (g.r - 1) * g.dil_h + 1;
}

// Division-free (it runs once per input plane, often for a few hundred FMAs): source rows and
// columns are walked in order and placed at their virtual positions.
template <typename T>
static void build_plane(const ConvDirectTable<T>& tab, T* __restrict plane,
                        const T* __restrict src, const PlaneSource& p, const ConvPlaneGeom& g) {
  const std::int64_t sw = g.stride_w, pitch = sw * g.wq, rows = plane_rows(g);
  // The first source row at or below virtual row 0, and its virtual row.
  std::int64_t u = p.pad_h >= 0 ? 0 : (-p.pad_h + p.up_h - 1) / p.up_h;
  std::int64_t next = p.pad_h + u * p.up_h;
  const bool plain = sw == 1 && p.up_w == 1;
  const std::int64_t lo = std::clamp<std::int64_t>(p.pad_w, 0, g.wq);
  const std::int64_t hi = std::clamp<std::int64_t>(p.pad_w + p.w, lo, g.wq);
  std::int64_t j0 = p.pad_w >= 0 ? 0 : (-p.pad_w + p.up_w - 1) / p.up_w;  // first source column
  const std::int64_t v0 = p.pad_w + j0 * p.up_w;                        // at virtual column v0
  for (std::int64_t i = 0; i < rows; ++i) {
    T* prow = plane + i * pitch;
    if (i != next || u >= p.h) {
      tab.pad_row(prow, src, 0, 0, pitch);
      continue;
    }
    const T* srow = src + u * p.w;
    ++u, next += p.up_h;
    if (plain) {
      tab.pad_row(prow, srow - p.pad_w, lo, hi, g.wq);
      continue;
    }
    std::fill(prow, prow + pitch, T(0));
    std::int64_t f = v0 % sw, t = v0 / sw;  // phase and position of virtual column v0
    for (std::int64_t j = j0; j < p.w && t < g.wq; ++j) {
      prow[f * g.wq + t] = srow[j];
      for (f += p.up_w; f >= sw; f -= sw) ++t;
    }
  }
}

thread_local ScratchBuffer tls_plane;

template <typename T>
static T* plane_buffer(const ConvPlaneGeom& g) {
  T* p = static_cast<T*>(tls_plane.get(sizeof(T) * std::size_t(plane_rows(g) * g.stride_w * g.wq)));
  if (!p) throw std::bad_alloc();
  return p;
}

// Threads for `tasks` independent tasks of `flops` in all: each at least ~0.6 MFLOP, as gemm.
static int direct_threads(std::int64_t tasks, double flops) {
  return int(std::clamp<double>(std::min<double>(double(tasks), flops / 6e5), 1.0,
                                double(get_num_threads())));
}

template <typename T>
static void forward_direct(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, rs = s.r * s.s;
  const std::int64_t p = s.oh * s.ow, hw = s.h * s.w;
  std::vector<std::int64_t> tap;
  const ConvPlaneGeom g = plane_geom(s.oh, s.ow, s.stride_h, s.stride_w, s, tab.lanes, tap);
  const PlaneSource src{s.h, s.w, 1, 1, s.pad_h, s.pad_w};
  const std::int64_t tasks = s.n * s.groups;
  parallel_tasks(tasks, direct_threads(tasks, 2.0 * double(s.n * s.k * cg * rs * p)),
                 [&](std::int64_t t) {
    const std::int64_t n = t / s.groups, gi = t % s.groups;
    T* plane = plane_buffer<T>(g);
    for (std::int64_t c = 0; c < cg; ++c) {
      build_plane(tab, plane, x + (n * s.c + gi * cg + c) * hw, src, g);
      for (std::int64_t k = gi * kg; k < (gi + 1) * kg; k += kConvFilters) {
        const int kb = int(std::min<std::int64_t>(kConvFilters, (gi + 1) * kg - k));
        tab.rows(y + (n * s.k + k) * p, p, plane, w + (k * cg + c) * rs, cg * rs, b ? b + k : nullptr,
                 kb, c > 0, g);
      }
    }
  });
}

template <typename T>
static void backward_data_direct(T* dx, const T* dy, const T* w, const ConvShape& s, Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, rs = s.r * s.s;
  const std::int64_t p = s.oh * s.ow, hw = s.h * s.w;
  T* wf = static_cast<T*>(tls_flipped.get(sizeof(T) * std::size_t(s.k * cg * rs)));
  if (!wf) throw std::bad_alloc();
  for (std::int64_t gi = 0; gi < s.groups; ++gi)  // wf[g, c, k, :] = w[g, k, c, ::-1]
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t kk = 0; kk < kg; ++kk)
        for (std::int64_t i = 0; i < rs; ++i)
          wf[((gi * cg + c) * kg + kk) * rs + i] = w[((gi * kg + kk) * cg + c) * rs + (rs - 1 - i)];
  std::vector<std::int64_t> tap;
  const ConvPlaneGeom g = plane_geom(s.h, s.w, 1, 1, s, tab.lanes, tap);
  const PlaneSource src{s.oh, s.ow, s.stride_h, s.stride_w, (s.r - 1) * s.dil_h - s.pad_h,
                        (s.s - 1) * s.dil_w - s.pad_w};
  const std::int64_t tasks = s.n * s.groups;
  parallel_tasks(tasks, direct_threads(tasks, 2.0 * double(s.n * s.k * cg * rs * hw)),
                 [&](std::int64_t t) {
    const std::int64_t n = t / s.groups, gi = t % s.groups;
    T* plane = plane_buffer<T>(g);
    for (std::int64_t kk = 0; kk < kg; ++kk) {
      build_plane(tab, plane, dy + (n * s.k + gi * kg + kk) * p, src, g);
      for (std::int64_t c = 0; c < cg; c += kConvFilters) {
        const int kb = int(std::min<std::int64_t>(kConvFilters, cg - c));
        tab.rows(dx + (n * s.c + gi * cg + c) * hw, hw, plane, wf + ((gi * cg + c) * kg + kk) * rs,
                 kg * rs, nullptr, kb, kk > 0, g);
      }
    }
  });
}

template <typename T>
static void backward_weight_direct(T* dw, const T* dy, const T* x, const ConvShape& s, Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, rs = s.r * s.s;
  const std::int64_t p = s.oh * s.ow, hw = s.h * s.w;
  std::vector<std::int64_t> tap;
  const ConvPlaneGeom g = plane_geom(s.oh, s.ow, s.stride_h, s.stride_w, s, tab.lanes, tap);
  const PlaneSource src{s.h, s.w, 1, 1, s.pad_h, s.pad_w};
  std::fill(dw, dw + s.k * cg * rs, T(0));
  // Units: a range of one group's filters each (so a plane is laid out once per unit and image,
  // not once per filter), enough of them to give every thread work. Each thread owns a run of
  // units and walks the images in order, reading x and dy in memory order (a depthwise layer's
  // planes are used once each: walking one channel through all images instead ran at a third of
  // the speed, a few KiB per page). dw's sums run over n in order, whatever the thread count.
  const int max_threads = get_num_threads();
  const std::int64_t parts = std::clamp<std::int64_t>((2 * max_threads + s.groups - 1) / s.groups, 1, kg);
  const std::int64_t units = s.groups * parts;
  const int threads = direct_threads(units, 2.0 * double(s.n * s.k * cg * rs * p));
  parallel_tasks(threads, threads, [&](std::int64_t t) {
    const std::int64_t u0 = units * t / threads, u1 = units * (t + 1) / threads;
    T* plane = plane_buffer<T>(g);
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t u = u0; u < u1; ++u) {
        const std::int64_t gi = u / parts, part = u % parts;
        const std::int64_t k0 = gi * kg + kg * part / parts, k1 = gi * kg + kg * (part + 1) / parts;
        for (std::int64_t c = 0; c < cg; ++c) {
          build_plane(tab, plane, x + (n * s.c + gi * cg + c) * hw, src, g);
          for (std::int64_t k = k0; k < k1; ++k)
            tab.taps_dot(dw + (k * cg + c) * rs, dy + (n * s.k + k) * p, plane, g);
        }
      }
  });
}

// db[k] = dy summed over N, OH, OW: per-plane vector sums (conv_simd.h), added over images in
// double; threads over channels. (A scalar double loop was a 4-cycle dependency per element:
// 5 ms of a 6 ms depthwise backward-weight at N = 32, C = 128, 28 x 28.)
template <typename T>
static void bias_grad(T* db, const T* dy, const ConvShape& s, Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t p = s.oh * s.ow;
  const int threads = direct_threads(s.k, double(s.n * s.k * p) * 4);
  parallel_tasks(s.k, threads, [&](std::int64_t k) {
    double acc = 0;
    for (std::int64_t n = 0; n < s.n; ++n) acc += double(tab.sum(dy + (n * s.k + k) * p, p));
    db[k] = T(acc);
  });
}

// ---------------------------------------------------------------------------------------------
// Winograd F(4x4, 3x3): 3x3 kernels, stride 1, dilation 1 (every pass)
// ---------------------------------------------------------------------------------------------
//
// The output is cut into 4x4 tiles (TH x TW per image, edge tiles cropped), each computed from a
// 6x6 input tile with 36 products per channel pair instead of 144 (conv_winograd_simd.h has the
// matrices). Per group g, for a block of NB consecutive tiles (over images, tile rows, tile
// columns; pixel_runs cuts the block into runs of one tile row each):
//   U[xi] (K/G x C/G)  = (G w G^T)[xi], xi = 0..35, once per call (winograd_filters)
//   V[xi] (C/G x NB)   = (B^T d B)[xi]: each channel's 36 tile elements gathered into rows, one
//                        call per run (table.wino_gather, padding read as 0), then transformed
//                        across tiles (table.wino_input)
//   M[xi] (K/G x NB)   = U[xi] V[xi]: 36 products on the packed GEMM, one thread each
//   y tile             = A^T M A + b (table.wino_output), interleaved into y's rows, cropped at
//                        the edges (table.interleave4)
// A block's V and M (36 x (C/G + K/G) x NB elements) stay in the thread's L2: a whole-batch V
// would be a DRAM round trip per pass (C64 56x56 N32: 58 MB). Threads take whole blocks, so
// every output element is computed by one thread in a fixed order (bitwise repeatable at a fixed
// thread count; a small batch splits the filters across threads too). Backward-data is this
// forward on dy with the flipped, channel-swapped filters (backward_data_flipped), its padding
// 2 - pad (any padding: a negative one starts the tiles inside dy). Backward-weight follows
// forward_winograd.

static bool winograd_fits(const ConvShape& s) {
  return s.r == 3 && s.s == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 &&
         s.dil_w == 1;
}

thread_local ScratchBuffer tls_wino_filters, tls_wino_block;

// u[(g*36 + xi) * winograd_ustep(s) + k * C/G + c] = (G w[g*K/G + k, c] G^T)[xi], in double (G
// has sixths), by multiplications (double divisions cost more than a C256 14x14 layer's
// products). The 36 matrices lie a cache line more than K/G x C/G apart: at a power-of-two
// distance the 36 stores of one filter's transform all fell into one cache set (C256: 5x slower
// than the whole convolution's products).
static std::int64_t winograd_ustep(const ConvShape& s) {
  return (s.k / s.groups * (s.c / s.groups) + 15) / 16 * 16 + 16;
}

static inline void winograd_g(double* r, double g0, double g1, double g2) {
  constexpr double k4 = 1.0 / 4, k6 = 1.0 / 6, k12 = 1.0 / 12, k24 = 1.0 / 24;
  const double even = k24 * g0 + k6 * g2, odd = k12 * g1;
  r[0] = k4 * g0;
  r[1] = -k6 * (g0 + g1 + g2);
  r[2] = -k6 * (g0 - g1 + g2);
  r[3] = even + odd;
  r[4] = even - odd;
  r[5] = g2;
}

template <typename T>
static void winograd_filters(T* u, const T* w, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  const std::int64_t step = winograd_ustep(s);  // between consecutive xi
  const int threads = direct_threads(s.k, 200.0 * double(s.k * cg));
  parallel_tasks(s.k, threads, [&](std::int64_t f) {
    const std::int64_t gi = f / kg, kk = f % kg;
    T* uf = u + gi * 36 * step + kk * cg;
    for (std::int64_t c = 0; c < cg; ++c) {
      const T* g = w + (f * cg + c) * 9;
      double t[3][6];  // column j of G g
      for (int j = 0; j < 3; ++j) winograd_g(t[j], double(g[j]), double(g[3 + j]), double(g[6 + j]));
      for (int i = 0; i < 6; ++i) {  // row i of (G g) G^T
        double r[6];
        winograd_g(r, t[0][i], t[1][i], t[2][i]);
        for (int j = 0; j < 6; ++j) uf[(6 * i + j) * step + c] = T(r[j]);
      }
    }
  });
}

// Tiles per block: as many as keep V and M in half the L2 (gemm_config.h), whole GEMM panels
// (NR columns; a narrow last panel is packed), at least 64 (each block re-reads all 36 x K x C/G
// transformed filters: AVX2's 16-column panels gave 16-tile blocks at C256, and C256 14x14 ran
// 70 / 58 / 52 ms with 16 / 32 / 64 tiles, C64 56x56 52 / 46 / 46; AVX-512 C64 56x56 33.8 / 33.1
// / 36.1 ms with 32 / 64 / 128), and enough blocks for every thread. FASTDL_WINOGRAD_TILES
// overrides it (benchmarking only).
template <typename T>
static std::int64_t winograd_block(const ConvShape& s, std::int64_t tiles, Isa isa) {
  int mr = 0, nr = 0;
  std::int64_t kc = 0;
  gemm_tile<T>(isa, &mr, &nr, &kc);
  if (const char* e = std::getenv("FASTDL_WINOGRAD_TILES"))
    if (std::atoll(e) > 0) return std::atoll(e);
  const std::int64_t per_tile = 36 * (s.c + s.k) / s.groups * std::int64_t(sizeof(T));
  const std::int64_t min_tiles = std::max<std::int64_t>(64 / nr, 1) * nr;
  std::int64_t nb = std::max(gemm_config::kL2Bytes / 2 / per_tile / nr * nr, min_tiles);
  const std::int64_t threads = get_num_threads();
  const std::int64_t share = (tiles * s.groups + threads - 1) / threads;  // tiles per thread
  nb = std::min(nb, std::max<std::int64_t>((share + nr - 1) / nr * nr, nr));
  return std::min(nb, tiles);
}

// Asks for the input rows a run of tiles reads from one plane (the next channel's, while this
// one is gathered). A block reads a few short row segments from each of C/G planes, far apart:
// the hardware prefetchers did not follow them, and the gather waited on DRAM (measured, one
// thread, C64 56x56 N32: the gather alone 12.6 ms of the layer's 33).
template <typename T>
static void prefetch_tile_rows(const T* plane, const PixelRun& ru, const ConvShape& s) {
  const std::int64_t r0 = std::max<std::int64_t>(ru.ih0, 0), r1 = std::min(ru.ih0 + 6, s.h);
  const std::int64_t c0 = std::max<std::int64_t>(ru.iw0, 0);
  const std::int64_t c1 = std::min(ru.iw0 + 4 * ru.len + 2, s.w);
  if (c1 <= c0) return;
  constexpr std::int64_t line = 64 / std::int64_t(sizeof(T));
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* row = plane + r * s.w;
    for (std::int64_t i = c0; i < c1; i += line) __builtin_prefetch(row + i);
    __builtin_prefetch(row + c1 - 1);
  }
}

template <typename T>
static void forward_winograd(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                             Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, hw = s.h * s.w;
  const std::int64_t th = (s.oh + 3) / 4, tw = (s.ow + 3) / 4, tiles = s.n * th * tw;
  if (tiles == 0) return;  // no output (N = 0 or an empty image)
  const std::int64_t ustep = winograd_ustep(s);
  T* u = static_cast<T*>(tls_wino_filters.get(sizeof(T) * std::size_t(36 * s.groups * ustep)));
  if (!u) throw std::bad_alloc();
  winograd_filters(u, w, s);
  // The tiles as the output pixels of a 6x6, stride-4 convolution, so that pixel_runs cuts a
  // block into runs of one tile row (ih0, iw0: the run's first input tile's corner).
  ConvShape ts = s;
  ts.r = ts.s = 6;
  ts.stride_h = ts.stride_w = 4;
  ts.oh = th, ts.ow = tw;
  const std::int64_t nb = winograd_block<T>(s, tiles, isa), blocks = (tiles + nb - 1) / nb;
  const std::int64_t ld = (nb + 15) / 16 * 16;  // row stride of the block's arrays
  // Fewer blocks than threads (a small batch): the filters are split too, each part repeating
  // the block's input transform (1/36 of the products' work per filter row of a part).
  const int max_threads = get_num_threads();
  const std::int64_t parts = std::clamp<std::int64_t>(max_threads / (s.groups * blocks), 1,
                                                       std::max<std::int64_t>(kg / 8, 1));
  const std::int64_t tasks = s.groups * blocks * parts;
  const int threads = int(std::min<std::int64_t>(tasks, max_threads));
  parallel_tasks(tasks, threads, [&](std::int64_t task) {
    const std::int64_t gi = task / (blocks * parts), t0 = task / parts % blocks * nb;
    const std::int64_t part = task % parts, cnt = std::min(nb, tiles - t0);
    const std::int64_t k0 = kg * part / parts, k1 = kg * (part + 1) / parts;  // filters in group
    const std::size_t elems = std::size_t((36 * (cg + kg + 1) + 16) * ld);
    T* v = static_cast<T*>(
        tls_wino_block.get(sizeof(T) * elems + sizeof(PixelRun) * std::size_t(cnt / tw + 2)));
    if (!v) throw std::bad_alloc();
    T* m = v + 36 * cg * ld;
    T* q = m + 36 * kg * ld;
    T* o = q + 36 * ld;
    PixelRun* runs = reinterpret_cast<PixelRun*>(v + elems);
    const int nruns = pixel_runs(runs, t0, cnt, ts);
    for (std::int64_t c = 0; c < cg; ++c) {
      for (int r = 0; r < nruns; ++r) {
        const PixelRun& ru = runs[r];
        const T* plane = x + (ru.img * s.c + gi * cg + c) * hw;
        if (c + 1 < cg) prefetch_tile_rows(plane + hw, ru, s);
        tab.wino_gather(q + ru.off, ld, plane, ru.ih0, ru.iw0, s.h, s.w, ru.len, 6);
      }
      tab.wino_input(v + c * ld, cg * ld, q, ld, cnt);
    }
    for (int xi = 0; xi < 36; ++xi)
      gemm(m + (xi * kg + k0) * ld, ld, u + (gi * 36 + xi) * ustep + k0 * cg, cg, std::int64_t(1),
           v + xi * cg * ld, ld, std::int64_t(1), k1 - k0, cnt, cg, GemmParams<T>{}, isa, 1);
    for (std::int64_t kk = k0; kk < k1; ++kk) {
      const std::int64_t k = gi * kg + kk;
      tab.wino_output(o, ld, m + kk * ld, kg * ld, b ? b[k] : T(0), cnt);
      for (int r = 0; r < nruns; ++r) {  // rows of 4x4 tiles into y, cropped at its edges
        const PixelRun& ru = runs[r];
        const std::int64_t oh0 = ru.ih0 + s.pad_h, ow0 = ru.iw0 + s.pad_w;  // the run's first tile
        T* yk = y + (ru.img * s.k + k) * s.oh * s.ow;
        for (int i = 0; i < 4 && oh0 + i < s.oh; ++i)
          tab.interleave4(yk + (oh0 + i) * s.ow + ow0, o + 4 * i * ld + ru.off, ld, ru.len,
                          s.ow - ow0);
      }
    }
  });
}

// Backward-weight: dL/dg = G^T [ (A dY A^T) o (B^T d B) ] G summed over tiles (the adjoint of the
// forward's transforms). Per group, for a block of NB tiles:
//   V[xi] (C/G x NB)   = (B^T d B)[xi], as the forward
//   Z[xi] (K/G x NB)   = (A dY A^T)[xi]: each 4x4 tile of dy (zero past y's edges, so cropped
//                        outputs add nothing) through table.wino_grad_output
//   dU[xi] (K/G x C/G) += Z[xi] V[xi]^T: 36 products on the packed GEMM, k = the block's tiles
// Each thread sums its own contiguous run of blocks into its own dU (36 x K x C/G), the threads'
// sums are added in thread order and dW = G^T dU G per filter: bitwise repeatable at a fixed
// thread count.

// r = G^T u (six values to three): the adjoint of winograd_g.
static inline void winograd_gt(double* r, const double* u, std::int64_t step) {
  constexpr double k4 = 1.0 / 4, k6 = 1.0 / 6, k12 = 1.0 / 12, k24 = 1.0 / 24;
  const double p = u[step] + u[2 * step], m = u[step] - u[2 * step];
  const double p2 = u[3 * step] + u[4 * step], m2 = u[3 * step] - u[4 * step];
  r[0] = k4 * u[0] - k6 * p + k24 * p2;
  r[1] = k12 * m2 - k6 * m;
  r[2] = k6 * (p2 - p) + u[5 * step];
}

thread_local ScratchBuffer tls_wino_grads;

template <typename T>
static void backward_weight_winograd(T* dw, const T* dy, const T* x, const ConvShape& s, Isa isa) {
  const ConvDirectTable<T>& tab = conv_direct_table<T>(isa);
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups, hw = s.h * s.w, p = s.oh * s.ow;
  const std::int64_t th = (s.oh + 3) / 4, tw = (s.ow + 3) / 4, tiles = s.n * th * tw;
  if (tiles == 0) return std::fill(dw, dw + s.k * cg * 9, T(0));
  ConvShape ts = s;
  ts.r = ts.s = 6;
  ts.stride_h = ts.stride_w = 4;
  ts.oh = th, ts.ow = tw;
  const std::int64_t nb = winograd_block<T>(s, tiles, isa), blocks = (tiles + nb - 1) / nb;
  const std::int64_t ld = (nb + 15) / 16 * 16;
  const std::int64_t ustep = winograd_ustep(s), du_elems = 36 * s.groups * ustep;
  const std::int64_t tasks = s.groups * blocks;
  const int threads = int(std::min<std::int64_t>(tasks, get_num_threads()));
  T* du_all = static_cast<T*>(tls_wino_grads.get(sizeof(T) * std::size_t(threads * du_elems)));
  if (!du_all) throw std::bad_alloc();
  std::vector<char> touched(std::size_t(threads * s.groups), 0);  // (thread, group) has a sum
  parallel_tasks(threads, threads, [&](std::int64_t id) {
    T* du = du_all + id * du_elems;
    const std::size_t elems = std::size_t((36 * (cg + kg + 1)) * ld);
    T* v = static_cast<T*>(
        tls_wino_block.get(sizeof(T) * elems + sizeof(PixelRun) * std::size_t(nb / tw + 2)));
    if (!v) throw std::bad_alloc();
    T* z = v + 36 * cg * ld;
    T* q = z + 36 * kg * ld;
    PixelRun* runs = reinterpret_cast<PixelRun*>(v + elems);
    for (std::int64_t task = tasks * id / threads; task < tasks * (id + 1) / threads; ++task) {
      const std::int64_t gi = task / blocks, t0 = task % blocks * nb;
      const std::int64_t cnt = std::min(nb, tiles - t0);
      const int nruns = pixel_runs(runs, t0, cnt, ts);
      for (std::int64_t c = 0; c < cg; ++c) {
        for (int r = 0; r < nruns; ++r) {
          const PixelRun& ru = runs[r];
          const T* plane = x + (ru.img * s.c + gi * cg + c) * hw;
          if (c + 1 < cg) prefetch_tile_rows(plane + hw, ru, s);
          tab.wino_gather(q + ru.off, ld, plane, ru.ih0, ru.iw0, s.h, s.w, ru.len, 6);
        }
        tab.wino_input(v + c * ld, cg * ld, q, ld, cnt);
      }
      for (std::int64_t kk = 0; kk < kg; ++kk) {
        for (int r = 0; r < nruns; ++r) {  // the 4x4 dy tiles
          const PixelRun& ru = runs[r];
          tab.wino_gather(q + ru.off, ld, dy + (ru.img * s.k + gi * kg + kk) * p, ru.ih0 + s.pad_h,
                          ru.iw0 + s.pad_w, s.oh, s.ow, ru.len, 4);
        }
        tab.wino_grad_output(z + kk * ld, kg * ld, q, ld, cnt);
      }
      char& seen = touched[std::size_t(id * s.groups + gi)];
      GemmParams<T> gp;
      gp.beta = seen ? T(1) : T(0);
      seen = 1;
      for (int xi = 0; xi < 36; ++xi)
        gemm(du + (gi * 36 + xi) * ustep, cg, z + xi * kg * ld, ld, std::int64_t(1),
             v + xi * cg * ld, std::int64_t(1), ld, kg, cg, cnt, gp, isa, 1);
    }
  });
  parallel_tasks(s.k, direct_threads(s.k, 200.0 * double(s.k * cg * threads)), [&](std::int64_t f) {
    const std::int64_t gi = f / kg, kk = f % kg;
    for (std::int64_t c = 0; c < cg; ++c) {
      double u[36] = {};
      for (int id = 0; id < threads; ++id) {
        if (!touched[std::size_t(id * s.groups + gi)]) continue;
        const T* src = du_all + id * du_elems + gi * 36 * ustep + kk * cg + c;
        for (int xi = 0; xi < 36; ++xi) u[xi] += double(src[xi * ustep]);
      }
      double t[6][3];  // G^T applied to each column j of u: t[j] = rows of the 3 x 6 result
      for (int j = 0; j < 6; ++j) winograd_gt(t[j], u + j, 6);
      T* out = dw + (f * cg + c) * 9;
      for (int a = 0; a < 3; ++a) {
        const double row[6] = {t[0][a], t[1][a], t[2][a], t[3][a], t[4][a], t[5][a]};
        double r3[3];
        winograd_gt(r3, row, 1);
        for (int b = 0; b < 3; ++b) out[a * 3 + b] = T(r3[b]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

// Winograd (forward, backward-data) where its fixed costs are repaid. Its products are 4x smaller
// than the direct form's but every call transforms all K*C/G filters (~150 instructions each)
// and gathers 2.25 values per input value: it needs channels on both sides (C/G, K/G >= 8; fewer
// rows go direct anyway), tiles enough per filter pair to repay the filter transform, and little
// of each 4x4 tile cropped (a 5x5 output computes 64 outputs for 25). Measured A/B, one thread
// (CPU time, machine under load), implicit GEMM / winograd, forward (backward-data alike):
//   N32: C8 56x56 K8 2.2, C8 28x28 K32 1.3, C16 56x56 2.0, C32 14x14 2.0, C64 7x7 1.7, C512 7x7
//   1.5, C64 56x56 2.6, C128 28x28 2.6, C256 14x14 2.1; C64 5x5 (cropped) 1.1.
//   Few tiles: N2 C64 14x14 (32 tiles) 1.3, N2 C128 14x14 1.3; but N1 C256 14x14 (16 tiles) 0.77,
//   N4 C256 7x7 (16) 0.81, N8 C64 4x4 (8) 0.82, N1 C64 7x7 (4) 0.39.
// Backward-weight also gathers 36 values per dy tile and sums K/G x C/G x 36 per thread, so it
// needs more: implicit GEMM / winograd at N32 C64 56x56 2.0, C128 28x28 1.9, C256 14x14 1.7,
// C8 56x56 K8 1.4, N1 C64 56x56 (196 tiles) 1.6, N32 C512 7x7 1.2; but N32 C64 7x7 (128 tiles)
// 1.04, N2 C128 14x14 (32) 0.70, N32 C8 28x28 K32 0.71, N1 C256 14x14 0.40. Its per-thread sums
// are bounded: K/G x C/G at most kWinogradMaxGradElems (36 x 2^16 elements a thread, 9.4 MB in
// float32; C512 gains 20% for 75 MB and stays on the implicit GEMM).
constexpr std::int64_t kWinogradMaxGradElems = std::int64_t(1) << 16;
static bool winograd_pays(ConvPass pass, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  const std::int64_t tiles = s.n * ((s.oh + 3) / 4) * ((s.ow + 3) / 4);
  if (!winograd_fits(s) || 2 * s.oh * s.ow < 16 * ((s.oh + 3) / 4) * ((s.ow + 3) / 4)) return false;
  if (pass == ConvPass::backward_weight)
    return cg >= 16 && kg >= 16 && tiles >= 192 && kg * cg <= kWinogradMaxGradElems;
  return cg >= 8 && kg >= 8 && tiles >= 32;
}

// Each pass through the GEMM is a product with m rows: forward and backward-weight K/G (the
// filters), backward-data C/G (the flipped form's filters); a product of fewer than 8 rows
// wastes most of a 12-row micro-kernel tile (and 1-row ones pay for packing a whole panel), and
// one with a k below 4 is all write-back: those go to the direct kernels, and so does a forward
// pass over a single input channel per group (k = R*S only). Measured, one thread, fp32 CPU
// time, direct vs implicit GEMM (ms): depthwise C128 28x28 3x3 N32 fwd 3.3 / 45, bwd-data
// 3.4 / 43; C1 -> K32 forward: LeNet 28x28 5x5 N64 0.70 / 0.78, 28x28 3x3 N64 0.44 / 0.54,
// 64x64 5x5 N16 1.23 / 1.28, 8x8 -> K16 3x3 N64 0.04 / 0.06; but C3 32x32 -> K64 3x3 N16 (k = 27)
// 0.78 / 0.58. Backward-data with C/G = 1 or 3: 1.2 / 7.4 and 1.2 / 3.7; backward-weight with
// 16-32 filters stays on the GEMM (0.94-1.67 vs 1.10-2.84 direct).
// Winograd trades accuracy for speed (its float32 error is 15-30x the GEMM's, ~1e-5 of the
// largest output on ResNet layers), so auto takes it for float32 only, where that is still far
// inside what float32 training tolerates; float64 callers (gradient checks, users who asked for
// precision) keep the exact-order GEMM. FASTDL_CONV_WINOGRAD=0 turns it off for float32 too.
static bool winograd_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("FASTDL_CONV_WINOGRAD");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return on;
}

ConvAlgo conv_choose(ConvPass pass, const ConvShape& s, int bytes, Isa) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  const std::int64_t rows = pass == ConvPass::backward_data ? cg : kg;
  const std::int64_t depth = pass == ConvPass::backward_data ? kg * s.r * s.s : cg * s.r * s.s;
  if (rows < 8 || (pass != ConvPass::backward_weight && depth < 4) ||
      (pass == ConvPass::forward && cg == 1))
    return ConvAlgo::direct;
  if (is_1x1(s)) return ConvAlgo::gemm1x1;
  if (bytes == 4 && winograd_enabled() && winograd_pays(pass, s)) return ConvAlgo::winograd;
  return ConvAlgo::implicit_gemm;
}

// The algorithm to run: `algo`, or the dispatch's choice; ValueError if a forced one cannot take
// the shape.
static ConvAlgo resolve(ConvAlgo algo, ConvPass pass, const ConvShape& s, int bytes, Isa isa) {
  if (algo == ConvAlgo::automatic) return conv_choose(pass, s, bytes, isa);
  FASTDL_CHECK(algo != ConvAlgo::gemm1x1 || is_1x1(s), ValueError,
               "variant 'gemm1x1' needs a 1x1 kernel with stride 1 and no padding");
  FASTDL_CHECK(algo != ConvAlgo::winograd || winograd_fits(s), ValueError,
               "variant 'winograd' needs a 3x3 kernel with stride 1 and dilation 1");
  return algo;
}

// An output extent of 1 makes that axis' stride irrelevant (one window, at -pad) in every pass;
// the direct kernels lay planes out in stride phases, so a stride far past the input (2**31:
// one window) would otherwise size a workspace by the stride. Exact, so the fast variants all
// take it; the reference keeps the stride as given (the oracle tests compare against).
static ConvShape unit_strides(ConvShape s) {
  if (s.oh == 1) s.stride_h = 1;
  if (s.ow == 1) s.stride_w = 1;
  return s;
}

// Zero channels (C/G = 0 or K/G = 0: sums over nothing, or nothing to write) as PyTorch answers
// them: y = b (or 0), dx = 0, dw empty, db = dy summed. The kernels assume at least one channel
// on each side (the direct ones write y from the first input channel). True when handled.
template <typename T>
static bool forward_no_channels(T* y, const T* b, const ConvShape& s) {
  if (s.c != 0 && s.k != 0) return false;
  const std::int64_t p = s.oh * s.ow;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t k = 0; k < s.k; ++k)
      std::fill(y + (n * s.k + k) * p, y + (n * s.k + k + 1) * p, b ? b[k] : T(0));
  return true;
}

template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& shape,
                    ConvAlgo algo, Isa isa) {
  if (forward_no_channels(y, b, shape)) return;
  const ConvShape s = algo == ConvAlgo::reference ? shape : unit_strides(shape);
  switch (resolve(algo, ConvPass::forward, s, int(sizeof(T)), isa)) {
    case ConvAlgo::gemm1x1: return forward_1x1(y, x, w, b, s, isa);
    case ConvAlgo::implicit_gemm: return forward_implicit(y, x, w, b, s, isa);
    case ConvAlgo::direct: return forward_direct(y, x, w, b, s, isa);
    case ConvAlgo::winograd: return forward_winograd(y, x, w, b, s, isa);
    default: return conv2d_forward_reference(y, x, w, b, s);
  }
}

template <typename T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvShape& shape, ConvAlgo algo,
                          Isa isa) {
  if (shape.c == 0 || shape.k == 0) {
    std::fill(dx, dx + shape.n * shape.c * shape.h * shape.w, T(0));
    return;
  }
  const ConvShape s = algo == ConvAlgo::reference ? shape : unit_strides(shape);
  switch (resolve(algo, ConvPass::backward_data, s, int(sizeof(T)), isa)) {
    case ConvAlgo::gemm1x1: return backward_data_1x1(dx, dy, w, s, isa);
    case ConvAlgo::implicit_gemm:
      if (s.stride_h == 1 && s.stride_w == 1) return backward_data_flipped(dx, dy, w, s, isa);
      return backward_data_col2im(dx, dy, w, s, isa);
    case ConvAlgo::direct: return backward_data_direct(dx, dy, w, s, isa);
    case ConvAlgo::winograd: return backward_data_flipped(dx, dy, w, s, isa, true);
    default: return conv2d_backward_data_reference(dx, dy, w, s);
  }
}

template <typename T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& shape,
                            ConvAlgo algo, Isa isa) {
  if (shape.c == 0 || shape.k == 0) {  // dw is empty; db still sums dy (K > 0, C = 0)
    if (db && shape.k != 0) bias_grad(db, dy, shape, isa);
    return;
  }
  const ConvShape s = algo == ConvAlgo::reference ? shape : unit_strides(shape);
  switch (resolve(algo, ConvPass::backward_weight, s, int(sizeof(T)), isa)) {
    case ConvAlgo::gemm1x1: backward_weight_1x1(dw, dy, x, s, isa); break;
    case ConvAlgo::implicit_gemm: backward_weight_implicit(dw, dy, x, s, isa); break;
    case ConvAlgo::direct: backward_weight_direct(dw, dy, x, s, isa); break;
    case ConvAlgo::winograd: backward_weight_winograd(dw, dy, x, s, isa); break;
    default: return conv2d_backward_weight_reference(dw, db, dy, x, s);
  }
  if (db) bias_grad(db, dy, s, isa);
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const ConvShape&, ConvAlgo, \
                                  Isa);                                                         \
  template void conv2d_backward_data<T>(T*, const T*, const T*, const ConvShape&, ConvAlgo, Isa); \
  template void conv2d_backward_weight<T>(T*, T*, const T*, const T*, const ConvShape&, ConvAlgo, \
                                          Isa);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
