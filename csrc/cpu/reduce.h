// reduce.h: reductions the dense backward passes need.
//
//   sum_rows: out (n) = sum over i of x (m x n, row-major)   -- the bias gradient db = sum_i dy
#pragma once

#include <cstdint>

namespace fastdl {

template <typename T>
void sum_rows(T* out, const T* x, std::int64_t m, std::int64_t n);

template <typename T>
void sum_rows_reference(T* out, const T* x, std::int64_t m, std::int64_t n);

}  // namespace fastdl
