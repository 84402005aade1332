// loss.cpp: cross-entropy (fused with softmax), mean squared error and binary cross-entropy with
// logits; forward (mean loss) and backward (gradient of the mean).
//
// Shapes: cross_entropy logits/probs/dlogits (N, C), target (N,) int64; mse and bce: any shape,
// pred/logits and target alike (n elements, contiguous).
//   cross_entropy  per row, one fused sweep of the softmax row primitives (softmax.h):
//                  m = max x, probs = exp(x - m) (summing s), probs /= s,
//                  loss_i = (m - x[t]) + log s  -- exact for logits of any magnitude (1e30,
//                  -1e30); a row of all -inf gives probs 0 and loss NaN (undefined, as PyTorch).
//                  backward: (probs - onehot) / N, from the probs forward returned.
//   mse            mean (p - t)^2;  backward 2 (p - t) / n
//   bce            mean max(x, 0) - x t + log1p(exp(-|x|)) (never overflows);
//                  backward (sigmoid(x) - t) / n with the vectorized sigmoid (activation.h)
// Mean reductions sum fixed blocks of kBlock elements (or rows) in double, each block on one
// thread, then add the block sums in order: bitwise the same result at any thread count.
//
// Variants: cross_entropy_forward_reference (plain loops over std::exp) is the oracle; the fast
// forward runs the row primitives per row for C > 16 and, for narrow rows (C <= 16, the
// per-pixel losses of segmentation), one exp call per block of rows (cross_entropy_narrow).
// mse and bce are plain loops the compiler vectorizes (bce forward calls std::log1p per element:
// it is not on a hot path).
#include "cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "common/threading.h"
#include "cpu/activation.h"
#include "cpu/parallel_chunks.h"
#include "cpu/softmax.h"

namespace fastdl {

namespace {
constexpr std::int64_t kBlock = 1 << 14;  // elements per partial sum of a mean loss
constexpr std::int64_t kGrain = 1 << 16;  // elements per thread worth waking a second one

// sum over blocks of f(lo, hi) (a double), blocks in parallel, combined in order.
template <class F>
double blocked_sum(std::int64_t n, F f) {
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(std::size_t(std::max<std::int64_t>(blocks, 1)), 0.0);
  const int threads = int(std::min<std::int64_t>({get_num_threads(), blocks, std::max<std::int64_t>(1, n / kGrain)}));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t b = 0; b < blocks; ++b) part[b] = f(b * kBlock, std::min(n, (b + 1) * kBlock));
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}
}  // namespace

std::int64_t first_bad_target(const std::int64_t* target, std::int64_t n, std::int64_t c) {
  for (std::int64_t i = 0; i < n; ++i)
    if (target[i] < 0 || target[i] >= c) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// cross_entropy
// ---------------------------------------------------------------------------------------------

template <typename T>
T cross_entropy_forward_reference(T* probs, const T* logits, const std::int64_t* target,
                                  std::int64_t n, std::int64_t c) {
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const T* x = logits + i * c;
    T m = -std::numeric_limits<T>::infinity();
    for (std::int64_t j = 0; j < c; ++j) m = std::max(m, x[j]);
    T s = T(0);
    for (std::int64_t j = 0; j < c; ++j) s += std::exp(x[j] - m);
    for (std::int64_t j = 0; j < c; ++j) probs[i * c + j] = std::exp(x[j] - m) / s;
    total += double((m - x[target[i]]) + std::log(s));
  }
  return T(total / double(n));
}

// Rows [lo, hi) of a narrow problem (C <= kNarrowC), returning the sum of their losses. A row of
// C < one vector would leave the row primitives mostly masked tails (three calls and two partial
// vectors per row, ~90 ns for C = 4); instead each sub-block of kNarrowRows rows is shifted by
// its row maxima into probs, exponentiated by ONE exp_sum_store call over the contiguous
// sub-block (in place), then summed and scaled row by row. exp((x - m) - 0) is the same value
// the row path computes; only the order of each row's sum differs, and it is fixed.
constexpr std::int64_t kNarrowC = 16;
constexpr std::int64_t kNarrowRows = 256;

