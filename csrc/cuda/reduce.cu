// reduce.cu: out[j] = sum_i x[i, j] for a row-major m x n x: the bias gradient of a dense or
// batched layer, db = dy summed over rows. No backward: it is itself a backward.
//
// Shape legend: x (M, N) C-contiguous, out (N,).
//
// One kernel, sum_rows_kernel: a block of 32 x 8 threads owns 32 adjacent columns and one chunk
// of kChunkRows rows. Each of its 8 warps reads whole 128-byte row segments (coalesced along N),
// every thread sums its column over every 8th row of the chunk, and the 8 partial sums of a
// column are added in shared memory in a fixed order. With more than one chunk the kernel writes
// a (chunks x n) matrix of partial sums to a stream-ordered workspace and is applied again to
// that, until one chunk is left. No atomics: the order of additions depends only on (m, n), so
// results are bitwise repeatable.
//
// Napkin math: 4 * m * n bytes read once, ~4 * m * n / kChunkRows written and re-read as
// partials (0.4 %); purely bandwidth-bound (H100 ~3.3 TB/s: 1 ms per 3.3 GB, i.e. dy of
// 8192 x 4096 floats in ~40 us). Splitting rows into chunks keeps the grid large when n is small.
#include <algorithm>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/reduce.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {
constexpr int kCols = 32;        // columns per block: one warp-wide, 128-byte row segment
constexpr int kRowLanes = 8;     // warps per block, each walking every 8th row
constexpr int kChunkRows = 256;  // rows per block: each thread adds 32 values
constexpr int kMaxGridY = 65535; // more chunks than this: blocks loop over chunks
}  // namespace

// Block (bx, by) writes partial[c][j] = sum of x[i][j] over the rows i of chunk c, for chunks
// c = by, by + gridDim.y, ... and its 32 columns j. With one chunk, partial is out itself.
__global__ void __launch_bounds__(kCols * kRowLanes)
sum_rows_kernel(float* partial, const float* x, int64_t m, int64_t n, int64_t chunks) {
  __shared__ float part[kRowLanes][kCols];
  const int64_t j = int64_t(blockIdx.x) * kCols + threadIdx.x;
  for (int64_t c = blockIdx.y; c < chunks; c += gridDim.y) {
    const int64_t i1 = std::min(m, (c + 1) * kChunkRows);
    float s = 0.0f;
    if (j < n)
#pragma unroll 4
      for (int64_t i = c * kChunkRows + threadIdx.y; i < i1; i += kRowLanes) s += x[i * n + j];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
      float t = part[0][threadIdx.x];
#pragma unroll
      for (int r = 1; r < kRowLanes; ++r) t += part[r][threadIdx.x];
      partial[c * n + j] = t;
    }
    __syncthreads();  // part is reused by the next chunk
  }
}

void sum_rows(float* out, const float* x, int64_t m, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (m == 0) {  // an empty sum
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float) * size_t(n), stream));
    return;
  }
  const int64_t chunks = (m + kChunkRows - 1) / kChunkRows;
  // The partial sums of a multi-chunk level live in a stream-ordered workspace, released in
  // stream order after the next level has read them (also when that level throws).
  struct Workspace {
    float* p = nullptr;
    cudaStream_t stream;
    ~Workspace() {
      if (p) (void)cudaFreeAsync(p, stream);
    }
  } ws{nullptr, stream};
  if (chunks > 1)
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ws.p),
                               sizeof(float) * size_t(chunks) * size_t(n), stream));
  float* partial = chunks > 1 ? ws.p : out;
  const dim3 grid(unsigned((n + kCols - 1) / kCols), unsigned(std::min<int64_t>(chunks, kMaxGridY)));
  sum_rows_kernel<<<grid, dim3(kCols, kRowLanes), 0, stream>>>(partial, x, m, n, chunks);
  CUDA_CHECK_LAUNCH();
  if (chunks > 1) sum_rows(out, partial, chunks, n, stream);  // ~log_256(m) levels in all
}

}  // namespace fastdl::cuda
