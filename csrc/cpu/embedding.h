// embedding.h: the embedding lookup (a row gather) and its gradient (a row scatter-add).
//
//   forward   y (M, D) = weight (V, D)[indices (M,)]
//   backward  dweight (V, D) = 0, then dweight[indices[m]] += dy[m] for m = 0, 1, ..., M - 1
//             (repeated indices accumulate in index order; the row padding_idx, when >= 0,
//             stays zero: PyTorch's rule)
// indices are int64; every one must lie in [0, V): the kernels check them as they read them and
// throw fastdl::ValueError "indices: indices[m] = value is out of range [0, V) with V = ..."
// naming the first bad position (the outputs are then partly written). padding_idx is -1
// (none) or in [0, V) (the binding checks it). All arrays C-contiguous; float and double.
#pragma once

#include <cstdint>

namespace fastdl {

template <typename T>
void embedding_forward(T* y, const std::int64_t* indices, const T* weight, std::int64_t m,
                       std::int64_t v, std::int64_t d);
template <typename T>
void embedding_backward(T* dweight, const T* dy, const std::int64_t* indices,
                        std::int64_t padding_idx, std::int64_t m, std::int64_t v,
                        std::int64_t d);

// Plain loops, one thread: the oracles of the two kernels above (same checks, same results).
template <typename T>
void embedding_forward_reference(T* y, const std::int64_t* indices, const T* weight,
                                 std::int64_t m, std::int64_t v, std::int64_t d);
template <typename T>
void embedding_backward_reference(T* dweight, const T* dy, const std::int64_t* indices,
                                  std::int64_t padding_idx, std::int64_t m, std::int64_t v,
                                  std::int64_t d);

}  // namespace fastdl
