// conv.cu: 2-D convolution on the GPU (float32, NCHW, groups, stride, padding, dilation):
// forward, backward-data and backward-weight, each an implicit GEMM (no im2col buffer).
//
// Shapes: x (N, C, H, W), w (K, C/g, R, S), y / dy (N, K, OH, OW), b / db (K,), g groups;
//   OH = (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1 (likewise OW). Per group (blockIdx.z):
//   forward          y[n, k, oh, ow] = b[k] + sum_{c, r, s} w[k, c, r, s] x[n, c, ih, iw]
//                    with ih = oh stride_h - pad_h + r dil_h (iw alike), x = 0 outside the image
//   backward_data    dx[n, c, ih, iw] = sum over (k, r, s) with ih + pad_h - r dil_h = oh stride_h
//                    for an 0 <= oh < OH (iw alike) of w[k, c, r, s] dy[n, k, oh, ow]. dx is
//                    fully written (=); its H, W come from dx and may exceed the smallest input
//                    that gives OH, OW (conv_transpose2d's output_padding): rows no window covers
//                    get 0.
//   backward_weight  dw[k, c, r, s] = sum_{n, oh, ow} dy[n, k, oh, ow] x[n, c, ih, iw] (=);
//                    db[k] = sum_{n, oh, ow} dy[n, k, oh, ow] (=), skipped when db is null.
//
// Variants, in order of increasing complexity:
//   1. *_reference_kernel: one thread per output element, plain loops (double accumulation).
//      The oracle of the GPU tests.
//   2. conv_gemm_kernel<Op>: one implicit-GEMM kernel for all three passes. C (rows x cols) =
//      A (rows x depth) * B (depth x cols), where Op says how to gather an element of A and of
//      B straight from the tensors (decoding (c, r, s) and pixels on the fly, 0 for padding) and
//      where each result goes:
//        pass             rows        cols            depth
//        forward          K/g filters N*OH*OW pixels  C/g*R*S   A = w,   B = im2col(x)
//        backward_data    C/g chans   N*H*W pixels    K/g*R*S   A = w^T, B = dy gathered
//                         (one GEMM per stride phase: the pixels with ih % stride_h = a,
//                         iw % stride_w = b, and only the taps (r, s) that reach them)
//        backward_weight  K/g filters C/g*R*S         N*OH*OW   A = dy,  B = im2col(x)^T
//      A 64 x 64 block tile, depth in slices of 16; 256 threads each own a 4 x 4 register tile
//      (rows ty*4 + i, columns tx*4 + j: one float4 of A and one of B per depth step, a
//      broadcast and 256 contiguous bytes per warp, so no bank conflicts). Slices are
//      double-buffered in shared memory (k-major), the next slice is fetched into registers
//      while the current one is multiplied (gemm.cu's scheme). Each loader picks
//      the thread-to-element map that makes its global reads coalesced (KFast: 16 threads walk
//      the depth of one row, RowFast: 64 threads walk the rows at one depth) and decodes its
//      indices once per thread (RowFast: its column is fixed), then steps the depth digits.
//      backward_weight's depth (every pixel of the batch) is split over blockIdx.z when the
//      output alone has too few tiles to fill the GPU; the partial dw go to a workspace and a
//      second kernel adds them in a fixed order, so results are deterministic (no atomics).
//   db: one block per channel, double accumulation, a fixed-order tree.
//
// Known costs: per depth step a warp does 512 FMA (4 SM-cycles of FMA issue on sm_80/90)
// for 2 shared-memory float4 loads (~3 cycles of shared bandwidth: a 32-byte
// broadcast and 256 contiguous bytes), so the main loop should be FMA-bound, not shared-memory
// bound. The gathers decode their depth index once per thread and then step it per slice with
// adds and carries (Digits, PixelCursor), so no division is left in the main loop. A
// 128 x 128 tile with 8 x 8 per thread, as gemm.cu uses, is the step after that when K/g and the
// pixels are both large. (Predictions: no GPU was at hand when this was written.)
//
// Napkin math: forward does 2 N K OH OW C/g R S FLOP; a ResNet 3x3 layer N=32, C=K=128, 28x28
// is 7.4 GFLOP over 13 MB of x and y: compute-bound (~0.11 ms at 67 TFLOP/s fp32).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <numeric>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/conv.cuh"
#include "cuda/device_util.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {

// ConvShape plus the per-group sizes the kernels index with (all checked to fit an int).
struct Geom {
  int64_t n;
  int c, h, w, k, r, s, oh, ow;
  int sh, sw, ph, pw, dh, dw;
  int groups, cg, kg;
  int rs, hw, ohw;  // R*S, H*W, OH*OW
  int crs, krs;     // C/g*R*S, K/g*R*S
};

