// pool.cu: 2-D max, average and adaptive average pooling on the GPU (float32, NCHW), forward
// and backward.
//
// Shapes: x / dx (N, C, H, W) seen as P = N*C independent H x W planes, y / dy / argmax
// (N, C, OH, OW); OH by PyTorch's rule in floor or ceil mode (bindings/args.cpp, as the CPU's),
// likewise OW. PyTorch's rules (the bindings check pad <= kernel / 2 and, with dilation, that
// every window holds a real cell):
//   max       window rows oh s - p + r d (r < k) inside [0, H); padded cells are -inf.
//             The scan keeps the first strict maximum in row-major order and takes any NaN
//             (PyTorch's `val > max || isnan(val)`: a NaN is the max, the last NaN wins);
//             argmax = ih * W + iw of the winner. Backward: dx = 0, dx[plane][argmax] += dy.
//   avg       the divisor (PoolDivisor): the window clipped to the padded extent
//             [oh s - p, min(oh s - p + k, H + p)) (count_include_pad=True; fewer than k x k
//             cells only where ceil mode runs a window past the padding), or clipped to the
//             image (count_include_pad=False), or divisor_override; the sum over the image.
//             Backward gathers: dx[ih, iw] = sum over the windows holding (ih, iw) of
//             dy / divisor, written (=).
//   adaptive  output row i averages input rows [floor(i H / OH), ceil((i + 1) H / OH)),
//             columns alike; backward gathers over the output cells whose window holds the
//             input cell (those i in [floor(ih OH / H), ceil((ih + 1) OH / H)), re-checked
//             against the forward's window so the two can never disagree).
// max_pool2d_backward's argmax comes from the caller: every value is checked on the device
// (an integer atomicMin records the first bad position) and the launcher, which synchronises
// for it, throws ValueError instead of writing out of bounds.
//
// Variants: each kernel is already the plain one-thread-per-output (forward) or per-input
// (gather backward) loop, so it is its own reference; the max backward scatters with float
// atomicAdd, since argmax alone does not say which windows overlap: where windows overlap
// (stride < kernel) the order of the additions, and so the last bits, can vary between runs.
//
// Napkin math: memory-bound. The forward reads each input (k/s)^2 times, mostly from L1/L2,
// and DRAM sees ~4 bytes per input + 4 (12 for max: y and int64 argmax) per output: a
// (64, 64, 112, 112) 3x3/2 max pool moves ~270 MB, ~0.1 ms at 3 TB/s.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/pool.cuh"

