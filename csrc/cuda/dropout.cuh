// dropout.cuh: inverted dropout on the GPU (float32) with the CPU kernels' counter-based mask.
//
//   forward:  mask[i] = u(seed, i) >= floor(p * 2^32)  (1 = kept),  y[i] = mask[i] ? x[i] / (1 - p) : 0
//   backward: dx[i] = mask[i] ? dy[i] / (1 - p) : 0
// u is common/counter_rng.h's hash of (seed, i): for the same seed the mask is bit-identical to
// the CPU's (and y too: the same float product x * scale). p = 1 drops everything.
// Host-only declarations; launchers run asynchronously on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

void dropout_forward(float* y, std::uint8_t* mask, const float* x, std::int64_t n, double p,
                     std::uint64_t seed, cudaStream_t stream);
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, std::int64_t n,
                      double p, cudaStream_t stream);
// One thread per element, u from dropout_uniform: the oracle for the pair-per-hash kernel.
void dropout_forward_reference(float* y, std::uint8_t* mask, const float* x, std::int64_t n,
                               double p, std::uint64_t seed, cudaStream_t stream);

}  // namespace fastdl::cuda