Geom make_geom(const ConvShape& s) {
  FASTDL_CHECK(s.groups >= 1 && s.c % s.groups == 0 && s.k % s.groups == 0, ValueError,
               "conv2d: groups=", s.groups, " must be >= 1 and divide C=", s.c, " and K=", s.k);
  FASTDL_CHECK(s.stride_h >= 1 && s.stride_w >= 1 && s.dil_h >= 1 && s.dil_w >= 1 &&
                   s.pad_h >= 0 && s.pad_w >= 0,
               ValueError, "conv2d: stride and dilation must be >= 1 and padding >= 0");
  const int64_t cg = s.c / s.groups, kg = s.k / s.groups, rs = int64_t(s.r) * s.s;
  constexpr int64_t kIdx = int64_t(1) << 30;  // headroom: sums of two such values stay ints
  const int64_t extents[] = {int64_t(s.h) + 2 * s.pad_h, int64_t(s.w) + 2 * s.pad_w,
                             int64_t(s.dil_h) * s.r, int64_t(s.dil_w) * s.s,
                             int64_t(s.oh) * s.stride_h, int64_t(s.ow) * s.stride_w,
                             int64_t(s.h) * s.w, int64_t(s.oh) * s.ow, cg * rs, kg * rs};
  for (const int64_t e : extents)
    FASTDL_CHECK(e < kIdx, ValueError, "conv2d: a per-image extent (", e,
                 ") exceeds the CUDA kernels' limit of ", kIdx);
  FASTDL_CHECK(s.groups <= 65535, ValueError, "conv2d: groups=", s.groups,
               " exceeds the CUDA limit of 65535");
  Geom g{};
  g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.k = s.k, g.r = s.r, g.s = s.s;
  g.oh = s.oh, g.ow = s.ow;
  g.sh = s.stride_h, g.sw = s.stride_w, g.ph = s.pad_h, g.pw = s.pad_w;
  g.dh = s.dil_h, g.dw = s.dil_w;
  g.groups = s.groups, g.cg = int(cg), g.kg = int(kg);
  g.rs = int(rs), g.hw = s.h * s.w, g.ohw = s.oh * s.ow;
  g.crs = int(cg * rs), g.krs = int(kg * rs);
  return g;
}

// Reference launches: a grid-stride loop over `total` outputs.
constexpr int kRefThreads = 256;

// ---------------------------------------------------------------------------------------------
// 1. Reference kernels (forward and the two backward passes side by side)
// ---------------------------------------------------------------------------------------------

__global__ void conv_forward_reference_kernel(float* y, const float* x, const float* w,
                                              const float* b, Geom g) {
  const int64_t total = g.n * g.k * g.ohw;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(i % g.ow), oh = int(i / g.ow % g.oh), k = int(i / g.ohw % g.k);
    const int64_t n = i / g.ohw / g.k;
    const int grp = k / g.kg;
    double acc = 0.0;
    for (int c = 0; c < g.cg; ++c)
      for (int r = 0; r < g.r; ++r)
        for (int s = 0; s < g.s; ++s) {
          const int ih = oh * g.sh - g.ph + r * g.dh, iw = ow * g.sw - g.pw + s * g.dw;
          if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
          const int64_t xi = ((n * g.c + grp * g.cg + c) * g.h + ih) * g.w + iw;
          const int64_t wi = ((int64_t(k) * g.cg + c) * g.r + r) * g.s + s;
          acc += double(x[xi]) * double(w[wi]);
        }
    y[i] = float(acc + (b ? double(b[k]) : 0.0));
  }
}

__global__ void conv_backward_data_reference_kernel(float* dx, const float* dy, const float* w,
                                                    Geom g) {
  const int64_t total = g.n * g.c * g.hw;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int iw = int(i % g.w), ih = int(i / g.w % g.h), c = int(i / g.hw % g.c);
    const int64_t n = i / g.hw / g.c;
    const int grp = c / g.cg, cl = c - grp * g.cg;
    double acc = 0.0;
    for (int k = grp * g.kg; k < (grp + 1) * g.kg; ++k)
      for (int r = 0; r < g.r; ++r)
        for (int s = 0; s < g.s; ++s) {
          const int th = ih + g.ph - r * g.dh, tw = iw + g.pw - s * g.dw;
          if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) continue;
          const int oh = th / g.sh, ow = tw / g.sw;
          if (oh >= g.oh || ow >= g.ow) continue;
          const int64_t yi = ((n * g.k + k) * g.oh + oh) * g.ow + ow;
          const int64_t wi = ((int64_t(k) * g.cg + cl) * g.r + r) * g.s + s;
          acc += double(dy[yi]) * double(w[wi]);
        }
    dx[i] = float(acc);
  }
}

