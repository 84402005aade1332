// attention.h: scaled dot-product attention, FlashAttention-2 style (tiled, online softmax, only
// the log-sum-exp saved), forward and backward; attention.cpp documents the semantics.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// q (b, h, sq, d), k (b, h, sk, d), v (b, h, sk, dv), out (b, h, sq, dv), lse (b, h, sq), all
// C-contiguous. causal: query i sees keys j <= i (top-left aligned).
template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, std::int64_t b,
                       std::int64_t h, std::int64_t sq, std::int64_t sk, std::int64_t d,
                       std::int64_t dv, bool causal, double scale, Isa isa = cpu_isa());
// dq, dk, dv written (=) from dout and the forward's inputs, out and lse.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, std::int64_t b, std::int64_t h,
                        std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dv_,
                        bool causal, double scale, Isa isa = cpu_isa());

// Plain loops in double, one row of scores at a time: the test oracle.
template <typename T>
void attention_forward_reference(T* out, T* lse, const T* q, const T* k, const T* v,
                                 std::int64_t b, std::int64_t h, std::int64_t sq, std::int64_t sk,
                                 std::int64_t d, std::int64_t dv, bool causal, double scale);
template <typename T>
void attention_backward_reference(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k,
                                  const T* v, const T* out, const T* lse, std::int64_t b,
                                  std::int64_t h, std::int64_t sq, std::int64_t sk,
                                  std::int64_t d, std::int64_t dv_, bool causal, double scale);

}  // namespace fastdl
