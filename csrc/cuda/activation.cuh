// activation.cuh: relu, sigmoid and tanh on the GPU (float32), forward and backward from the
// forward output y; gelu (exact or tanh form), forward and backward from the input x. Host-only declarations (included by the bindings and activation.cu);
// launchers run asynchronously on `stream` and throw fastdl::RuntimeError if a launch fails.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

enum class Activation { relu, sigmoid, tanh };

// y = act(x), n contiguous elements.
void activation_forward(Activation act, float* y, const float* x, std::int64_t n,
                        cudaStream_t stream);
// dx = dy * act'(x), from the forward output y.
void activation_backward(Activation act, float* dx, const float* dy, const float* y,
                         std::int64_t n, cudaStream_t stream);
// One thread per element, scalar loads: the oracle for the vectorized path.
void activation_forward_reference(Activation act, float* y, const float* x, std::int64_t n,
                                  cudaStream_t stream);

// gelu: approximate 0 = x Phi(x) (exact), 1 = PyTorch's tanh form. y = gelu(x);
// dx = dy * gelu'(x) from the forward INPUT x.
void gelu_forward(float* y, const float* x, std::int64_t n, int approximate, cudaStream_t stream);
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n, int approximate,
                   cudaStream_t stream);

}  // namespace fastdl::cuda