// Threads [0, K*C/g*R*S) compute dw; the next K threads compute db (when it is wanted).
__global__ void conv_backward_weight_reference_kernel(float* dw, float* db, const float* dy,
                                                      const float* x, Geom g) {
  const int64_t nw = int64_t(g.k) * g.crs;
  const int64_t total = nw + (db ? g.k : 0);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    if (i >= nw) {
      const int k = int(i - nw);
      for (int64_t n = 0; n < g.n; ++n)
        for (int p = 0; p < g.ohw; ++p) acc += double(dy[(n * g.k + k) * g.ohw + p]);
      db[k] = float(acc);
      continue;
    }
    const int s = int(i % g.s), r = int(i / g.s % g.r), cl = int(i / g.rs % g.cg);
    const int k = int(i / g.crs);
    const int grp = k / g.kg;
    for (int64_t n = 0; n < g.n; ++n)
      for (int oh = 0; oh < g.oh; ++oh)
        for (int ow = 0; ow < g.ow; ++ow) {
          const int ih = oh * g.sh - g.ph + r * g.dh, iw = ow * g.sw - g.pw + s * g.dw;
          if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
          const int64_t xi = ((n * g.c + grp * g.cg + cl) * g.h + ih) * g.w + iw;
          const int64_t yi = ((n * g.k + k) * g.oh + oh) * g.ow + ow;
          acc += double(dy[yi]) * double(x[xi]);
        }
    dw[i] = float(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. The implicit GEMM
// ---------------------------------------------------------------------------------------------

constexpr int kBM = 64;      // rows of C per block
constexpr int kBN = 64;      // columns of C per block
constexpr int kBK = 16;      // depth per slice
constexpr int kThreads = 256;
constexpr int kPad = 4;      // keeps float4 alignment; makes KFast stores 2-way, not 16-way
constexpr int kLoads = kBM * kBK / kThreads;  // elements of each tile one thread loads per slice
static_assert(kBM == kBN && kBN * kBK / kThreads == kLoads, "one loader shape for A and B");
static_assert((kBM / 4) * (kBN / 4) == kThreads, "a 4 x 4 register tile per thread");

using Tile = float[kBK][kBM + kPad];  // s[depth][row or column]

// Thread-to-element maps of a slice load; element i of thread t goes to s[kk(i)][row(i)].
struct KFast {  // 16 consecutive threads read 16 consecutive depths of one row
  __device__ static __forceinline__ int kk(int) { return int(threadIdx.x) % kBK; }
  __device__ static __forceinline__ int row(int i) {
    return int(threadIdx.x) / kBK + i * (kThreads / kBK);
  }
};
struct RowFast {  // 64 consecutive threads read 64 consecutive rows (or columns) at one depth
  __device__ static __forceinline__ int kk(int i) {
    return int(threadIdx.x) / kBM + i * (kThreads / kBM);
  }
  __device__ static __forceinline__ int row(int) { return int(threadIdx.x) % kBM; }
};

template <class Map>
__device__ __forceinline__ void store_tile(Tile& s, const float (&v)[kLoads]) {
#pragma unroll
  for (int i = 0; i < kLoads; ++i) s[Map::kk(i)][Map::row(i)] = v[i];
}

__device__ __forceinline__ bool inside(int i, int n) { return unsigned(i) < unsigned(n); }

// A depth index q < 2^30 as digits (hi, mid, lo) in radices (., m, l) -- (c, r, s) of a filter
// tap, say -- stepped by kBK per slice with adds and carries: the gathers walk the depth slice
// by slice, and two divisions per element and slice would cost about as many instructions as
// the slice's multiply-adds.
struct Digits {
  int hi = 0, mid = 0, lo = 0;
  __device__ Digits() = default;
  __device__ Digits(int q, int m, int l) {
    const int rem = q % (m * l);
    hi = q / (m * l), mid = rem / l, lo = rem % l;
  }
  // += step (itself digits of a value, each below its radix)
  __device__ void add(const Digits& step, int m, int l) {
    lo += step.lo;
    int carry = lo >= l;
    lo -= carry ? l : 0;
    mid += step.mid + carry;
    carry = mid >= m;
    mid -= carry ? m : 0;
    hi += step.hi + carry;
  }
};

// -- forward: rows = filters of the group, cols = output pixels, depth = (c, r, s) ------------
struct ForwardOp {
  Geom g;
  float* y;
  const float* x;
  const float* w;
  const float* b;

  __device__ int rows() const { return g.kg; }
  __device__ int64_t cols() const { return g.n * g.ohw; }

  struct ALoader {  // w[grp*kg + m][q]: contiguous in q
    using Map = KFast;
    const float* base;
    int rows_left;
    __device__ ALoader(const ForwardOp& op, int grp, int tile_m, int64_t, int64_t)
        : base(op.w + (int64_t(grp) * op.g.kg + tile_m) * op.g.crs),
          rows_left(op.g.kg - tile_m) {}
    __device__ void load(const ForwardOp& op, int64_t q0, int64_t q_end,
                         float (&v)[kLoads]) const {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        const int row = Map::row(i);
        const int64_t q = q0 + Map::kk(i);
        v[i] = row < rows_left && q < q_end ? __ldg(base + int64_t(row) * op.g.crs + q) : 0.0f;
      }
    }
  };

  struct BLoader {  // x at (pixel's image, c, ih, iw): this thread's pixel is fixed (RowFast)
    using Map = RowFast;
    const float* xb = nullptr;  // the pixel's image and group; null past the last pixel
    int ih0 = 0, iw0 = 0;
    Digits at[kLoads];  // (c, r, s) of the next slice's depths q0 + kk(i)
    Digits step;        // kBK as (c, r, s)
    __device__ BLoader(const ForwardOp& op, int grp, int, int64_t tile_n, int64_t) {
      const Geom& g = op.g;
      const int64_t p = tile_n + Map::row(0);
      if (p >= op.cols() || g.crs == 0) return;
      const int64_t n = p / g.ohw;
      const int pix = int(p - n * g.ohw);
      const int oh = pix / g.ow, ow = pix - oh * g.ow;
      xb = op.x + (n * g.c + int64_t(grp) * g.cg) * g.hw;
      ih0 = oh * g.sh - g.ph;
      iw0 = ow * g.sw - g.pw;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) at[i] = Digits(Map::kk(i), g.r, g.s);  // splits == 1: q0 = 0
      step = Digits(kBK, g.r, g.s);
    }
    // Called once per slice, in order: q0 = 0, kBK, 2 kBK, ...
    __device__ void load(const ForwardOp& op, int64_t q0, int64_t q_end, float (&v)[kLoads]) {
      const Geom& g = op.g;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        float val = 0.0f;
        if (xb && q0 + Map::kk(i) < q_end) {
          const int ih = ih0 + at[i].mid * g.dh, iw = iw0 + at[i].lo * g.dw;
          if (inside(ih, g.h) && inside(iw, g.w))
            val = __ldg(xb + int64_t(at[i].hi) * g.hw + ih * g.w + iw);
        }
        v[i] = val;
        at[i].add(step, g.r, g.s);
      }
    }
  };

  __device__ int64_t depth() const { return g.crs; }
  __device__ void store(int grp, int, int row, int64_t col, float v) const {
    const int64_t n = col / g.ohw;
    const int pix = int(col - n * g.ohw);
    const int k = grp * g.kg + row;
    y[(n * g.k + k) * g.ohw + pix] = v + (b ? __ldg(b + k) : 0.0f);
  }
};

