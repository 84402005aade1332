// norm.cuh: batch normalisation on the GPU (float32), forward (training and eval) and backward;
// layer normalisation over the rows of an (M, D) array, forward and backward.
//
//   batch_norm: x, y, dy, dx (N, C, L) C-contiguous (fastdl.ops reshapes (N, C) and (N, C, *) to
//   this); weight, bias, running_mean, running_var, save_mean, save_invstd, dweight, dbias (C,).
//   layer_norm: x, y, dy, dx (M, D); weight, bias, dweight, dbias (D,); mean, rstd (M,).
//
// Host-only declarations, included by the bindings (plain C++) and by norm.cu. Pointers are
// device memory; launchers run asynchronously on `stream` and throw fastdl::ValueError /
// fastdl::RuntimeError. Optional pointers are null.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

// training: normalise with the batch statistics over N and L (biased variance), save them
// (save_invstd = 1 / sqrt(var + eps)) and, when running_mean / running_var are given, update
// them in place: (1 - momentum) old + momentum batch, the variance unbiased (m / (m - 1),
// m = N*L >= 2). eval: normalise with running_mean / running_var (required) and save those.
// weight / bias may be null (1 and 0).
void batch_norm_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                        const float* weight, const float* bias, float* running_mean,
                        float* running_var, std::int64_t n, std::int64_t c, std::int64_t l,
                        bool training, double momentum, double eps, cudaStream_t stream);
// dweight = sum(dy * xhat), dbias = sum(dy) over N and L (always written); training:
// dx = weight invstd (dy - mean(dy) - xhat mean(dy xhat)); eval: dx = weight invstd dy.
void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* weight, const float* save_mean,
                         const float* save_invstd, std::int64_t n, std::int64_t c,
                         std::int64_t l, bool training, cudaStream_t stream);

// mean, rstd = each row's mean and 1 / sqrt(biased var + eps); y = (x - mean) rstd weight + bias
// (weight / bias null: 1 and 0).
void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight,
                        const float* bias, std::int64_t m, std::int64_t d, double eps,
                        cudaStream_t stream);
// dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy weight; dweight = sum_rows dy xhat and
// dbias = sum_rows dy (always written; fixed order, no atomics).
void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* weight, const float* mean,
                         const float* rstd, std::int64_t m, std::int64_t d, cudaStream_t stream);

}  // namespace fastdl::cuda
