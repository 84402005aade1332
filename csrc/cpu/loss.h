// loss.h: losses with MEAN reduction and their gradients.
//
//   cross_entropy   logits (N, C), target int64 (N,) in [0, C):
//                   loss = mean_i [log sum_j exp(x_ij) - x_i,t_i],  probs = softmax(logits)
//                   dlogits = (probs - onehot(target)) / N
//   mse             loss = mean (p - t)^2                   dpred = 2 (p - t) / numel
//   bce_with_logits loss = mean [max(x, 0) - x t + log1p(exp(-|x|))]
//                   dlogits = (sigmoid(x) - t) / numel
// Mean losses are accumulated in double over fixed blocks, combined in a fixed order: the same
// bits for any thread count. numel (or N) must be > 0 (the mean of nothing is undefined).
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

template <typename T>
T cross_entropy_forward(T* probs, const T* logits, const std::int64_t* target, std::int64_t n,
                        std::int64_t c, Isa isa = cpu_isa());
template <typename T>
void cross_entropy_backward(T* dlogits, const T* probs, const std::int64_t* target,
                            std::int64_t n, std::int64_t c);
template <typename T>
T cross_entropy_forward_reference(T* probs, const T* logits, const std::int64_t* target,
                                  std::int64_t n, std::int64_t c);

template <typename T>
T mse_forward(const T* pred, const T* target, std::int64_t n);
template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, std::int64_t n);

template <typename T>
T bce_with_logits_forward(const T* logits, const T* target, std::int64_t n);
template <typename T>
void bce_with_logits_backward(T* dlogits, const T* logits, const T* target, std::int64_t n,
                              Isa isa = cpu_isa());

// Index of the first target outside [0, c), or -1.
std::int64_t first_bad_target(const std::int64_t* target, std::int64_t n, std::int64_t c);

}  // namespace fastdl
