// dropout_kernel.h: the dropout forward loop, written in plain C++ and compiled once per ISA
// (dropout.cpp, dropout_avx2.cpp, dropout_avx512.cpp) so the compiler vectorizes the 64-bit hash
// with that ISA's instructions. Integer arithmetic is exact, so every build draws the same mask.
#pragma once

#include <cstdint>

#include "cpu/dropout.h"

namespace fastdl {
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection with full avalanche.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The 32-bit uniform of element i: half of the hash of pair i / 2.
inline std::uint32_t dropout_uniform(std::uint64_t key, std::int64_t i) {
  const std::uint64_t z = mix64(key + (std::uint64_t(i >> 1) + 1) * kGolden);
  return std::uint32_t(i & 1 ? z >> 32 : z);
}

template <typename T>
void dropout_forward_range(T* y, std::uint8_t* mask, const T* x, std::int64_t lo, std::int64_t hi,
                           std::uint64_t key, std::uint32_t threshold, T scale) {
  const std::int64_t pairs_end = lo + (hi - lo) / 2 * 2;
  for (std::int64_t i = lo; i < pairs_end; i += 2) {
    const std::uint64_t z = mix64(key + (std::uint64_t(i >> 1) + 1) * kGolden);
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