template <typename T>
double cross_entropy_narrow(T* probs, const T* logits, const std::int64_t* target, std::int64_t lo,
                            std::int64_t hi, std::int64_t c, const SoftmaxTable<T>& t) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T mx[kNarrowRows];
  double total = 0.0;
  for (std::int64_t r0 = lo; r0 < hi; r0 += kNarrowRows) {
    const std::int64_t rows = std::min(kNarrowRows, hi - r0);
    const T* x = logits + r0 * c;
    T* p = probs + r0 * c;
    for (std::int64_t r = 0; r < rows; ++r) {
      T m = ninf;
      // x > m is false for NaN: NaN is skipped here (as row_max) and propagates through exp.
      for (std::int64_t j = 0; j < c; ++j) m = x[r * c + j] > m ? x[r * c + j] : m;
      mx[r] = m;
      const T sh = m == ninf ? T(0) : m;  // an all -inf row: exp(-inf) = 0 rather than NaN
      for (std::int64_t j = 0; j < c; ++j) p[r * c + j] = x[r * c + j] - sh;
    }
    t.exp_sum_store(p, p, rows * c, T(0));
    for (std::int64_t r = 0; r < rows; ++r) {
      T* pr = p + r * c;
      const T* xr = x + r * c;
      if (mx[r] == ninf) {  // every logit -inf: probs 0 (NaN if one is NaN), the loss undefined
        bool nan = false;
        for (std::int64_t j = 0; j < c; ++j) nan |= std::isnan(xr[j]);
        std::fill(pr, pr + c, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
        total += std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      T s = T(0);
      for (std::int64_t j = 0; j < c; ++j) s += pr[j];
      const T inv = T(1) / s;
      for (std::int64_t j = 0; j < c; ++j) pr[j] *= inv;
      total += double((mx[r] - xr[target[r0 + r]]) + std::log(s));
    }
  }
  return total;
}

template <typename T>
T cross_entropy_forward(T* probs, const T* logits, const std::int64_t* target, std::int64_t n,
                        std::int64_t c, Isa isa) {
  FASTDL_CHECK(n > 0, ValueError, "cross_entropy: the mean over an empty batch is undefined");
  const std::int64_t bad = first_bad_target(target, n, c);
  FASTDL_CHECK(bad < 0, ValueError, "cross_entropy: target[", bad, "] = ", target[bad],
               " is out of range [0, C) with C = ", c);
  const SoftmaxTable<T>& t = softmax_table<T>(isa);
  const T ninf = -std::numeric_limits<T>::infinity();
  // Rows per block so a block holds about kBlock logits.
  const std::int64_t rows_per = std::max<std::int64_t>(1, kBlock / std::max<std::int64_t>(c, 1));
  const std::int64_t blocks = (n + rows_per - 1) / rows_per;
  std::vector<double> part(std::size_t(blocks), 0.0);
  // exp-bound like softmax: a thread per 16K logits (softmax.cpp)
  const int threads = int(std::min<std::int64_t>({get_num_threads(), blocks, std::max<std::int64_t>(1, n * c / (1 << 14))}));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t b = 0; b < blocks; ++b) {
    if (c <= kNarrowC) {
      part[std::size_t(b)] =
          cross_entropy_narrow(probs, logits, target, b * rows_per, std::min(n, (b + 1) * rows_per), c, t);
      continue;
    }
    double s_block = 0.0;
    for (std::int64_t i = b * rows_per; i < std::min(n, (b + 1) * rows_per); ++i) {
      const T* x = logits + i * c;
      T* p = probs + i * c;
      const T m = t.row_max(x, c);
      if (m == ninf) {  // every logit -inf: probs 0 (NaN if one is NaN), the loss undefined
        bool nan = false;
        for (std::int64_t j = 0; j < c; ++j) nan |= std::isnan(x[j]);
        std::fill(p, p + c, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
        s_block += std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      const T s = t.exp_sum_store(p, x, c, m);
      t.scale(p, c, T(1) / s);
      s_block += double((m - x[target[i]]) + std::log(s));
    }
    part[std::size_t(b)] = s_block;
  }
  double sum = 0.0;
  for (double v : part) sum += v;
  return T(sum / double(n));
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* probs, const std::int64_t* target,
                            std::int64_t n, std::int64_t c) {
  FASTDL_CHECK(n > 0, ValueError, "cross_entropy_backward: the mean over an empty batch is undefined");
  const std::int64_t bad = first_bad_target(target, n, c);
  FASTDL_CHECK(bad < 0, ValueError, "cross_entropy_backward: target[", bad, "] = ", target[bad],
               " is out of range [0, C) with C = ", c);
  const T inv = T(1) / T(n);
  parallel_chunks(n * c, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t k = lo; k < hi; ++k) dlogits[k] = probs[k] * inv;
  });
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t k = i * c + target[i];
    dlogits[k] = (probs[k] - T(1)) * inv;
  }
}

