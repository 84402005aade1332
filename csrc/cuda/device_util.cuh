// device_util.cuh: device-side building blocks shared by the memory-bound CUDA kernels
// (activation, softmax, loss, dropout, elementwise, optim). Included by .cu files only.
//
//   grid_for(n, per_thread)     a 1-D launch shape for a grid-stride loop over n items
//   map_kernel / launch_map     out[i] = f(a[i], b[i]) element-wise, float4 loads and stores when
//                               every pointer is 16-byte aligned (a scalar tail), else scalar
//   warp_allreduce / row_allreduce
//                               a sum or max over the kRowThreads threads that share one row,
//                               by a butterfly (xor) shuffle: every lane ends with the SAME bits
//                               (each step adds two values that the partner adds in the other
//                               order, and float addition is commutative), so the row's threads
//                               agree and the result depends only on the launch shape
//   block_sum_double            a fixed-order sum over a block (tree in shared memory)
//   sum_doubles_kernel, deterministic_sum
//                               a double sum in a fixed order, copied back to the host
//   sigmoid_f                   the overflow-free sigmoid of activation.cu, shared with loss.cu
// Everything is deterministic: no atomics on floating-point values.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kMapThreads = 256;
// Enough blocks to fill any current GPU many times over; larger arrays loop (grid-stride).
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

inline unsigned grid_for(std::int64_t n, std::int64_t per_thread, int threads = kMapThreads) {
  const std::int64_t per_block = per_thread * threads;
  return unsigned(std::clamp<std::int64_t>((n + per_block - 1) / per_block, 1, kMaxBlocks));
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// out[i] = f(a[i], b[i]) for i < n; b may be null when f ignores it. kVec: float4 path (all
// pointers 16-byte aligned): thread t handles float4s t, t + stride, ... and the n % 4 tail
// elements go to the first threads of the grid.
template <bool kVec, class F>
__global__ void __launch_bounds__(kMapThreads)
map_kernel(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
           std::int64_t n, F f) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t t = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVec) {
    const std::int64_t n4 = n / 4;
    for (std::int64_t i = t; i < n4; i += stride) {
      const float4 x = reinterpret_cast<const float4*>(a)[i];
      float4 y = b ? reinterpret_cast<const float4*>(b)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      y = make_float4(f(x.x, y.x), f(x.y, y.y), f(x.z, y.z), f(x.w, y.w));
      reinterpret_cast<float4*>(out)[i] = y;
    }
    const std::int64_t i = n4 * 4 + t;
    if (i < n) out[i] = f(a[i], b ? b[i] : 0.f);
  } else {
    for (std::int64_t i = t; i < n; i += stride) out[i] = f(a[i], b ? b[i] : 0.f);
  }
}

template <class F>
void launch_map(float* out, const float* a, const float* b, std::int64_t n, F f,
                cudaStream_t stream) {
  if (n <= 0) return;
  if (aligned16(out) && aligned16(a) && (b == nullptr || aligned16(b)))
    map_kernel<true><<<grid_for(n, 4), kMapThreads, 0, stream>>>(out, a, b, n, f);
  else
    map_kernel<false><<<grid_for(n, 1), kMapThreads, 0, stream>>>(out, a, b, n, f);
  CUDA_CHECK_LAUNCH();
}

// 1 / (1 + exp(-x)) without overflow: exp of a non-positive number only; NaN propagates.
__device__ __forceinline__ float sigmoid_f(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}

struct Sum {
  __device__ float operator()(float x, float y) const { return x + y; }
};
struct Max {  // fmaxf skips NaN, as std::max(m, x) does in the CPU kernels
  __device__ float operator()(float x, float y) const { return fmaxf(x, y); }
};

template <int kWidth, class Op>
__device__ __forceinline__ float warp_allreduce(float v, Op op) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o, kWidth));
  return v;
}

// Allreduce over the kRowThreads consecutive threads of a row (32: one warp; 64..1024: the whole
// block, which must then hold exactly one row). smem: kRowThreads / 32 floats. Every thread of
// the block must call it together when kRowThreads > 32.
template <int kRowThreads, class Op>
__device__ __forceinline__ float row_allreduce(float v, Op op, float* smem) {
  v = warp_allreduce<32>(v, op);
  if constexpr (kRowThreads > 32) {
    constexpr int kWarps = kRowThreads / 32;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    v = smem[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = op(v, smem[w]);  // the same order in every thread
    __syncthreads();  // smem is reused by the next reduction
  }
  return v;
}

// Sum of v over the block (blockDim.x == kThreads, a power of two), valid in thread 0.
template <int kThreads>
__device__ __forceinline__ double block_sum_double(double v, double* smem) {
  smem[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) smem[threadIdx.x] += smem[threadIdx.x + s];
    __syncthreads();
  }
  return smem[0];
}

constexpr int kSumThreads = 512;

// out[0] = scale * sum_{i < m} x[i], one block: thread t adds x[t], x[t + 512], ... then a tree.
__global__ void __launch_bounds__(kSumThreads)
sum_doubles_kernel(double* out, const double* x, std::int64_t m, double scale) {
  __shared__ double smem[kSumThreads];
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < m; i += kSumThreads) s += x[i];
  s = block_sum_double<kSumThreads>(s, smem);
  if (threadIdx.x == 0) out[0] = s * scale;
}

// partial[b] = sum of f(i) for i in block b's chunk [b * chunk, (b + 1) * chunk), in double.
// Thread t adds elements t, t + 512, ... of the chunk: fixed order for a given (n, chunk).
template <class F>
__global__ void __launch_bounds__(kSumThreads)
chunk_sum_kernel(double* partial, std::int64_t n, std::int64_t chunk, F f) {
  __shared__ double smem[kSumThreads];
  const std::int64_t lo = std::int64_t(blockIdx.x) * chunk;
  const std::int64_t hi = std::min(n, lo + chunk);
  double s = 0.0;
  for (std::int64_t i = lo + threadIdx.x; i < hi; i += kSumThreads) s += f(i);
  s = block_sum_double<kSumThreads>(s, smem);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// A stream-ordered device allocation, released in stream order (also when an exception unwinds).
template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  cudaStream_t stream;
  DeviceBuffer(std::int64_t count, cudaStream_t s) : stream(s) {
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p), sizeof(T) * std::size_t(count), s));
  }
  ~DeviceBuffer() {
    if (p) (void)cudaFreeAsync(p, stream);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

constexpr std::int64_t kSumChunk = std::int64_t(1) << 14;  // elements per partial sum

// scale * sum_{i < n} f(i), accumulated in double in a fixed order, copied back to the host
// (synchronises the stream). Two launches: chunk sums, then one block over the chunk sums.
template <class F>
double deterministic_sum(std::int64_t n, F f, double scale, cudaStream_t stream) {
  const std::int64_t chunks = std::max<std::int64_t>(1, (n + kSumChunk - 1) / kSumChunk);
  FASTDL_CHECK(chunks <= 0x7fffffff, ValueError, "too many elements for one reduction: ", n);
  DeviceBuffer<double> ws(chunks + 1, stream);
  chunk_sum_kernel<<<unsigned(chunks), kSumThreads, 0, stream>>>(ws.p + 1, n, kSumChunk, f);
  CUDA_CHECK_LAUNCH();
  sum_doubles_kernel<<<1, kSumThreads, 0, stream>>>(ws.p, ws.p + 1, chunks, scale);
  CUDA_CHECK_LAUNCH();
  double result = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&result, ws.p, sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

}  // namespace
}  // namespace fastdl::cuda
