// softmax.cu: softmax and log_softmax along the last axis of x (rows, n), forward and backward,
// float32.
//
// Shapes: x, y, dy, dx (rows, n), row-major and contiguous; fastdl.ops.softmax moves any other
// axis last.
//   softmax      y = exp(x - m) / s,  m = max x, s = sum exp(x - m)
//                dx = y * (dy - <dy, y>)
//   log_softmax  y = (x - m) - log s
//                dx = dy - exp(y) * sum(dy)
// Semantics are the CPU kernels' (csrc/cpu/softmax.cpp): subtracting the row max keeps exp in
// range for logits of any magnitude; a row that is entirely -inf gives zeros (log: -inf), never
// NaN; NaN anywhere in a row, or +inf, makes the row NaN, as in PyTorch.
//
// Variants, in order of increasing complexity:
//   1. softmax_forward_reference: one thread per row, plain loops; the oracle.
//   2. softmax_rows.cuh with a warp per row (n <= 1024: 8 rows per 256-thread block; lanes
//      stride the row so each step is one 128-byte segment), shuffle reductions.
//   3. ... with a 256-thread block per row (n > 1024), warp shuffles then 8 partials in shared
//      memory, added in a fixed order.
// Reductions are butterflies in a fixed order: results are bitwise repeatable, and every thread
// of a row sees the same max and sum.
//
// Napkin math: the minimum traffic is 8 bytes per element forward (x in, y out) and 12 backward
// (dy, y in, dx out). The three forward passes re-read x; a warp's row (<= 4 KB) stays in L1 and
// a block's row (n * 4 bytes, 32K floats = 128 KB) in L2 (50 MB on H100), so DRAM sees ~8
// bytes/element: a (4096, 4096) softmax is 134 MB, ~45 us at 3 TB/s. expf runs on the FMA/SFU
// pipes with plenty of headroom; small rows (n < 32) idle lanes and are latency-bound instead.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/softmax.cuh"
#include "cuda/softmax_rows.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

__global__ void softmax_reference_kernel(float* y, const float* x, int64_t rows, int64_t n,
                                         bool log) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* xr = x + r * n;
  float* yr = y + r * n;
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = fmaxf(m, xr[j]);
  if (m == -INFINITY) {
    bool nan = false;
    for (int64_t j = 0; j < n; ++j) nan |= xr[j] != xr[j];
    for (int64_t j = 0; j < n; ++j) yr[j] = nan ? NAN : log ? -INFINITY : 0.f;
    return;
  }
  float s = 0.f;
  for (int64_t j = 0; j < n; ++j) s += expf(xr[j] - m);
  for (int64_t j = 0; j < n; ++j) yr[j] = log ? (xr[j] - m) - logf(s) : expf(xr[j] - m) / s;
}

// ---------------------------------------------------------------------------------------------
// Fast kernels
// ---------------------------------------------------------------------------------------------

template <int kRowThreads>
__global__ void __launch_bounds__(kRowBlock)
softmax_forward_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t rows,
                       int64_t n, bool log) {
  __shared__ float smem[kRowBlock / 32];
  const int lane = int(threadIdx.x % kRowThreads);
  for (int64_t r = first_row<kRowThreads>(); r < rows; r += row_stride<kRowThreads>()) {
    const RowStats st = row_stats<kRowThreads>(x + r * n, n, lane, smem);
    row_write<kRowThreads>(y + r * n, x + r * n, n, lane, st, log);
  }
}

template <int kRowThreads>
__global__ void __launch_bounds__(kRowBlock)
softmax_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                        const float* __restrict__ y, int64_t rows, int64_t n, bool log) {
  __shared__ float smem[kRowBlock / 32];
  const int lane = int(threadIdx.x % kRowThreads);
  for (int64_t r = first_row<kRowThreads>(); r < rows; r += row_stride<kRowThreads>()) {
    const float *g = dy + r * n, *yr = y + r * n;
    float* d = dx + r * n;
    float acc = 0.f;
    for (int64_t j = lane; j < n; j += kRowThreads) acc += log ? g[j] : g[j] * yr[j];
    acc = row_allreduce<kRowThreads>(acc, Sum(), smem);
    for (int64_t j = lane; j < n; j += kRowThreads)
      d[j] = log ? g[j] - expf(yr[j]) * acc : yr[j] * (g[j] - acc);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void softmax_forward_reference(float* y, const float* x, int64_t rows, int64_t n, bool log,
                               cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return;
  FASTDL_CHECK(rows <= int64_t(0x7fffffff) * 128, ValueError, "x: too many rows: ", rows);
  softmax_reference_kernel<<<unsigned((rows + 127) / 128), 128, 0, stream>>>(y, x, rows, n, log);
  CUDA_CHECK_LAUNCH();
}

void softmax_forward(float* y, const float* x, int64_t rows, int64_t n, bool log,
                     cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return;
  if (n <= kWarpRowMax)
    softmax_forward_kernel<32><<<row_grid(rows, 32), kRowBlock, 0, stream>>>(y, x, rows, n, log);
  else
    softmax_forward_kernel<kRowBlock>
        <<<row_grid(rows, kRowBlock), kRowBlock, 0, stream>>>(y, x, rows, n, log);
  CUDA_CHECK_LAUNCH();
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t n,
                      bool log, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return;
  if (n <= kWarpRowMax)
    softmax_backward_kernel<32>
        <<<row_grid(rows, 32), kRowBlock, 0, stream>>>(dx, dy, y, rows, n, log);
  else
    softmax_backward_kernel<kRowBlock>
        <<<row_grid(rows, kRowBlock), kRowBlock, 0, stream>>>(dx, dy, y, rows, n, log);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fastdl::cuda