namespace fastdl::cuda {

using std::int64_t;
using u64 = unsigned long long;

namespace {

constexpr int kThreads = 256;
constexpr u64 kNoBad = ~u64(0);

unsigned grid_of(int64_t total) { return grid_for(total, 1, kThreads); }

#define FASTDL_GRID_STRIDE(i, total)                                                        \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (total);             \
       i += int64_t(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------------------------------------
// max
// ---------------------------------------------------------------------------------------------

// The first cell of a window starting at `start` with cells d apart that lies at or after 0.
__device__ __forceinline__ int first_cell(int start, int d) {
  return start >= 0 ? start : start + (-start + d - 1) / d * d;
}

// kDilated: cells s.dh / s.dw apart; false keeps the dilation-1 loops' constant steps.
template <bool kDilated>
__global__ void __launch_bounds__(kThreads)
max_pool_forward_kernel(float* __restrict__ y, int64_t* __restrict__ argmax,
                        const float* __restrict__ x, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  const int dh = kDilated ? s.dh : 1, dw = kDilated ? s.dw : 1;
  FASTDL_GRID_STRIDE(i, s.planes * ohw) {
    const int64_t plane = i / ohw;
    const int o = int(i - plane * ohw), oh = o / s.ow, ow = o - oh * s.ow;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int h1 = min(h0 + (s.kh - 1) * dh + 1, s.h), w1 = min(w0 + (s.kw - 1) * dw + 1, s.w);
    const int hs = kDilated ? first_cell(h0, dh) : max(h0, 0);
    const int ws = kDilated ? first_cell(w0, dw) : max(w0, 0);
    const float* xp = x + plane * hw;
    float best = -INFINITY;
    int arg = hs * s.w + ws;
    for (int ih = hs; ih < h1; ih += dh)
      for (int iw = ws; iw < w1; iw += dw) {
        const float v = __ldg(xp + ih * s.w + iw);
        if (v > best || isnan(v)) {
          best = v;
          arg = ih * s.w + iw;
        }
      }
    y[i] = best;
    argmax[i] = arg;
  }
}

__global__ void __launch_bounds__(kThreads)
max_pool_backward_kernel(float* dx, u64* bad, const float* __restrict__ dy,
                         const int64_t* __restrict__ argmax, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  FASTDL_GRID_STRIDE(i, s.planes * ohw) {
    const int64_t a = argmax[i];
    if (a < 0 || a >= hw) {
      atomicMin(bad, u64(i));
      continue;
    }
    atomicAdd(dx + i / ohw * hw + a, dy[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// avg
// ---------------------------------------------------------------------------------------------

// The divisor of the window whose padded extent is [h0, h1) x [w0, w1) (h1 <= H + p).
__device__ __forceinline__ float avg_divisor(const PoolShape& s, int h0, int h1, int w0, int w1) {
  if (s.divisor_mode == PoolDivisor::fixed) return float(s.divisor);
  if (s.divisor_mode == PoolDivisor::real)
    return float((min(h1, s.h) - max(h0, 0)) * (min(w1, s.w) - max(w0, 0)));
  return float((h1 - h0) * (w1 - w0));
}

__global__ void __launch_bounds__(kThreads)
avg_pool_forward_kernel(float* __restrict__ y, const float* __restrict__ x, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  FASTDL_GRID_STRIDE(i, s.planes * ohw) {
    const int64_t plane = i / ohw;
    const int o = int(i - plane * ohw), oh = o / s.ow, ow = o - oh * s.ow;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int h1 = min(h0 + s.kh, s.h + s.ph), w1 = min(w0 + s.kw, s.w + s.pw);
    const float divisor = avg_divisor(s, h0, h1, w0, w1);
    const int hs = max(h0, 0), ws = max(w0, 0), he = min(h1, s.h), we = min(w1, s.w);
    const float* xp = x + plane * hw;
    float acc = 0.0f;
    for (int ih = hs; ih < he; ++ih)
      for (int iw = ws; iw < we; ++iw) acc += __ldg(xp + ih * s.w + iw);
    y[i] = acc / divisor;
  }
}

// Output rows whose window [o s - p, o s - p + k) holds padded row t = i + p: o in [lo, hi).
__device__ __forceinline__ void windows_holding(int t, int k, int stride, int n_out, int& lo,
                                                int& hi) {
  lo = t < k ? 0 : (t - k) / stride + 1;
  hi = min(t / stride + 1, n_out);
}

__global__ void __launch_bounds__(kThreads)
avg_pool_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  FASTDL_GRID_STRIDE(i, s.planes * hw) {
    const int64_t plane = i / hw;
    const int p = int(i - plane * hw), ih = p / s.w, iw = p - ih * s.w;
    int oh0, oh1, ow0, ow1;
    windows_holding(ih + s.ph, s.kh, s.sh, s.oh, oh0, oh1);
    windows_holding(iw + s.pw, s.kw, s.sw, s.ow, ow0, ow1);
    const float* g = dy + plane * ohw;
    float acc = 0.0f;
    for (int oh = oh0; oh < oh1; ++oh) {
      const int h0 = oh * s.sh - s.ph, h1 = min(h0 + s.kh, s.h + s.ph);
      for (int ow = ow0; ow < ow1; ++ow) {
        const int w0 = ow * s.sw - s.pw, w1 = min(w0 + s.kw, s.w + s.pw);
        acc += __ldg(g + oh * s.ow + ow) / avg_divisor(s, h0, h1, w0, w1);
      }
    }
    dx[i] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// adaptive avg
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ int window_start(int o, int n_in, int n_out) {
  return int(int64_t(o) * n_in / n_out);
}
__device__ __forceinline__ int window_end(int o, int n_in, int n_out) {
  return int((int64_t(o + 1) * n_in + n_out - 1) / n_out);
}

__global__ void __launch_bounds__(kThreads)
adaptive_avg_forward_kernel(float* __restrict__ y, const float* __restrict__ x, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  FASTDL_GRID_STRIDE(i, s.planes * ohw) {
    const int64_t plane = i / ohw;
    const int o = int(i - plane * ohw), oh = o / s.ow, ow = o - oh * s.ow;
    const int hs = window_start(oh, s.h, s.oh), he = window_end(oh, s.h, s.oh);
    const int ws = window_start(ow, s.w, s.ow), we = window_end(ow, s.w, s.ow);
    const float* xp = x + plane * hw;
    float acc = 0.0f;
    for (int ih = hs; ih < he; ++ih)
      for (int iw = ws; iw < we; ++iw) acc += __ldg(xp + ih * s.w + iw);
    y[i] = acc / float((he - hs) * (we - ws));
  }
}

__global__ void __launch_bounds__(kThreads)
adaptive_avg_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy, PoolShape s) {
  const int64_t ohw = int64_t(s.oh) * s.ow, hw = int64_t(s.h) * s.w;
  FASTDL_GRID_STRIDE(i, s.planes * hw) {
    const int64_t plane = i / hw;
    const int p = int(i - plane * hw), ih = p / s.w, iw = p - ih * s.w;
    // the output cells whose window can hold (ih, iw): the window formulas with H and OH swapped
    const int oh0 = window_start(ih, s.oh, s.h), oh1 = min(window_end(ih, s.oh, s.h), s.oh);
    const int ow0 = window_start(iw, s.ow, s.w), ow1 = min(window_end(iw, s.ow, s.w), s.ow);
    const float* g = dy + plane * ohw;
    float acc = 0.0f;
    for (int oh = oh0; oh < oh1; ++oh) {
      const int hs = window_start(oh, s.h, s.oh), he = window_end(oh, s.h, s.oh);
      if (ih < hs || ih >= he) continue;
      for (int ow = ow0; ow < ow1; ++ow) {
        const int ws = window_start(ow, s.w, s.ow), we = window_end(ow, s.w, s.ow);
        if (iw < ws || iw >= we) continue;
        acc += __ldg(g + oh * s.ow + ow) / float((he - hs) * (we - ws));
      }
    }
    dx[i] = acc;
  }
}

#undef FASTDL_GRID_STRIDE

void check_shape(const PoolShape& s) {
  FASTDL_CHECK(s.h >= 0 && s.w >= 0 && s.oh >= 0 && s.ow >= 0 && int64_t(s.h) * s.w < (1 << 30) &&
                   int64_t(s.oh) * s.ow < (1 << 30),
               ValueError, "pool2d: plane sizes ", s.h, " x ", s.w, " -> ", s.oh, " x ", s.ow,
               " exceed the CUDA kernels' limit of 2^30 cells");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void max_pool2d_forward(float* y, int64_t* argmax, const float* x, const PoolShape& s,
                        cudaStream_t stream) {
  check_shape(s);
  const int64_t total = s.planes * s.oh * s.ow;
  if (total == 0) return;
  if (s.dh == 1 && s.dw == 1)
    max_pool_forward_kernel<false><<<grid_of(total), kThreads, 0, stream>>>(y, argmax, x, s);
  else
    max_pool_forward_kernel<true><<<grid_of(total), kThreads, 0, stream>>>(y, argmax, x, s);
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_backward(float* dx, const float* dy, const int64_t* argmax, const PoolShape& s,
                         cudaStream_t stream) {
  check_shape(s);
  const int64_t n_in = s.planes * s.h * s.w, total = s.planes * s.oh * s.ow;
  if (n_in == 0) return;
  CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * size_t(n_in), stream));
  if (total == 0) return;
  DeviceBuffer<u64> bad(1, stream);
  CUDA_CHECK(cudaMemsetAsync(bad.p, 0xff, sizeof(u64), stream));  // kNoBad
  max_pool_backward_kernel<<<grid_of(total), kThreads, 0, stream>>>(dx, bad.p, dy, argmax, s);
  CUDA_CHECK_LAUNCH();
  u64 first = kNoBad;
  CUDA_CHECK(cudaMemcpyAsync(&first, bad.p, sizeof(u64), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (first == kNoBad) return;
  int64_t value = 0;
  CUDA_CHECK(cudaMemcpyAsync(&value, argmax + first, sizeof(int64_t), cudaMemcpyDeviceToHost,
                             stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  FASTDL_CHECK(false, ValueError, "argmax: expected flat indices into the ", s.h, " x ", s.w,
               " input plane (0 <= index < ", int64_t(s.h) * s.w, "), got ", value,
               " at flat position ", first);
}

void avg_pool2d_forward(float* y, const float* x, const PoolShape& s, cudaStream_t stream) {
  check_shape(s);
  const int64_t total = s.planes * s.oh * s.ow;
  if (total == 0) return;
  avg_pool_forward_kernel<<<grid_of(total), kThreads, 0, stream>>>(y, x, s);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s, cudaStream_t stream) {
  check_shape(s);
  const int64_t total = s.planes * s.h * s.w;
  if (total == 0) return;
  avg_pool_backward_kernel<<<grid_of(total), kThreads, 0, stream>>>(dx, dy, s);
  CUDA_CHECK_LAUNCH();
}

void adaptive_avg_pool2d_forward(float* y, const float* x, const PoolShape& s,
                                 cudaStream_t stream) {
  check_shape(s);
  const int64_t total = s.planes * s.oh * s.ow;
  if (total == 0) return;
  FASTDL_CHECK(s.h > 0 && s.w > 0, ValueError, "adaptive_avg_pool2d: the mean over an empty ",
               s.h, " x ", s.w, " input plane is undefined");
  adaptive_avg_forward_kernel<<<grid_of(total), kThreads, 0, stream>>>(y, x, s);
  CUDA_CHECK_LAUNCH();
}

void adaptive_avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s,
                                  cudaStream_t stream) {
  check_shape(s);
  const int64_t total = s.planes * s.h * s.w;
  if (total == 0) return;
  FASTDL_CHECK(s.oh > 0 && s.ow > 0, ValueError, "adaptive_avg_pool2d_backward: output size ",
               s.oh, " x ", s.ow, " must be positive");
  adaptive_avg_backward_kernel<<<grid_of(total), kThreads, 0, stream>>>(dx, dy, s);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fastdl::cuda
