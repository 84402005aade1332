// attention.cuh: flash-style scaled dot-product attention on the GPU (float32), forward and
// backward (FlashAttention-2's structure; see attention.cu for the kernels).
//
//   q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out / dout (B, H, Sq, Dv),
//   lse (B, H, Sq); dq, dk, dv the shapes of q, k, v. All C-contiguous device memory.
//
// Host-only declarations, included by the bindings (plain C++) and by attention.cu. Launchers
// run asynchronously on `stream` and throw fastdl::RuntimeError on a launch failure.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

// out = softmax(scale q kᵀ, masked) v; lse = log sum_j exp(scale q_i . k_j) over the unmasked
// keys (natural log). causal: query i sees keys j <= i (top-left aligned). A row without an
// unmasked key (Sk = 0) gets out = 0, lse = -inf.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       std::int64_t b, std::int64_t h, std::int64_t sq, std::int64_t sk,
                       std::int64_t d, std::int64_t dv, bool causal, float scale,
                       cudaStream_t stream);

// dq, dk, dv written (=) from dout and the forward's out and lse: D_i = rowsum(dout_i out_i),
// P recomputed from lse, dS = P (dP - D_i). Rows with lse = -inf contribute nothing.
// Deterministic (no atomics): dK, dV by one pass over key tiles, dQ by a separate pass.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        std::int64_t b, std::int64_t h, std::int64_t sq, std::int64_t sk,
                        std::int64_t d, std::int64_t dvdim, bool causal, float scale,
                        cudaStream_t stream);

}  // namespace fastdl::cuda
