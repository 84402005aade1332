// counter_rng.h: the counter-based random numbers of dropout, shared by the CPU kernels
// (csrc/cpu/dropout*) and the CUDA kernels (csrc/cuda/dropout.cu) so both draw the SAME mask
// bit for bit from the same seed.
//
//   key         = mix64(seed ^ 0x5DEECE66D)             -- nearby seeds, unrelated streams
//   u(key, i)   = half (low for even i, high for odd i) of mix64(key + (i / 2 + 1) * golden)
//   keep i      iff u(key, i) >= threshold(p) = floor(p * 2^32)
// mix64 is splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection with full avalanche.
// Integer arithmetic only, so every compiler, ISA and GPU agrees.
//
// Everything has internal linkage (an unnamed namespace): the CPU files that include this are
// compiled with different -m flags, and an inline function with external linkage would let the
// linker keep the AVX-512 copy for a generic caller. FASTDL_HOST_DEVICE marks the functions
// callable from CUDA device code when nvcc compiles the includer, and is empty otherwise.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FASTDL_HOST_DEVICE __host__ __device__
#else
#define FASTDL_HOST_DEVICE
#endif

namespace fastdl {
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

FASTDL_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The hash of pair i / 2: its low half is element 2k's uniform, its high half element 2k+1's.
FASTDL_HOST_DEVICE inline std::uint64_t dropout_pair_hash(std::uint64_t key, std::int64_t pair) {
  return mix64(key + (std::uint64_t(pair) + 1) * kGolden);
}

// The 32-bit uniform of element i.
FASTDL_HOST_DEVICE inline std::uint32_t dropout_uniform(std::uint64_t key, std::int64_t i) {
  const std::uint64_t z = dropout_pair_hash(key, i >> 1);
  return std::uint32_t(i & 1 ? z >> 32 : z);
}

// Host-side parameters of a dropout call (p < 1; p = 1 drops everything without hashing).
inline std::uint64_t dropout_key(std::uint64_t seed) { return mix64(seed ^ 0x5DEECE66DULL); }
inline std::uint32_t dropout_threshold(double p) { return std::uint32_t(p * 4294967296.0); }

}  // namespace
}  // namespace fastdl
