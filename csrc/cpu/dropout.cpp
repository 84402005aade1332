// dropout.cpp: inverted dropout, forward and backward.
//
// Shapes: x, y, dy, dx, mask: any shape, n contiguous elements; mask uint8, 1 = kept.
//   forward   keep i iff u(seed, i) >= round(p * 2^32)  (u uniform on 32 bits, dropout_kernel.h)
//             y = keep ? x / (1 - p) : 0       -- P(keep) = 1 - p up to 2^-32
//   backward  dx = mask ? dy / (1 - p) : 0
// p = 0 keeps everything (y = x), p = 1 drops everything (zeros, mask 0; no division by zero).
// The mask is a pure function of (seed, element index): identical for any thread count and ISA.
//
// Variants: dropout_forward_reference (element at a time) is the oracle; dropout_kernel.h is the
// same arithmetic in pairs (one 64-bit hash per two elements), compiled per ISA.
#include "cpu/dropout.h"

#include <algorithm>
#include <cstring>

#include "cpu/dropout_kernel.h"
#include "cpu/parallel_chunks.h"

namespace fastdl {

namespace {
const DropoutTable<float> dropout_table_generic_f32 = {&dropout_forward_range<float>};
const DropoutTable<double> dropout_table_generic_f64 = {&dropout_forward_range<double>};
constexpr std::int64_t kGrain = 1 << 16;

template <typename T>
const DropoutTable<T>& dropout_table(Isa isa) {
  if constexpr (sizeof(T) == 4)
    return pick_isa(isa, dropout_table_generic_f32, dropout_table_avx2_f32, dropout_table_avx512_f32);
  else
    return pick_isa(isa, dropout_table_generic_f64, dropout_table_avx2_f64, dropout_table_avx512_f64);
}

struct DropoutParams {
  std::uint64_t key;
  std::uint32_t threshold;
};

DropoutParams params(double p, std::uint64_t seed) {
  // common/counter_rng.h: the same key and threshold as the CUDA kernel
  return {dropout_key(seed), dropout_threshold(p)};
}
}  // namespace

template <typename T>
void dropout_forward_reference(T* y, std::uint8_t* mask, const T* x, std::int64_t n, double p,
                               std::uint64_t seed) {
  const DropoutParams q = params(p, seed);
  const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  for (std::int64_t i = 0; i < n; ++i) {
    const bool keep = p < 1.0 && dropout_uniform(q.key, i) >= q.threshold;
    mask[i] = keep;
    y[i] = keep ? x[i] * scale : T(0);
  }
}

template <typename T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, std::int64_t n, double p,
                     std::uint64_t seed, Isa isa) {
  if (p >= 1.0) {
    std::memset(mask, 0, std::size_t(n));
    std::fill(y, y + n, T(0));
    return;
  }
  const DropoutParams q = params(p, seed);
  const T scale = T(1.0 / (1.0 - p));
  const auto fn = dropout_table<T>(isa).forward;
  parallel_chunks(n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    fn(y, mask, x, lo, hi, q.key, q.threshold, scale);
  });
}

template <typename T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, std::int64_t n, double p) {
  const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  parallel_chunks(n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) dx[i] = mask[i] ? dy[i] * scale : T(0);
  });
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void dropout_forward<T>(T*, std::uint8_t*, const T*, std::int64_t, double,           \
                                   std::uint64_t, Isa);                                         \
  template void dropout_backward<T>(T*, const T*, const std::uint8_t*, std::int64_t, double);   \
  template void dropout_forward_reference<T>(T*, std::uint8_t*, const T*, std::int64_t, double, \
                                             std::uint64_t);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
