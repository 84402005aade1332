// activation.cpp: relu, sigmoid and tanh, forward and backward (from the output); gelu, forward
// and backward (from the input).
//
// Shapes: any; the kernels see n contiguous elements.
//   relu     y = max(0, x)                        dx = dy * (y > 0)
//   sigmoid  y = 1 / (1 + exp(-x))                dx = dy * y * (1 - y)
//   tanh     y = tanh(x)                          dx = dy * (1 - y^2)
//   gelu     y = x Phi(x) = x erfc(-x / sqrt 2) / 2                 (approximate 0, exact)
//            y = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2     (approximate 1, tanh form)
//            dx = dy gelu'(x), from the INPUT x (the output does not determine x)
// The backward passes of relu/sigmoid/tanh take the forward OUTPUT y, which is what an
// autograd layer keeps. gelu gives the limits at +-inf (inf / -0 forward; dy / 0 backward;
// PyTorch's float32 kernel gives NaN there) and computes Phi from erfc, so the lower tail keeps
// its relative accuracy (gelu(-10) = -7.6e-23, not the rounding noise of 1 + erf).
// NaN in gives NaN out (relu included, as in PyTorch); sigmoid never overflows (x = -100 gives
// the subnormal 3.7e-44 in float32, x = +-inf gives 1 / 0); tanh(+-inf) = +-1.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops over std::exp / std::tanh; the oracle for tests.
//   2. the SIMD templates of activation_simd.h over a one-lane vector (the generic ISA),
//   3. ... over AVX2 (activation_avx2.cpp) and AVX-512 (activation_avx512.cpp) vectors; the
//      exp/tanh/erf approximations (vec_math.h) are accurate to a few ulps over the whole range;
//      float64 gelu calls std::erfc per element (no vector erf here reaches 1e-15).
// OpenMP splits large arrays into one chunk per thread (parallel_chunks.h); below kGrain*
// elements per thread the team's wake-up costs more than the second core gives.
#include "cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "cpu/activation_simd.h"
#include "cpu/parallel_chunks.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
void activation_forward_reference(Activation act, T* y, const T* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    switch (act) {
      case Activation::relu: y[i] = std::isnan(v) ? v : std::max(T(0), v); break;
      case Activation::sigmoid:
        y[i] = v >= T(0) ? T(1) / (T(1) + std::exp(-v)) : std::exp(v) / (T(1) + std::exp(v));
        if (std::isnan(v)) y[i] = v;
        break;
      case Activation::tanh: y[i] = std::tanh(v); break;
    }
  }
}

template <typename T>
void activation_backward_reference(Activation act, T* dx, const T* dy, const T* y,
                                   std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    switch (act) {
      case Activation::relu: dx[i] = y[i] > T(0) ? dy[i] : T(0); break;
      case Activation::sigmoid: dx[i] = dy[i] * y[i] * (T(1) - y[i]); break;
      case Activation::tanh: dx[i] = dy[i] * (T(1) - y[i] * y[i]); break;
    }
  }
}

template <typename T>
void gelu_forward_reference(T* y, const T* x, std::int64_t n, int approximate) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]);
    double phi;
    if (approximate) {
      const double u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
      phi = 0.5 * (1 + std::tanh(u));
    } else {
      phi = 0.5 * std::erfc(-v * 0.7071067811865476);
    }
    y[i] = std::isinf(v) ? (v > 0 ? T(v) : T(-0.0)) : T(v * phi);
  }
}

template <typename T>
void gelu_backward_reference(T* dx, const T* dy, const T* x, std::int64_t n, int approximate) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]);
    double d;
    if (std::isinf(v)) {
      d = v > 0 ? 1.0 : 0.0;
    } else if (approximate) {
      const double th = std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v));
      d = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
    } else {
      d = 0.5 * std::erfc(-v * 0.7071067811865476) + v * 0.3989422804014327 * std::exp(-0.5 * v * v);
    }
    dx[i] = T(double(dy[i]) * d);
  }
}

// ---------------------------------------------------------------------------------------------
// Fast kernels: the generic table here, the SIMD tables in activation_avx2/avx512.cpp
// ---------------------------------------------------------------------------------------------

namespace {
const ActivationTable<float> activation_table_generic_f32 = make_activation_table<VecScalar<float>>();
const ActivationTable<double> activation_table_generic_f64 = make_activation_table<VecScalar<double>>();

// Elements per thread below which a second thread does not pay (measured on 2 Zen 5 cores,
// benchmarks/RESULTS.md): waking the team costs ~1-2 us, which a pure stream (relu, every
// backward: ~0.04 ns/element) earns back only past ~64K elements, and an exp-based forward
// (~0.25 ns/element) past ~8K.
constexpr std::int64_t kGrainStream = 1 << 16;
constexpr std::int64_t kGrainExp = 1 << 13;

}  // namespace

template <>
const ActivationTable<float>& activation_table<float>(Isa isa) {
  return pick_isa(isa, activation_table_generic_f32, activation_table_avx2_f32, activation_table_avx512_f32);
}
template <>
const ActivationTable<double>& activation_table<double>(Isa isa) {
  return pick_isa(isa, activation_table_generic_f64, activation_table_avx2_f64, activation_table_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

template <typename T>
void activation_forward(Activation act, T* y, const T* x, std::int64_t n, Isa isa) {
  const auto fn = activation_table<T>(isa).forward[int(act)];
  parallel_chunks(n, act == Activation::relu ? kGrainStream : kGrainExp, [&](std::int64_t lo, std::int64_t hi) { fn(y + lo, x + lo, hi - lo); });
}

template <typename T>
void activation_backward(Activation act, T* dx, const T* dy, const T* y, std::int64_t n, Isa isa) {
  const auto fn = activation_table<T>(isa).backward[int(act)];
  parallel_chunks(n, kGrainStream,
                  [&](std::int64_t lo, std::int64_t hi) { fn(dx + lo, dy + lo, y + lo, hi - lo); });
}

template <typename T>
void gelu_forward(T* y, const T* x, std::int64_t n, int approximate, Isa isa) {
  const auto fn = activation_table<T>(isa).gelu_forward[approximate ? 1 : 0];
  parallel_chunks(n, kGrainExp, [&](std::int64_t lo, std::int64_t hi) { fn(y + lo, x + lo, hi - lo); });
}

template <typename T>
void gelu_backward(T* dx, const T* dy, const T* x, std::int64_t n, int approximate, Isa isa) {
  const auto fn = activation_table<T>(isa).gelu_backward[approximate ? 1 : 0];
  parallel_chunks(n, kGrainExp,
                  [&](std::int64_t lo, std::int64_t hi) { fn(dx + lo, dy + lo, x + lo, hi - lo); });
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void gelu_forward<T>(T*, const T*, std::int64_t, int, Isa);                          \
  template void gelu_backward<T>(T*, const T*, const T*, std::int64_t, int, Isa);               \
  template void gelu_forward_reference<T>(T*, const T*, std::int64_t, int);                     \
  template void gelu_backward_reference<T>(T*, const T*, const T*, std::int64_t, int);          \
  template void activation_forward<T>(Activation, T*, const T*, std::int64_t, Isa);             \
  template void activation_backward<T>(Activation, T*, const T*, const T*, std::int64_t, Isa);  \
  template void activation_forward_reference<T>(Activation, T*, const T*, std::int64_t);        \
  template void activation_backward_reference<T>(Activation, T*, const T*, const T*, std::int64_t);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
