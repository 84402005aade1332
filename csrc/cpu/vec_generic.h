// vec_generic.h: the one-lane "vector" the generic ISA runs the SIMD templates with (vec_math.h,
// activation_simd.h, softmax_simd.h), so every ISA executes the same algorithm and the generic
// build needs nothing beyond baseline x86-64.
//
// Traits contract (shared with vec_avx2.h and vec_avx512.h):
//   T, reg, mask, W (lanes); zero, set1, load, store, loadn / storen (first n lanes; loadn fills
//   the rest with 0), add, sub, mul, div, sqrt, fmadd(a, b, c) = a*b + c, fnmadd(a, b, c) = c - a*b,
//   max(a, b) / min(a, b) with x86 semantics (b is returned when either is NaN), abs, sign(x)
//   (the sign bit only), bor (bitwise or), lt / le / gt / ge -> mask (false for NaN),
//   select(m, a, b) = m ? a : b, round (to nearest even), floor, pow2i(n) = 2^n for integral n
//   in the normal exponent range, hsum, hmax (horizontal), lanes(n).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <cstring>

namespace fastdl {
namespace {

template <typename Tp>
struct VecScalar {
  using T = Tp;
  using reg = T;
  using mask = bool;
  using bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static constexpr int W = 1;
  static reg zero() { return T(0); }
  static reg set1(T x) { return x; }
  static reg load(const T* p) { return *p; }
  static void store(T* p, reg v) { *p = v; }
  static reg loadn(const T* p, int n) { return n > 0 ? *p : T(0); }
  static void storen(T* p, reg v, int n) { if (n > 0) *p = v; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg div(reg a, reg b) { return a / b; }
  static reg sqrt(reg a) { return std::sqrt(a); }
  static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static reg fnmadd(reg a, reg b, reg c) { return c - a * b; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  static bits to_bits(reg a) { bits u; std::memcpy(&u, &a, sizeof u); return u; }
  static reg from_bits(bits u) { reg a; std::memcpy(&a, &u, sizeof a); return a; }
  static constexpr bits kSign = bits(1) << (8 * sizeof(T) - 1);
  static reg abs(reg a) { return from_bits(to_bits(a) & ~kSign); }
  static reg sign(reg a) { return from_bits(to_bits(a) & kSign); }
  static reg bor(reg a, reg b) { return from_bits(to_bits(a) | to_bits(b)); }
  static mask lt(reg a, reg b) { return a < b; }
  static mask le(reg a, reg b) { return a <= b; }
  static mask gt(reg a, reg b) { return a > b; }
  static mask ge(reg a, reg b) { return a >= b; }
  static reg select(mask m, reg a, reg b) { return m ? a : b; }
  static reg round(reg a) { return std::nearbyint(a); }
  static reg floor(reg a) { return std::floor(a); }
  static reg pow2i(reg n) {
    constexpr int mant = sizeof(T) == 4 ? 23 : 52, bias = sizeof(T) == 4 ? 127 : 1023;
    return from_bits(bits(std::int64_t(n) + bias) << mant);
  }
  static T hsum(reg a) { return a; }
  static T hmax(reg a) { return a; }
  static mask lanes(int n) { return n > 0; }
};

}  // namespace
}  // namespace fastdl
