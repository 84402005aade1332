// dropout.cu: inverted dropout, forward and backward, float32.
//
// Shapes: x, y, dy, dx, mask: any shape, n contiguous elements; mask uint8, 1 = kept.
//   forward   keep i iff u(seed, i) >= floor(p * 2^32)   (u: common/counter_rng.h)
//             y = keep ? x * scale : 0,  scale = float(1 / (1 - p))
//   backward  dx = mask ? dy * scale : 0
// p = 0 keeps everything, p = 1 drops everything (zeros, mask 0; no division by zero). The hash,
// the key and the threshold are the CPU kernels' own (shared header), so for one seed the GPU
// mask equals the CPU mask bit for bit, and y too (the same single float product).
//
// Variants, in order of increasing complexity:
//   1. dropout_forward_reference: one thread per element, dropout_uniform(key, i); the oracle.
//   2. dropout_forward_kernel: one thread per group of 4 elements = two 64-bit hashes (each hash
//      gives two 32-bit uniforms, as on the CPU), float4 loads/stores and one 32-bit mask store
//      when the pointers allow (x, y 16-byte and mask 4-byte aligned), scalar otherwise.
//
// Napkin math: forward moves 9 bytes per element (x in, y and mask out), backward 9 (dy, mask in,
// dx out). A splitmix64 hash is ~10 64-bit integer operations (each several 32-bit instructions
// on the GPU), ~25 instructions per element: the H100's ~60 Tops/s of integer throughput keep up
// with ~370 G elements/s of 3.3 TB/s traffic, so this stays (just) memory-bound. 16M elements:
// 151 MB, ~50 us.
#include <cstdint>
#include <cstring>

#include "common/counter_rng.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/dropout.cuh"

namespace fastdl::cuda {

using std::int64_t;
using std::uint32_t;
using std::uint64_t;
using std::uint8_t;

namespace {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

__global__ void dropout_reference_kernel(float* y, uint8_t* mask, const float* x, int64_t n,
                                         uint64_t key, uint32_t threshold, float scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const bool keep = dropout_uniform(key, i) >= threshold;
  mask[i] = keep;
  y[i] = keep ? x[i] * scale : 0.f;
}

// ---------------------------------------------------------------------------------------------
// Fast kernels
// ---------------------------------------------------------------------------------------------

// Group g covers elements 4g .. 4g + 3: pairs 2g and 2g + 1.
template <bool kVec>
__global__ void __launch_bounds__(kMapThreads)
dropout_forward_kernel(float* __restrict__ y, uint8_t* __restrict__ mask,
                       const float* __restrict__ x, int64_t n, uint64_t key, uint32_t threshold,
                       float scale) {
  const int64_t groups = (n + 3) / 4;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const uint64_t z0 = dropout_pair_hash(key, 2 * g), z1 = dropout_pair_hash(key, 2 * g + 1);
    const uint32_t u[4] = {uint32_t(z0), uint32_t(z0 >> 32), uint32_t(z1), uint32_t(z1 >> 32)};
    const int64_t i0 = 4 * g;
    if (kVec && i0 + 4 <= n) {
      const float4 v = reinterpret_cast<const float4*>(x)[g];
      const bool k0 = u[0] >= threshold, k1 = u[1] >= threshold, k2 = u[2] >= threshold,
                 k3 = u[3] >= threshold;
      reinterpret_cast<float4*>(y)[g] = make_float4(k0 ? v.x * scale : 0.f, k1 ? v.y * scale : 0.f,
                                                    k2 ? v.z * scale : 0.f, k3 ? v.w * scale : 0.f);
      // little-endian: byte j of the word is element i0 + j
      reinterpret_cast<uint32_t*>(mask)[g] =
          uint32_t(k0) | uint32_t(k1) << 8 | uint32_t(k2) << 16 | uint32_t(k3) << 24;
    } else {
      for (int j = 0; j < 4 && i0 + j < n; ++j) {
        const bool keep = u[j] >= threshold;
        mask[i0 + j] = keep;
        y[i0 + j] = keep ? x[i0 + j] * scale : 0.f;
      }
    }
  }
}

__global__ void __launch_bounds__(kMapThreads)
dropout_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                        const uint8_t* __restrict__ mask, int64_t n, float scale) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = mask[i] ? dy[i] * scale : 0.f;
}

float scale_of(double p) { return p < 1.0 ? float(1.0 / (1.0 - p)) : 0.f; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void dropout_forward_reference(float* y, uint8_t* mask, const float* x, int64_t n, double p,
                               uint64_t seed, cudaStream_t stream) {
  if (n <= 0) return;
  FASTDL_CHECK(n <= int64_t(0x7fffffff) * 256, ValueError, "x: too many elements: ", n);
  if (p >= 1.0) {
    CUDA_CHECK(cudaMemsetAsync(mask, 0, std::size_t(n), stream));
    CUDA_CHECK(cudaMemsetAsync(y, 0, sizeof(float) * std::size_t(n), stream));
    return;
  }
  dropout_reference_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(
      y, mask, x, n, dropout_key(seed), dropout_threshold(p), scale_of(p));
  CUDA_CHECK_LAUNCH();
}

void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, double p, uint64_t seed,
                     cudaStream_t stream) {
  if (n <= 0) return;
  if (p >= 1.0) {  // all dropped; 0.0f is all-zero bits
    CUDA_CHECK(cudaMemsetAsync(mask, 0, std::size_t(n), stream));
    CUDA_CHECK(cudaMemsetAsync(y, 0, sizeof(float) * std::size_t(n), stream));
    return;
  }
  const uint64_t key = dropout_key(seed);
  const uint32_t threshold = dropout_threshold(p);
  const bool vec = aligned16(x) && aligned16(y) && reinterpret_cast<std::uintptr_t>(mask) % 4 == 0;
  const unsigned grid = grid_for((n + 3) / 4, 1);
  if (vec)
    dropout_forward_kernel<true><<<grid, kMapThreads, 0, stream>>>(y, mask, x, n, key, threshold,
                                                                   scale_of(p));
  else
    dropout_forward_kernel<false><<<grid, kMapThreads, 0, stream>>>(y, mask, x, n, key, threshold,
                                                                    scale_of(p));
  CUDA_CHECK_LAUNCH();
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, double p,
                      cudaStream_t stream) {
  if (n <= 0) return;
  dropout_backward_kernel<<<grid_for(n, 4), kMapThreads, 0, stream>>>(dx, dy, mask, n,
                                                                      scale_of(p));
  CUDA_CHECK_LAUNCH();
}

}  // namespace fastdl::cuda