// ---------------------------------------------------------------------------------------------
// mse
// ---------------------------------------------------------------------------------------------

template <typename T>
T mse_forward(const T* pred, const T* target, std::int64_t n) {
  FASTDL_CHECK(n > 0, ValueError, "mse_loss: the mean over zero elements is undefined");
  const double s = blocked_sum(n, [&](std::int64_t lo, std::int64_t hi) {
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t k = lo; k < hi; ++k) {
      const double d = double(pred[k]) - double(target[k]);
      acc += d * d;
    }
    return acc;
  });
  return T(s / double(n));
}

template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, std::int64_t n) {
  FASTDL_CHECK(n > 0, ValueError, "mse_loss_backward: the mean over zero elements is undefined");
  const T scale = T(2) / T(n);
  parallel_chunks(n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t k = lo; k < hi; ++k) dpred[k] = scale * (pred[k] - target[k]);
  });
}

// ---------------------------------------------------------------------------------------------
// binary cross-entropy with logits
// ---------------------------------------------------------------------------------------------

template <typename T>
T bce_with_logits_forward(const T* logits, const T* target, std::int64_t n) {
  FASTDL_CHECK(n > 0, ValueError,
               "binary_cross_entropy_with_logits: the mean over zero elements is undefined");
  const double s = blocked_sum(n, [&](std::int64_t lo, std::int64_t hi) {
    double acc = 0.0;
    for (std::int64_t k = lo; k < hi; ++k) {
      const double x = double(logits[k]), t = double(target[k]);
      acc += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::abs(x)));
    }
    return acc;
  });
  return T(s / double(n));
}

template <typename T>
void bce_with_logits_backward(T* dlogits, const T* logits, const T* target, std::int64_t n,
                              Isa isa) {
  FASTDL_CHECK(n > 0, ValueError,
               "binary_cross_entropy_with_logits_backward: the mean over zero elements is undefined");
  const auto sigmoid = activation_table<T>(isa).forward[int(Activation::sigmoid)];
  const T inv = T(1) / T(n);
  parallel_chunks(n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    sigmoid(dlogits + lo, logits + lo, hi - lo);
    for (std::int64_t k = lo; k < hi; ++k) dlogits[k] = (dlogits[k] - target[k]) * inv;
  });
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template T cross_entropy_forward<T>(T*, const T*, const std::int64_t*, std::int64_t,          \
                                      std::int64_t, Isa);                                       \
  template void cross_entropy_backward<T>(T*, const T*, const std::int64_t*, std::int64_t,      \
                                          std::int64_t);                                        \
  template T cross_entropy_forward_reference<T>(T*, const T*, const std::int64_t*,              \
                                                std::int64_t, std::int64_t);                    \
  template T mse_forward<T>(const T*, const T*, std::int64_t);                                  \
  template void mse_backward<T>(T*, const T*, const T*, std::int64_t);                          \
  template T bce_with_logits_forward<T>(const T*, const T*, std::int64_t);                      \
  template void bce_with_logits_backward<T>(T*, const T*, const T*, std::int64_t, Isa);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