// -- backward_data, one stride phase at a time: rows = input channels of the group, cols = the
//    input pixels with ih % stride_h == a and iw % stride_w == b, depth = (k, the taps r, s that
//    reach such pixels). Tap r reaches row ih iff stride_h divides ih + pad_h - r dil_h, which
//    depends only on ih % stride_h: those r are r0, r0 + step, ... (an arithmetic progression,
//    step = stride_h / gcd(stride_h, dil_h)), so every multiply-add the GEMM does is a real one.
struct Phase {
  int a, b;              // first row and column of the phase
  int hp, wp;            // its rows and columns: ceil((H - a) / stride_h), likewise
  int r0, rstep, nr;     // taps along R: r0 + i * rstep, i < nr
  int s0, sstep, ns;     // taps along S
};

struct BackwardDataOp {
  Geom g;
  Phase ph;
  float* dx;
  const float* dy;
  const float* w;

  __device__ int rows() const { return g.cg; }
  __device__ int64_t cols() const { return g.n * ph.hp * ph.wp; }
  __device__ int64_t depth() const { return int64_t(g.kg) * ph.nr * ph.ns; }


  // The tap of digits (k, ri, si): filter k, rows r0 + ri * rstep, columns s0 + si * sstep.
  __device__ __forceinline__ int tap_r(const Digits& d) const { return ph.r0 + d.mid * ph.rstep; }
  __device__ __forceinline__ int tap_s(const Digits& d) const { return ph.s0 + d.lo * ph.sstep; }

