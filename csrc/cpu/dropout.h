// dropout.h: inverted dropout with a counter-based random mask.
//
//   forward:  mask[i] = u(seed, i) >= p  (1 = kept),  y[i] = mask[i] ? x[i] / (1 - p) : 0
//   backward: dx[i] = mask[i] ? dy[i] / (1 - p) : 0
// u(seed, i) is a uniform 32-bit number from a splitmix64 hash of (seed, i / 2) (two 32-bit
// halves per hash), a pure function of the seed and the element's index: the mask is the same
// for every thread count and every ISA. p = 1 gives all zeros and a zero mask.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// Forward over elements [lo, hi) of the whole array (lo even): single-threaded.
template <typename T>
using dropout_fn = void (*)(T* y, std::uint8_t* mask, const T* x, std::int64_t lo, std::int64_t hi,
                            std::uint64_t key, std::uint32_t threshold, T scale);

template <typename T>
struct DropoutTable {
  dropout_fn<T> forward;
};

extern const DropoutTable<float> dropout_table_avx2_f32;
extern const DropoutTable<double> dropout_table_avx2_f64;
extern const DropoutTable<float> dropout_table_avx512_f32;
extern const DropoutTable<double> dropout_table_avx512_f64;

template <typename T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, std::int64_t n, double p,
                     std::uint64_t seed, Isa isa = cpu_isa());
template <typename T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, std::int64_t n, double p);

// Element-at-a-time: the oracle for tests.
template <typename T>
void dropout_forward_reference(T* y, std::uint8_t* mask, const T* x, std::int64_t n, double p,
                               std::uint64_t seed);

}  // namespace fastdl
