// embedding.cu: the embedding lookup y = weight[indices] and its gradient w.r.t. the weight,
// float32 on the GPU.
//
// Shapes: indices (M,) int64, weight / dweight (V, D), y / dy (M, D); all C-contiguous.
//   forward   y[m, :] = weight[indices[m], :]
//   backward  dweight = 0, then dweight[indices[m], :] += dy[m, :] for m = 0 .. M-1 in order;
//             the row padding_idx (>= 0) is skipped (stays zero).
// Index check: the thread that reads an index checks 0 <= idx < V before using it as an
// address; a bad one is recorded with an integer atomicMin (the first bad position wins
// whatever the schedule), and the launcher copies that back (one synchronisation) and throws
// ValueError with the CPU's message.
//
// Variants, in order of increasing complexity:
//   1. embedding_forward_kernel: a warp per row of y (8 rows per block, grid-stride), float4
//      loads and stores when D % 4 == 0 and both arrays are 16-byte aligned, else scalars. The
//      CPU kernel is the reference (the tests compare against it and NumPy).
//   2. embedding_backward_kernel: deterministic, no floating-point atomics. The grid tiles
//      dweight: block (x, y) owns a range of rows times a range of columns and is the only
//      writer of that tile; its threads own fixed columns. It zeroes the tile, then scans ALL
//      M indices in tiles of 4 * blockDim.x (4 consecutive indices a thread):
//      __syncthreads_count says whether any index of the tile falls in its rows (most tiles:
//      none, one barrier), and only then a shared-memory prefix sum of the per-thread hit
//      counts compacts the hits, in index order, and each thread adds dy[m, col] to
//      dweight[idx, col] for every hit in turn. Every element is therefore summed by one thread
//      in index order: the same bits on every run, equal to the CPU kernel's for float32.
//      Cost: every block reads the whole index array (8 bytes per index, from L2 after the
//      first block: an index array of M = 1M is 8 MB), so the grid is kept to ~4 blocks per SM
//      (rows per block = V / blocks); the adds themselves are the M * D * 8 bytes of any
//      scatter. A row that receives a large share of all hits (a padding token not declared as
//      padding_idx) is summed by one block: correct, but serial in its hits. A sort-based
//      segmented sum (PyTorch's) would scale better for huge M; this one needs no workspace.
//
// Napkin math (H100, ~3.3 TB/s): forward moves 8 bytes per element of y (read + write): a
// (32768, 512) lookup is 134 MB, ~40 us. Backward writes V * D * 4 (zeroing) + reads M * D * 4
// + updates the hit rows.
#include <algorithm>
#include <cstdint>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/embedding.cuh"

