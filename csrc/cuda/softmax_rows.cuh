// softmax_rows.cuh: the per-row softmax sweep shared by softmax.cu and loss.cu (cross-entropy).
// Device code; included by .cu files only.
//
// A row of n floats is owned by kRowThreads consecutive threads (a warp, or a whole block), each
// striding over the row by kRowThreads so a warp reads 128 contiguous bytes per step. Three
// passes: max, sum of exp(x - max), write; the second and third re-read the row from L1/L2.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_util.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kRowBlock = 256;           // threads per block for every row kernel
constexpr std::int64_t kWarpRowMax = 1024;  // rows up to this long: a warp per row

struct RowStats {
  float max;  // -inf: the row is entirely -inf (or -inf and NaN)
  float sum;  // sum of exp(x - max); NaN if the row holds NaN or +inf
  bool nan;   // a NaN in a fully masked row (only computed when max == -inf)
};

// Row statistics of x[0..n), computed by the kRowThreads threads of the row; lane = the thread's
// index within the row. Every thread of the row returns the same values.
template <int kRowThreads>
__device__ __forceinline__ RowStats row_stats(const float* x, std::int64_t n, int lane,
                                              float* smem) {
  float m = -INFINITY;
  for (std::int64_t j = lane; j < n; j += kRowThreads) m = fmaxf(m, x[j]);
  m = row_allreduce<kRowThreads>(m, Max(), smem);
  if (m == -INFINITY) {  // uniform across the row: every thread sees the same m
    float nan = 0.f;
    for (std::int64_t j = lane; j < n; j += kRowThreads) nan = x[j] != x[j] ? 1.f : nan;
    nan = row_allreduce<kRowThreads>(nan, Max(), smem);
    return {m, 0.f, nan != 0.f};
  }
  float s = 0.f;
  for (std::int64_t j = lane; j < n; j += kRowThreads) s += expf(x[j] - m);
  s = row_allreduce<kRowThreads>(s, Sum(), smem);
  return {m, s, false};
}

// y = softmax (or log_softmax) of the row with statistics st. A fully masked row gives zeros
// (log: -inf), or NaN throughout when it holds a NaN: the CPU kernels' masked_row.
template <int kRowThreads>
__device__ __forceinline__ void row_write(float* y, const float* x, std::int64_t n, int lane,
                                          const RowStats& st, bool log) {
  if (st.max == -INFINITY) {
    const float fill = st.nan ? NAN : log ? -INFINITY : 0.f;
    for (std::int64_t j = lane; j < n; j += kRowThreads) y[j] = fill;
  } else if (log) {
    const float ls = logf(st.sum);
    for (std::int64_t j = lane; j < n; j += kRowThreads) y[j] = (x[j] - st.max) - ls;
  } else {
    const float inv = 1.f / st.sum;
    for (std::int64_t j = lane; j < n; j += kRowThreads) y[j] = expf(x[j] - st.max) * inv;
  }
}

// Which row this thread works on and its lane, for kRowThreads threads per row in blocks of
// kRowBlock: a block holds kRowBlock / kRowThreads rows.
template <int kRowThreads>
__device__ __forceinline__ std::int64_t first_row() {
  return std::int64_t(blockIdx.x) * (kRowBlock / kRowThreads) + threadIdx.x / kRowThreads;
}
template <int kRowThreads>
__device__ __forceinline__ std::int64_t row_stride() {
  return std::int64_t(gridDim.x) * (kRowBlock / kRowThreads);
}

inline unsigned row_grid(std::int64_t rows, int row_threads) {
  const std::int64_t per_block = kRowBlock / row_threads;
  return unsigned(std::clamp<std::int64_t>((rows + per_block - 1) / per_block, 1, kMaxBlocks));
}

}  // namespace
}  // namespace fastdl::cuda
