// reduce.cpp: out[j] = sum_i x[i, j] for a row-major m x n x (the bias gradient of a dense or
// batched layer). No backward: it is itself a backward.
//
// Rows are summed in blocks of kBlock into a partial that is then added to the total, so the
// rounding error grows like m / kBlock + kBlock rather than m. Threads split the columns, never
// the rows, so the order of additions (and the bits of the result) do not depend on the thread
// count.
#include "cpu/reduce.h"

#include <algorithm>

#include "common/threading.h"

namespace fastdl {

template <typename T>
void sum_rows_reference(T* out, const T* x, std::int64_t m, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) {
    T s = T(0);
    for (std::int64_t i = 0; i < m; ++i) s += x[i * n + j];
    out[j] = s;
  }
}

namespace {
constexpr std::int64_t kBlock = 256;  // rows per partial sum
constexpr std::int64_t kCols = 512;   // columns per task: the partial stays in L1

template <typename T>
void sum_rows_columns(T* out, const T* x, std::int64_t m, std::int64_t n, std::int64_t j0,
                      std::int64_t j1) {
  T partial[kCols];
  const std::int64_t w = j1 - j0;
  std::fill(out + j0, out + j1, T(0));
  for (std::int64_t i0 = 0; i0 < m; i0 += kBlock) {
    const std::int64_t i1 = std::min(m, i0 + kBlock);
    std::fill(partial, partial + w, T(0));
    for (std::int64_t i = i0; i < i1; ++i) {
      const T* row = x + i * n + j0;
#pragma omp simd
      for (std::int64_t j = 0; j < w; ++j) partial[j] += row[j];
    }
#pragma omp simd
    for (std::int64_t j = 0; j < w; ++j) out[j0 + j] += partial[j];
  }
}
}  // namespace

template <typename T>
void sum_rows(T* out, const T* x, std::int64_t m, std::int64_t n) {
  const std::int64_t tasks = (n + kCols - 1) / kCols;
  // Worth a thread only past ~64K elements of input.
  const int threads = int(std::min<std::int64_t>({get_num_threads(), tasks, std::max<std::int64_t>(1, m * n / 65536)}));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t t = 0; t < tasks; ++t)
    sum_rows_columns(out, x, m, n, t * kCols, std::min(n, (t + 1) * kCols));
}

template void sum_rows<float>(float*, const float*, std::int64_t, std::int64_t);
template void sum_rows<double>(double*, const double*, std::int64_t, std::int64_t);
template void sum_rows_reference<float>(float*, const float*, std::int64_t, std::int64_t);
template void sum_rows_reference<double>(double*, const double*, std::int64_t, std::int64_t);

}  // namespace fastdl