  struct ALoader {  // w^T: element (c, (k, r, s)) = w[grp*kg + k][c][r][s]
    using Map = KFast;
    const float* base;  // w of the group's first filter, channel tile_m
    int rows_left;
    Digits at, step;    // (k, ri, si) of this thread's depth q0 + kk (the same for every i)
    __device__ ALoader(const BackwardDataOp& op, int grp, int tile_m, int64_t, int64_t)
        : base(op.w + (int64_t(grp) * op.g.kg * op.g.cg + tile_m) * op.g.rs),
          rows_left(op.g.cg - tile_m) {
      if (op.ph.nr * op.ph.ns == 0) return;  // no taps: depth 0, never read
      at = Digits(Map::kk(0), op.ph.nr, op.ph.ns);  // splits == 1: q0 = 0
      step = Digits(kBK, op.ph.nr, op.ph.ns);
    }
    // Called once per slice, in order: q0 = 0, kBK, 2 kBK, ...
    __device__ void load(const BackwardDataOp& op, int64_t q0, int64_t q_end,
                         float (&v)[kLoads]) {
      const Geom& g = op.g;
      const bool in = q0 + Map::kk(0) < q_end;
      const float* p = base + int64_t(at.hi) * g.cg * g.rs + op.tap_r(at) * g.s + op.tap_s(at);
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        const int row = Map::row(i);
        v[i] = in && row < rows_left ? __ldg(p + int64_t(row) * g.rs) : 0.0f;
      }
      at.add(step, op.ph.nr, op.ph.ns);
    }
  };

  struct BLoader {  // dy at the (oh, ow) that tap (r, s) of this input pixel maps to, if inside
    using Map = RowFast;
    const float* dyb = nullptr;  // dy of the pixel's image and group; null past the end
    int th0 = 0, tw0 = 0;        // ih + pad_h, iw + pad_w
    Digits at[kLoads], step;     // (k, ri, si) of the next slice's depths q0 + kk(i)
    __device__ BLoader(const BackwardDataOp& op, int grp, int, int64_t tile_n, int64_t) {
      const Geom& g = op.g;
      const int64_t p = tile_n + Map::row(0);
      if (p >= op.cols() || op.ph.nr * op.ph.ns == 0) return;
      const int plane = op.ph.hp * op.ph.wp;
      const int64_t n = p / plane;
      const int pix = int(p - n * plane), i = pix / op.ph.wp, j = pix - i * op.ph.wp;
      dyb = op.dy + (n * g.k + int64_t(grp) * g.kg) * g.ohw;
      th0 = op.ph.a + i * g.sh + g.ph;
      tw0 = op.ph.b + j * g.sw + g.pw;
#pragma unroll
      for (int e = 0; e < kLoads; ++e) at[e] = Digits(Map::kk(e), op.ph.nr, op.ph.ns);
      step = Digits(kBK, op.ph.nr, op.ph.ns);
    }
    __device__ void load(const BackwardDataOp& op, int64_t q0, int64_t q_end,
                         float (&v)[kLoads]) {
      const Geom& g = op.g;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        float val = 0.0f;
        if (dyb && q0 + Map::kk(i) < q_end) {
          // multiples of the strides by construction of the phase's taps
          const int th = th0 - op.tap_r(at[i]) * g.dh, tw = tw0 - op.tap_s(at[i]) * g.dw;
          if (th >= 0 && tw >= 0) {
            const int oh = th / g.sh, ow = tw / g.sw;
            if (oh < g.oh && ow < g.ow)
              val = __ldg(dyb + int64_t(at[i].hi) * g.ohw + oh * g.ow + ow);
          }
        }
        v[i] = val;
        at[i].add(step, op.ph.nr, op.ph.ns);
      }
    }
  };

  __device__ void store(int grp, int, int row, int64_t col, float v) const {
    const int plane = ph.hp * ph.wp;
    const int64_t n = col / plane;
    const int pix = int(col - n * plane), i = pix / ph.wp, j = pix - i * ph.wp;
    dx[(n * g.c + int64_t(grp) * g.cg + row) * g.hw + (ph.a + i * g.sh) * g.w + ph.b +
       j * g.sw] = v;
  }
};

// Pixel q of the batch as (image n, row oh, column ow), advanced by kBK per slice with adds and
// carries: backward_weight's depth is every pixel, and decoding it by division (an int64 one
// for n) each slice would cost more instructions than the slice's multiply-adds.
struct PixelCursor {
  int64_t q, n, dn;  // dn, doh, dow: kBK as (images, rows, columns)
  int oh = 0, ow = 0, doh = 0, dow = 0;
  __device__ PixelCursor(const Geom& g, int64_t first) : q(first), n(0), dn(0) {
    if (g.ohw == 0) return;  // no pixels: depth 0, never read
    n = q / g.ohw;
    const int pix = int(q - n * g.ohw);
    oh = pix / g.ow, ow = pix - oh * g.ow;
    dn = kBK / g.ohw;
    const int rem = kBK - int(dn) * g.ohw;
    doh = rem / g.ow, dow = rem - doh * g.ow;
  }
  __device__ void advance(const Geom& g) {
    q += kBK;
    ow += dow;
    int carry = ow >= g.ow;
    ow -= carry ? g.ow : 0;
    oh += doh + carry;
    carry = oh >= g.oh;
    oh -= carry ? g.oh : 0;
    n += dn + carry;
  }
};

