// dropout_kernel.h: the dropout forward loop, written in plain C++ and compiled once per ISA
// (dropout.cpp, dropout_avx2.cpp, dropout_avx512.cpp) so the compiler vectorizes the 64-bit hash
// with that ISA's instructions. Integer arithmetic is exact, so every build draws the same mask;
// the hash itself is common/counter_rng.h, shared with the CUDA kernel.
#pragma once

#include <cstdint>

#include "common/counter_rng.h"
#include "cpu/dropout.h"

namespace fastdl {
namespace {

template <typename T>
void dropout_forward_range(T* y, std::uint8_t* mask, const T* x, std::int64_t lo, std::int64_t hi,
                           std::uint64_t key, std::uint32_t threshold, T scale) {
  const std::int64_t pairs_end = lo + (hi - lo) / 2 * 2;
  for (std::int64_t i = lo; i < pairs_end; i += 2) {
    const std::uint64_t z = dropout_pair_hash(key, i >> 1);
    const bool k0 = std::uint32_t(z) >= threshold, k1 = std::uint32_t(z >> 32) >= threshold;
    mask[i] = k0;
    mask[i + 1] = k1;
    y[i] = k0 ? x[i] * scale : T(0);
    y[i + 1] = k1 ? x[i + 1] * scale : T(0);
  }
  if (pairs_end < hi) {
    const bool k = dropout_uniform(key, pairs_end) >= threshold;
    mask[pairs_end] = k;
    y[pairs_end] = k ? x[pairs_end] * scale : T(0);
  }
}

}  // namespace
}  // namespace fastdl