namespace fastdl::cuda {

using std::int64_t;
using u64 = unsigned long long;

namespace {

constexpr u64 kNoBad = ~u64(0);
constexpr int kFwdRows = 8;            // rows of y per forward block (one warp each)
constexpr int kBwdMaxThreads = 256;    // threads of a backward block (a multiple of 32)
constexpr int kBwdBlocksPerSm = 4;
constexpr int kIdxPerThread = 4;       // indices each backward thread tests per tile

__device__ __forceinline__ bool in_range(int64_t idx, int64_t v) { return idx >= 0 && idx < v; }

// ---------------------------------------------------------------------------------------------
// forward: a warp per row. dv: D in units of Vec (float4 or float).
// ---------------------------------------------------------------------------------------------

template <class Vec>
__global__ void __launch_bounds__(32 * kFwdRows)
embedding_forward_kernel(Vec* __restrict__ y, u64* __restrict__ bad,
                         const int64_t* __restrict__ indices, const Vec* __restrict__ weight,
                         int64_t m, int64_t v, int64_t dv) {
  const int64_t stride = int64_t(gridDim.x) * kFwdRows;
  for (int64_t r = int64_t(blockIdx.x) * kFwdRows + threadIdx.y; r < m; r += stride) {
    const int64_t idx = indices[r];
    if (!in_range(idx, v)) {
      if (threadIdx.x == 0) atomicMin(bad, u64(r));
      continue;
    }
    Vec* dst = y + r * dv;
    const Vec* src = weight + idx * dv;
    for (int64_t j = threadIdx.x; j < dv; j += 32) dst[j] = src[j];
  }
}

// ---------------------------------------------------------------------------------------------
// backward: block (x, y) owns rows [x * rows_per_block, ...) and columns (Vec units)
// [y * cols_per_block, ...) of dweight.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ void add_to(float& a, float b) { a += b; }
__device__ __forceinline__ void add_to(float4& a, const float4& b) {
  a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
}
template <class Vec>
__device__ __forceinline__ Vec zero_vec();
template <>
__device__ __forceinline__ float zero_vec<float>() { return 0.f; }
template <>
__device__ __forceinline__ float4 zero_vec<float4>() { return make_float4(0.f, 0.f, 0.f, 0.f); }

template <class Vec>
__global__ void __launch_bounds__(kBwdMaxThreads)
embedding_backward_kernel(Vec* __restrict__ dweight, u64* __restrict__ bad,
                          const Vec* __restrict__ dy, const int64_t* __restrict__ indices,
                          int64_t padding_idx, int64_t m, int64_t v, int64_t dv,
                          int64_t rows_per_block, int64_t cols_per_block) {
  __shared__ int scan[kBwdMaxThreads];
  __shared__ int64_t hit_pos[kBwdMaxThreads * kIdxPerThread];
  __shared__ int64_t hit_row[kBwdMaxThreads * kIdxPerThread];
  const int tid = int(threadIdx.x), nt = int(blockDim.x);
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = std::min(v, r0 + rows_per_block);
  const int64_t c0 = int64_t(blockIdx.y) * cols_per_block;
  const int64_t c1 = std::min(dv, c0 + cols_per_block);
  const bool reporter = blockIdx.x == 0 && blockIdx.y == 0;  // it alone records bad indices

  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0 + tid; c < c1; c += nt) dweight[r * dv + c] = zero_vec<Vec>();

