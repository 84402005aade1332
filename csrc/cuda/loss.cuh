// loss.cuh: losses with MEAN reduction and their gradients on the GPU (float32).
//
//   cross_entropy   logits (N, C), target int64 (N,) in [0, C):
//                   loss = mean_i [log sum_j exp(x_ij) - x_i,t_i],  probs = softmax(logits)
//                   dlogits = (probs - onehot(target)) / N
//   mse             loss = mean (p - t)^2                   dpred = 2 (p - t) / numel
//   bce_with_logits loss = mean [max(x, 0) - x t + log1p(exp(-|x|))]
//                   dlogits = (sigmoid(x) - t) / numel
// Host-only declarations. The forward launchers return the loss on the host, so they synchronise
// `stream`; the losses are summed in double in a fixed order (bitwise repeatable). Targets are
// checked on the device as they are read: an index outside [0, C) is never dereferenced, and the
// launcher throws fastdl::ValueError naming the first bad index and its value (this check, too,
// synchronises cross_entropy_backward's stream). n (or numel) must be > 0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

double cross_entropy_forward(float* probs, const float* logits, const std::int64_t* target,
                             std::int64_t n, std::int64_t c, cudaStream_t stream);
void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* target,
                            std::int64_t n, std::int64_t c, cudaStream_t stream);
double mse_forward(const float* pred, const float* target, std::int64_t n, cudaStream_t stream);
void mse_backward(float* dpred, const float* pred, const float* target, std::int64_t n,
                  cudaStream_t stream);
double bce_with_logits_forward(const float* logits, const float* target, std::int64_t n,
                               cudaStream_t stream);
void bce_with_logits_backward(float* dlogits, const float* logits, const float* target,
                              std::int64_t n, cudaStream_t stream);

}  // namespace fastdl::cuda
