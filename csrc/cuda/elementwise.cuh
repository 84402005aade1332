// elementwise.cuh: the bias add of the autograd layer on the GPU (float32).
//
//   bias_add  y (outer, c, inner) = x + b (c,) broadcast along axis 1
// Its gradient, db = dy summed over outer and inner, is reduce.cuh's sum_rows. Host-only
// declarations; the launcher runs asynchronously on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

void bias_add(float* y, const float* x, const float* b, std::int64_t outer, std::int64_t c,
              std::int64_t inner, cudaStream_t stream);

}  // namespace fastdl::cuda