// -- backward_weight: rows = filters of the group, cols = (c, r, s), depth = every pixel -------
struct BackwardWeightOp {
  Geom g;
  float* out;  // dw, or the (splits, K, C/g*R*S) workspace of partial sums
  const float* dy;
  const float* x;

  __device__ int rows() const { return g.kg; }
  __device__ int64_t cols() const { return g.crs; }
  __device__ int64_t depth() const { return g.n * g.ohw; }

  struct ALoader {  // dy[n][grp*kg + m][pix]: this thread's depth (pixel) is fixed per slice
    using Map = KFast;
    int64_t first_row;  // (grp*kg + tile_m) * OH*OW
    int rows_left;
    PixelCursor at;
    __device__ ALoader(const BackwardWeightOp& op, int grp, int tile_m, int64_t, int64_t q_begin)
        : first_row((int64_t(grp) * op.g.kg + tile_m) * op.g.ohw),
          rows_left(op.g.kg - tile_m),
          at(op.g, q_begin + Map::kk(0)) {}
    // Called once per slice, in order: q0 = q_begin, q_begin + kBK, ...
    __device__ void load(const BackwardWeightOp& op, int64_t, int64_t q_end, float (&v)[kLoads]) {
      const Geom& g = op.g;
      const float* p = nullptr;
      if (at.q < q_end) p = op.dy + at.n * g.k * g.ohw + first_row + at.oh * g.ow + at.ow;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        const int row = Map::row(i);
        v[i] = p && row < rows_left ? __ldg(p + int64_t(row) * g.ohw) : 0.0f;
      }
      at.advance(g);
    }
  };

  struct BLoader {  // x at (pixel, c, r, s): the columns are fixed per thread, decoded once
    using Map = KFast;
    int64_t coff[kLoads];  // (grp*cg + c) * H*W, or -1 past the last column
    int roff[kLoads], soff[kLoads];  // r * dil_h, s * dil_w
    PixelCursor at;
    __device__ BLoader(const BackwardWeightOp& op, int grp, int, int64_t tile_n, int64_t q_begin)
        : at(op.g, q_begin + Map::kk(0)) {
      const Geom& g = op.g;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        const int64_t col = tile_n + Map::row(i);
        coff[i] = -1, roff[i] = 0, soff[i] = 0;
        if (col < g.crs) {
          const int ci = int(col), c = ci / g.rs, rem = ci - c * g.rs, r = rem / g.s;
          coff[i] = (int64_t(grp) * g.cg + c) * g.hw;
          roff[i] = r * g.dh;
          soff[i] = (rem - r * g.s) * g.dw;
        }
      }
    }
    __device__ void load(const BackwardWeightOp& op, int64_t, int64_t q_end, float (&v)[kLoads]) {
      const Geom& g = op.g;
      const float* xb = at.q < q_end ? op.x + at.n * g.c * g.hw : nullptr;
      const int ih0 = at.oh * g.sh - g.ph, iw0 = at.ow * g.sw - g.pw;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        const int ih = ih0 + roff[i], iw = iw0 + soff[i];
        v[i] = xb && coff[i] >= 0 && inside(ih, g.h) && inside(iw, g.w)
                   ? __ldg(xb + coff[i] + ih * g.w + iw)
                   : 0.0f;
      }
      at.advance(g);
    }
  };

  __device__ void store(int grp, int split, int row, int64_t col, float v) const {
    out[((int64_t(split) * g.k) + int64_t(grp) * g.kg + row) * g.crs + col] = v;
  }
};

