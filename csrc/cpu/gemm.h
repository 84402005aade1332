// gemm.h: fastdl's internal matrix product, used by linear, matmul, conv, LSTM and attention.
//
//   C (m x n, row stride ldc, unit column stride)
//     = act( alpha * A (m x k) * B (k x n) + beta * C + bias )
//
// A and B are read through arbitrary element strides (rs = between rows, cs = between columns),
// so a transposed operand is just swapped strides and never copied; the packing routines absorb
// the layout. beta == 0 means C is not read (it may hold garbage). The bias is per row (length m)
// or per column (length n); act is applied last.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

enum class Act : int { none = 0, relu = 1 };
enum class BiasAxis : int { row = 0, col = 1 };  // bias[i] (length m) or bias[j] (length n)

template <typename T>
struct GemmParams {
  T alpha = T(1);
  T beta = T(0);
  const T* bias = nullptr;
  BiasAxis bias_axis = BiasAxis::col;
  Act act = Act::none;
};

// The fast path: packed, cache-blocked, OpenMP over blocks of C, micro-kernel chosen by `isa`.
template <typename T>
void gemm(T* c, std::int64_t ldc,
          const T* a, std::int64_t rsa, std::int64_t csa,
          const T* b, std::int64_t rsb, std::int64_t csb,
          std::int64_t m, std::int64_t n, std::int64_t k,
          const GemmParams<T>& p = {}, Isa isa = cpu_isa());

// `batch` independent products; each operand advances by its batch stride (0 broadcasts it).
template <typename T>
void gemm_batched(T* c, std::int64_t sc, std::int64_t ldc,
                  const T* a, std::int64_t sa, std::int64_t rsa, std::int64_t csa,
                  const T* b, std::int64_t sb, std::int64_t rsb, std::int64_t csb,
                  std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                  const GemmParams<T>& p = {}, Isa isa = cpu_isa());

// Plain triple loop: the test oracle for the packed path.
template <typename T>
void gemm_reference(T* c, std::int64_t ldc,
                    const T* a, std::int64_t rsa, std::int64_t csa,
                    const T* b, std::int64_t rsb, std::int64_t csb,
                    std::int64_t m, std::int64_t n, std::int64_t k, const GemmParams<T>& p = {});

}  // namespace fastdl
