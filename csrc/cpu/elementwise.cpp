// elementwise.cpp: bias_add, y (outer, c, inner) = x + b (c,) broadcast along axis 1.
//
// Shapes: x, y (outer, c, inner) contiguous, b (c,). No backward here: db = sum of dy over outer
// and inner is reduce.h's sum_rows. One variant: plain loops the compiler vectorizes (a stream at
// memory bandwidth needs nothing cleverer); rows of inner elements split across threads.
#include "cpu/elementwise.h"

#include "cpu/parallel_chunks.h"

namespace fastdl {

namespace {
constexpr std::int64_t kGrain = 1 << 16;
}

template <typename T>
void bias_add(T* y, const T* x, const T* b, std::int64_t outer, std::int64_t c,
              std::int64_t inner) {
  if (inner == 1) {  // (outer, c): add the bias vector to every row
    parallel_chunks(outer, kGrain / std::max<std::int64_t>(c, 1), [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t o = lo; o < hi; ++o)
#pragma omp simd
        for (std::int64_t j = 0; j < c; ++j) y[o * c + j] = x[o * c + j] + b[j];
    });
    return;
  }
  // (outer * c) rows of inner elements, each plus one bias value.
  parallel_chunks(outer * c, kGrain / inner, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t r = lo; r < hi; ++r) {
      const T v = b[r % c];
#pragma omp simd
      for (std::int64_t k = 0; k < inner; ++k) y[r * inner + k] = x[r * inner + k] + v;
    }
  });
}

template void bias_add<float>(float*, const float*, const float*, std::int64_t, std::int64_t, std::int64_t);
template void bias_add<double>(double*, const double*, const double*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace fastdl
