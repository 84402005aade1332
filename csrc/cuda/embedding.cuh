// embedding.cuh: the embedding lookup and its gradient on the GPU (float32), see embedding.cu.
//
//   embedding_forward   y (M, D) = weight (V, D)[indices (M,) int64]
//   embedding_backward  dweight (V, D) = 0; dweight[indices[m]] += dy[m] in index order, the
//                       row padding_idx (>= 0; -1: none) left zero. Deterministic: no atomics
//                       on floating-point values.
// Both check every index against [0, V) on the device and, after one synchronising copy of
// the result, throw fastdl::ValueError naming the first bad position, its value and V (the
// CPU kernels' message). Host-only declarations; launchers run on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

void embedding_forward(float* y, const std::int64_t* indices, const float* weight,
                       std::int64_t m, std::int64_t v, std::int64_t d, cudaStream_t stream);
void embedding_backward(float* dweight, const float* dy, const std::int64_t* indices,
                        std::int64_t padding_idx, std::int64_t m, std::int64_t v,
                        std::int64_t d, cudaStream_t stream);

}  // namespace fastdl::cuda
