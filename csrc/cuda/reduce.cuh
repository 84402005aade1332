// reduce.cuh: reductions the dense backward passes need, on the GPU.
//
//   sum_rows: out (n) = sum over i of x (m x n, row-major)   -- the bias gradient db = sum_i dy
//
// Host-only declarations (included by the bindings and by reduce.cu). Runs asynchronously on
// `stream`; throws fastdl::RuntimeError if a launch or the stream-ordered workspace fails.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

void sum_rows(float* out, const float* x, std::int64_t m, std::int64_t n, cudaStream_t stream);

}  // namespace fastdl::cuda
