// optim.cuh: fused optimizer steps and gradient-norm clipping on the GPU (float32), in place.
//
// The same equations, hyper-parameter structs and constant folding as the CPU kernels
// (csrc/cpu/optim.h, optim.cpp): one pass over each parameter per step. g may alias p; every
// other buffer is its own array. Host-only declarations; steps run asynchronously on `stream`,
// grads_norm copies its result back (synchronising).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cpu/optim.h"  // SgdHyper, AdamHyper, RmspropHyper, AdagradHyper (plain structs)

namespace fastdl::cuda {

void sgd_step(float* p, float* buf, const float* g, std::int64_t n, const SgdHyper& h,
              cudaStream_t stream);
void adam_step(float* p, float* m, float* v, float* max_v, const float* g, std::int64_t n,
               const AdamHyper& h, cudaStream_t stream);
void rmsprop_step(float* p, float* square_avg, float* buf, float* grad_avg, const float* g,
                  std::int64_t n, const RmspropHyper& h, cudaStream_t stream);
void adagrad_step(float* p, float* sum_sq, const float* g, std::int64_t n, const AdagradHyper& h,
                  cudaStream_t stream);

// The norm of order norm_type (> 0, or +inf: max |x|) of `count` arrays together, accumulated in
// double over fixed chunks combined in a fixed order (bitwise repeatable); NaN anywhere gives NaN.
double grads_norm(const float* const* x, const std::int64_t* n, std::int64_t count,
                  double norm_type, cudaStream_t stream);
// x *= float(alpha) for every array.
void grads_scale(float* const* x, const std::int64_t* n, std::int64_t count, double alpha,
                 cudaStream_t stream);

}  // namespace fastdl::cuda
