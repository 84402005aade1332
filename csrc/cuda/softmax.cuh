// softmax.cuh: softmax and log_softmax along the last axis (rows, n) on the GPU (float32),
// forward and backward from the forward output. Host-only declarations; launchers run
// asynchronously on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

// y = softmax(x) (log: log_softmax) of each row of x (rows, n), contiguous.
void softmax_forward(float* y, const float* x, std::int64_t rows, std::int64_t n, bool log,
                     cudaStream_t stream);
// dx = y * (dy - <dy, y>)  (log: dy - exp(y) * sum(dy)), per row.
void softmax_backward(float* dx, const float* dy, const float* y, std::int64_t rows,
                      std::int64_t n, bool log, cudaStream_t stream);
// One thread per row, plain loops: the oracle.
void softmax_forward_reference(float* y, const float* x, std::int64_t rows, std::int64_t n,
                               bool log, cudaStream_t stream);

}  // namespace fastdl::cuda
