// softmax.cpp: softmax and log_softmax along the last axis of x (rows, n), forward and backward.
//
// Shapes: x, y, dy, dx (rows, n), row-major and contiguous; any other axis is moved last by the
// Python layer (fastdl.ops.softmax).
//   softmax      y = exp(x - m) / s,  m = max x, s = sum exp(x - m)
//                dx = y * (dy - <dy, y>)
//   log_softmax  y = (x - m) - log s
//                dx = dy - exp(y) * sum(dy)
// Subtracting the row max keeps exp in range for logits of any magnitude. A row that is entirely
// -inf (fully masked) gives zeros for softmax and -inf for log_softmax (its log), never NaN; its
// softmax gradient is zero and its log_softmax gradient is dy (as for any -inf entry). NaN
// anywhere in a row, or +inf, makes the whole row NaN, as in PyTorch.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops over std::exp; the oracle for tests.
//   2. the row primitives of softmax_simd.h over a one-lane vector (generic ISA),
//   3. ... over AVX2 and AVX-512 vectors (softmax_avx2.cpp, softmax_avx512.cpp).
// Three passes per row (max; exp and sum; scale), the row staying in L1/L2 after the first. Rows
// are split across threads; a row is never split, so results do not depend on the thread count.
#include "cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/threading.h"
#include "cpu/softmax_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

// A row whose max is -inf: all -inf gives zeros (log: -inf); a NaN among the -inf (the max skips
// NaN) makes the whole row NaN, as it does for any other row.
template <typename T>
void masked_row(T* y, const T* x, std::int64_t n, bool log) {
  bool nan = false;
  for (std::int64_t j = 0; j < n; ++j) nan |= std::isnan(x[j]);
  const T fill = nan ? std::numeric_limits<T>::quiet_NaN()
                     : log ? -std::numeric_limits<T>::infinity() : T(0);
  std::fill(y, y + n, fill);
}

template <typename T>
void softmax_forward_reference(T* y, const T* x, std::int64_t rows, std::int64_t n, bool log) {
  const T ninf = -std::numeric_limits<T>::infinity();
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = ninf;
    for (std::int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
    if (m == ninf) {  // fully masked row (-inf and NaN only: NaN everywhere, as below)
      masked_row(yr, xr, n, log);
      continue;
    }
    T s = T(0);
    for (std::int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    for (std::int64_t j = 0; j < n; ++j)
      yr[j] = log ? (xr[j] - m) - std::log(s) : std::exp(xr[j] - m) / s;
  }
}

template <typename T>
void softmax_backward_reference(T* dx, const T* dy, const T* y, std::int64_t rows, std::int64_t n,
                                bool log) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T *g = dy + r * n, *yr = y + r * n;
    T* d = dx + r * n;
    T acc = T(0);
    for (std::int64_t j = 0; j < n; ++j) acc += log ? g[j] : g[j] * yr[j];
    for (std::int64_t j = 0; j < n; ++j)
      d[j] = log ? g[j] - std::exp(yr[j]) * acc : yr[j] * (g[j] - acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Fast kernels: the generic table here, the SIMD tables in softmax_avx2/avx512.cpp
// ---------------------------------------------------------------------------------------------

namespace {
const SoftmaxTable<float> softmax_table_generic_f32 = make_softmax_table<VecScalar<float>>();
const SoftmaxTable<double> softmax_table_generic_f64 = make_softmax_table<VecScalar<double>>();

// Elements per thread below which rows stay on one thread (see benchmarks/RESULTS.md).
constexpr std::int64_t kGrain = 1 << 14;

int row_threads(std::int64_t rows, std::int64_t n) {
  return int(std::min<std::int64_t>({get_num_threads(), rows, std::max<std::int64_t>(1, rows * n / kGrain)}));
}
}  // namespace

template <>
const SoftmaxTable<float>& softmax_table<float>(Isa isa) {
  return pick_isa(isa, softmax_table_generic_f32, softmax_table_avx2_f32, softmax_table_avx512_f32);
}
template <>
const SoftmaxTable<double>& softmax_table<double>(Isa isa) {
  return pick_isa(isa, softmax_table_generic_f64, softmax_table_avx2_f64, softmax_table_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

template <typename T>
void softmax_forward(T* y, const T* x, std::int64_t rows, std::int64_t n, bool log, Isa isa) {
  const SoftmaxTable<T>& t = softmax_table<T>(isa);
  const T ninf = -std::numeric_limits<T>::infinity();
  const int threads = row_threads(rows, n);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const T m = t.row_max(xr, n);
    if (m == ninf) {
      masked_row(yr, xr, n, log);
    } else if (log) {
      t.shift(yr, xr, n, m, std::log(t.exp_sum(xr, n, m)));
    } else {
      t.scale(yr, n, T(1) / t.exp_sum_store(yr, xr, n, m));
    }
  }
}

template <typename T>
void softmax_backward(T* dx, const T* dy, const T* y, std::int64_t rows, std::int64_t n, bool log,
                      Isa isa) {
  const SoftmaxTable<T>& t = softmax_table<T>(isa);
  const int threads = row_threads(rows, n);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T *g = dy + r * n, *yr = y + r * n;
    T* d = dx + r * n;
    if (log)
      t.log_softmax_bwd(d, g, yr, n, t.sum(g, n));
    else
      t.softmax_bwd(d, g, yr, n, t.dot(g, yr, n));
  }
}

#define FASTDL_INSTANTIATE(T)                                                                     \
  template void softmax_forward<T>(T*, const T*, std::int64_t, std::int64_t, bool, Isa);          \
  template void softmax_backward<T>(T*, const T*, const T*, std::int64_t, std::int64_t, bool, Isa); \
  template void softmax_forward_reference<T>(T*, const T*, std::int64_t, std::int64_t, bool);     \
  template void softmax_backward_reference<T>(T*, const T*, const T*, std::int64_t, std::int64_t, \
                                              bool);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