  // A tile is kIdxPerThread * nt consecutive indices; thread t reads the kIdxPerThread
  // consecutive ones starting at base + t * kIdxPerThread, so ranks below follow index order.
  for (int64_t base = 0; base < m; base += int64_t(nt) * kIdxPerThread) {
    const int64_t first = base + int64_t(tid) * kIdxPerThread;
    int64_t row[kIdxPerThread];
    unsigned mine = 0;  // bit q: index first + q lands in this block's rows
    int hits = 0;
#pragma unroll
    for (int q = 0; q < kIdxPerThread; ++q) {
      const int64_t i = first + q;
      row[q] = -1;
      if (i < m) {
        row[q] = indices[i];
        if (!in_range(row[q], v)) {
          if (reporter) atomicMin(bad, u64(i));
        } else if (row[q] >= r0 && row[q] < r1 && row[q] != padding_idx) {
          mine |= 1u << q;
          ++hits;
        }
      }
    }
    if (__syncthreads_count(hits) == 0) continue;  // uniform: every thread sees the same count
    // Inclusive prefix sum of the per-thread hit counts (Hillis-Steele): thread t's hits take
    // the slots after those of threads 0..t-1, so the list below is in index order.
    scan[tid] = hits;
    __syncthreads();
    for (int off = 1; off < nt; off *= 2) {
      const int add = tid >= off ? scan[tid - off] : 0;
      __syncthreads();
      scan[tid] += add;
      __syncthreads();
    }
    int slot = scan[tid] - hits;
#pragma unroll
    for (int q = 0; q < kIdxPerThread; ++q)
      if (mine >> q & 1u) {
        hit_pos[slot] = first + q;
        hit_row[slot] = row[q];
        ++slot;
      }
    const int count = scan[nt - 1];
    __syncthreads();
    for (int h = 0; h < count; ++h) {
      Vec* dst = dweight + hit_row[h] * dv;
      const Vec* src = dy + hit_pos[h] * dv;
      for (int64_t c = c0 + tid; c < c1; c += nt) add_to(dst[c], src[c]);
    }
    __syncthreads();  // hit_pos / hit_row / scan are rewritten by the next tile
  }
}

// Copies the first bad position back (synchronising the stream) and throws if there is one.
void throw_if_bad_index(const u64* bad, const int64_t* indices, int64_t v, cudaStream_t stream) {
  u64 pos = kNoBad;
  CUDA_CHECK(cudaMemcpyAsync(&pos, bad, sizeof(u64), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (pos == kNoBad) return;
  int64_t value = 0;
  CUDA_CHECK(cudaMemcpyAsync(&value, indices + pos, sizeof(int64_t), cudaMemcpyDeviceToHost,
                             stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  throw fastdl::ValueError(fastdl::detail::concat("indices: indices[", pos, "] = ", value,
                                                  " is out of range [0, V) with V = ", v,
                                                  " (the number of embeddings)"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void embedding_forward(float* y, const int64_t* indices, const float* weight, int64_t m,
                       int64_t v, int64_t d, cudaStream_t stream) {
  if (m == 0) return;
  DeviceBuffer<u64> bad(1, stream);
  CUDA_CHECK(cudaMemsetAsync(bad.p, 0xff, sizeof(u64), stream));
  const dim3 block(32, kFwdRows);
  const unsigned grid = grid_for(m, 1, kFwdRows);
  if (d % 4 == 0 && aligned16(y) && aligned16(weight))
    embedding_forward_kernel<float4><<<grid, block, 0, stream>>>(
        reinterpret_cast<float4*>(y), bad.p, indices, reinterpret_cast<const float4*>(weight),
        m, v, d / 4);
  else
    embedding_forward_kernel<float><<<grid, block, 0, stream>>>(y, bad.p, indices, weight, m, v,
                                                                d);
  CUDA_CHECK_LAUNCH();
  throw_if_bad_index(bad.p, indices, v, stream);
}

void embedding_backward(float* dweight, const float* dy, const int64_t* indices,
                        int64_t padding_idx, int64_t m, int64_t v, int64_t d,
                        cudaStream_t stream) {
  if (v == 0 && m == 0) return;
  const bool vec = d % 4 == 0 && aligned16(dweight) && aligned16(dy);
  const int64_t dv = vec ? d / 4 : d;
  const int threads = int(std::clamp<int64_t>((dv + 31) / 32 * 32, 32, kBwdMaxThreads));
  int dev = 0, sms = 1;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t target = int64_t(kBwdBlocksPerSm) * std::max(sms, 1);
  // Rows first; column ranges (whole multiples of the block width) only for a short table.
  const int64_t rows_per_block = std::max<int64_t>(1, (v + target - 1) / target);
  const int64_t row_blocks = std::max<int64_t>(1, (v + rows_per_block - 1) / rows_per_block);
  const int64_t col_units = std::max<int64_t>(1, (dv + threads - 1) / threads);
  const int64_t col_blocks = std::clamp<int64_t>(target / row_blocks, 1, col_units);
  const int64_t cols_per_block = (col_units + col_blocks - 1) / col_blocks * threads;
  const int64_t grid_y = std::max<int64_t>(1, (dv + cols_per_block - 1) / cols_per_block);
  FASTDL_CHECK(row_blocks <= 0x7fffffff && grid_y <= 65535, ValueError,
               "embedding_backward: dweight of shape (", v, ", ", d, ") is too large");
  DeviceBuffer<u64> bad(1, stream);
  CUDA_CHECK(cudaMemsetAsync(bad.p, 0xff, sizeof(u64), stream));
  const dim3 grid{unsigned(row_blocks), unsigned(grid_y)};
  if (vec)
    embedding_backward_kernel<float4><<<grid, threads, 0, stream>>>(
        reinterpret_cast<float4*>(dweight), bad.p, reinterpret_cast<const float4*>(dy), indices,
        padding_idx, m, v, dv, rows_per_block, cols_per_block);
  else
    embedding_backward_kernel<float><<<grid, threads, 0, stream>>>(
        dweight, bad.p, dy, indices, padding_idx, m, v, dv, rows_per_block, cols_per_block);
  CUDA_CHECK_LAUNCH();
  throw_if_bad_index(bad.p, indices, v, stream);
}

}  // namespace fastdl::cuda