// C tile (blockIdx.y, blockIdx.x) of group blockIdx.z / splits over depth chunk blockIdx.z %
// splits. Two blocks per SM (as gemm.cu): 91-101 registers and no spills on sm_90, where a
// bound of three blocks (85 registers) makes backward_data spill. Prefetch slice t+1 into registers, multiply slice t from buffer t%2, store slice t+1
// into the other buffer, one barrier per slice.
template <class Op>
__global__ void __launch_bounds__(kThreads, 2)
conv_gemm_kernel(const Op op, int splits, int64_t chunk) {
  using ALoader = typename Op::ALoader;
  using BLoader = typename Op::BLoader;
  __shared__ __align__(16) Tile as[2];
  __shared__ __align__(16) Tile bs[2];
  const int grp = int(blockIdx.z) / splits, split = int(blockIdx.z) % splits;
  const int tile_m = int(blockIdx.y) * kBM;
  const int64_t tile_n = int64_t(blockIdx.x) * kBN;
  const int64_t q_begin = int64_t(split) * chunk;
  const int64_t q_end = min(op.depth(), q_begin + chunk);

  ALoader la(op, grp, tile_m, tile_n, q_begin);
  BLoader lb(op, grp, tile_m, tile_n, q_begin);
  float va[kLoads], vb[kLoads];
  la.load(op, q_begin, q_end, va);
  lb.load(op, q_begin, q_end, vb);
  store_tile<typename ALoader::Map>(as[0], va);
  store_tile<typename BLoader::Map>(bs[0], vb);
  __syncthreads();

  const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  int cur = 0;
  for (int64_t q0 = q_begin; q0 < q_end; q0 += kBK) {
    const bool more = q0 + kBK < q_end;
    if (more) {  // global loads in flight while this slice is multiplied
      la.load(op, q0 + kBK, q_end, va);
      lb.load(op, q0 + kBK, q_end, vb);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&as[cur][kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&bs[cur][kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (more) {
      store_tile<typename ALoader::Map>(as[cur ^ 1], va);
      store_tile<typename BLoader::Map>(bs[cur ^ 1], vb);
    }
    __syncthreads();  // slice t+1 is visible to all, and nobody still reads buffer cur
    cur ^= 1;
  }

  const int rows = op.rows();
  const int64_t cols = op.cols();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = tile_m + ty * 4 + i;
    if (row >= rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = tile_n + tx * 4 + j;
      if (col < cols) op.store(grp, split, row, col, acc[i][j]);
    }
  }
}

// dw[i] = sum over splits of ws[split][i], in split order.
__global__ void sum_splits_kernel(float* dw, const float* ws, int64_t count, int splits) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) acc += ws[int64_t(s) * count + i];
    dw[i] = acc;
  }
}

// db[k] = sum over n and pixels of dy[n][k][.]: one block per channel, double, fixed tree.
constexpr int kBiasThreads = 256;
__global__ void __launch_bounds__(kBiasThreads)
bias_grad_kernel(float* db, const float* dy, int64_t n, int k, int ohw) {
  __shared__ double smem[kBiasThreads];
  const int ch = int(blockIdx.x);
  double acc = 0.0;
  for (int64_t img = 0; img < n; ++img) {
    const float* p = dy + (img * k + ch) * ohw;
    for (int i = int(threadIdx.x); i < ohw; i += kBiasThreads) acc += double(__ldg(p + i));
  }
  acc = block_sum_double<kBiasThreads>(acc, smem);
  if (threadIdx.x == 0) db[ch] = float(acc);
}

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

template <class Op>
void launch_gemm(const Op& op, int rows, int64_t cols, int groups, int splits, int64_t chunk,
                 cudaStream_t stream) {
  const int64_t gx = (cols + kBN - 1) / kBN, gy = (int64_t(rows) + kBM - 1) / kBM;
  FASTDL_CHECK(gx <= INT_MAX && gy <= 65535 && int64_t(groups) * splits <= 65535, ValueError,
               "conv2d: the implicit GEMM (", rows, " x ", cols, ", ", groups,
               " groups) needs a larger grid than CUDA allows");
  const dim3 grid(unsigned(gx), unsigned(gy), unsigned(groups * splits));
  conv_gemm_kernel<Op><<<grid, kThreads, 0, stream>>>(op, splits, chunk);
  CUDA_CHECK_LAUNCH();
}

unsigned ref_grid(int64_t total) {
  return unsigned(std::clamp<int64_t>((total + kRefThreads - 1) / kRefThreads, 1, 1 << 16));
}

int sm_count() {
  int device = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return std::max(sms, 1);
}

}  // namespace

void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& sh,
                    cudaStream_t stream) {
  const Geom g = make_geom(sh);
  const int64_t cols = g.n * g.ohw;
  if (cols == 0 || g.kg == 0) return;
  launch_gemm(ForwardOp{g, y, x, w, b}, g.kg, cols, g.groups, 1, std::max(g.crs, 1), stream);
}

namespace {

// The taps t in [0, n) with (first + pad - t * dil) % stride == 0: (t0, step, count).
void phase_taps(int first, int pad, int dil, int stride, int n, int& t0, int& step, int& count) {
  step = stride / std::gcd(stride, dil);
  t0 = 0;
  while (t0 < std::min(n, step) && (first + pad - t0 * dil) % stride != 0) ++t0;
  count = t0 < std::min(n, step) ? (n - 1 - t0) / step + 1 : 0;
}

}  // namespace

void conv2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& sh,
                          cudaStream_t stream) {
  const Geom g = make_geom(sh);
  if (g.n * g.hw == 0 || g.cg == 0) return;
  // One GEMM per stride phase (a, b): stride 1 is one phase with every tap.
  for (int a = 0; a < std::min(g.sh, g.h); ++a)
    for (int b = 0; b < std::min(g.sw, g.w); ++b) {
      Phase ph{};
      ph.a = a, ph.b = b;
      ph.hp = (g.h - a + g.sh - 1) / g.sh, ph.wp = (g.w - b + g.sw - 1) / g.sw;
      phase_taps(a, g.ph, g.dh, g.sh, g.r, ph.r0, ph.rstep, ph.nr);
      phase_taps(b, g.pw, g.dw, g.sw, g.s, ph.s0, ph.sstep, ph.ns);
      const int64_t depth = int64_t(g.kg) * ph.nr * ph.ns;
      launch_gemm(BackwardDataOp{g, ph, dx, dy, w}, g.cg, g.n * ph.hp * ph.wp, g.groups, 1,
                  std::max<int64_t>(depth, 1), stream);
    }
}

void conv2d_backward_weight(float* dw, float* db, const float* dy, const float* x,
                            const ConvShape& sh, cudaStream_t stream) {
  const Geom g = make_geom(sh);
  if (db && g.k > 0) {
    bias_grad_kernel<<<unsigned(g.k), kBiasThreads, 0, stream>>>(db, dy, g.n, g.k, g.ohw);
    CUDA_CHECK_LAUNCH();
  }
  const int64_t count = int64_t(g.k) * g.crs;
  if (count == 0) return;
  // Split the depth (all N*OH*OW pixels) when the output's tiles alone leave SMs idle: aim for
  // ~4 blocks per SM, each chunk at least 4 slices deep.
  const int64_t depth = g.n * g.ohw;
  const int64_t tiles = ((g.crs + kBN - 1) / kBN) * ((g.kg + kBM - 1) / kBM) * g.groups;
  const int64_t slices = (depth + kBK - 1) / kBK;
  const int64_t target = 4 * int64_t(sm_count());
  int64_t splits = 1;
  if (tiles < target)
    splits = std::clamp<int64_t>(std::min((target + tiles - 1) / tiles, slices / 4), 1,
                                 std::min<int64_t>(256, 65535 / g.groups));
  const int64_t chunk = std::max<int64_t>(1, (slices + splits - 1) / splits) * kBK;
  splits = std::max<int64_t>(1, (depth + chunk - 1) / chunk);  // no empty chunk
  if (splits == 1) {
    launch_gemm(BackwardWeightOp{g, dw, dy, x}, g.kg, g.crs, g.groups, 1, chunk, stream);
    return;
  }
  DeviceBuffer<float> ws(splits * count, stream);
  launch_gemm(BackwardWeightOp{g, ws.p, dy, x}, g.kg, g.crs, g.groups, int(splits), chunk,
              stream);
  sum_splits_kernel<<<grid_for(count, 1), kMapThreads, 0, stream>>>(dw, ws.p, count, int(splits));
  CUDA_CHECK_LAUNCH();
}

void conv2d_forward_reference(float* y, const float* x, const float* w, const float* b,
                              const ConvShape& sh, cudaStream_t stream) {
  const Geom g = make_geom(sh);
  const int64_t total = g.n * g.k * g.ohw;
  if (total == 0) return;
  conv_forward_reference_kernel<<<ref_grid(total), kRefThreads, 0, stream>>>(y, x, w, b, g);
  CUDA_CHECK_LAUNCH();
}

void conv2d_backward_data_reference(float* dx, const float* dy, const float* w,
                                    const ConvShape& sh, cudaStream_t stream) {
  const Geom g = make_geom(sh);
  const int64_t total = g.n * g.c * g.hw;
  if (total == 0) return;
  conv_backward_data_reference_kernel<<<ref_grid(total), kRefThreads, 0, stream>>>(dx, dy, w, g);
  CUDA_CHECK_LAUNCH();
}

void conv2d_backward_weight_reference(float* dw, float* db, const float* dy, const float* x,
                                      const ConvShape& sh, cudaStream_t stream) {
  const Geom g = make_geom(sh);
  const int64_t total = int64_t(g.k) * g.crs + (db ? g.k : 0);
  if (total == 0) return;
  conv_backward_weight_reference_kernel<<<ref_grid(total), kRefThreads, 0, stream>>>(dw, db, dy,
                                                                                     x, g);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fastdl::cuda
