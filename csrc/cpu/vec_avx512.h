// vec_avx512.h: AVX-512 (F/DQ) traits for the SIMD templates; include only from *_avx512.cpp.
// The contract is documented in vec_generic.h.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

namespace fastdl {
namespace {

struct VecF32x16 {
  using T = float;
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(T x) { return _mm512_set1_ps(x); }
  static reg load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, reg v) { _mm512_storeu_ps(p, v); }
  static mask lanes(int n) { return mask((1u << n) - 1u); }
  static reg loadn(const T* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
  static void storen(T* p, reg v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg sqrt(reg a) { return _mm512_maskz_sqrt_ps(mask(0xFFFF), a); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }
  // maskz_ with all lanes: the plain forms' "undefined" passthrough trips -Wmaybe-uninitialized.
  static reg max(reg a, reg b) { return _mm512_maskz_max_ps(mask(0xFFFF), a, b); }
  static reg min(reg a, reg b) { return _mm512_maskz_min_ps(mask(0xFFFF), a, b); }
  static reg abs(reg a) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7FFFFFFF)));
  }
  static reg sign(reg a) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(std::int32_t(0x80000000u))));
  }
  static reg bor(reg a, reg b) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  static mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static mask le(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static mask gt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static mask ge(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static reg select(mask m, reg a, reg b) { return _mm512_mask_blend_ps(m, b, a); }
  static reg round(reg a) {
    return _mm512_maskz_roundscale_ps(mask(0xFFFF), a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static reg floor(reg a) { return _mm512_maskz_roundscale_ps(mask(0xFFFF), a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static reg pow2i(reg n) {
    const __m512i e = _mm512_add_epi32(_mm512_maskz_cvtps_epi32(mask(0xFFFF), n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(mask(0xFFFF), e, 23));
  }
  // Butterflies within the register (maskz_ forms everywhere): GCC 12's _mm512_reduce_*_ps and
  // even _mm512_castps512_ps256 trip -Wuninitialized through an undefined passthrough.
  template <class Op>
  static T reduce(reg a, Op op) {
    const mask all = mask(0xFFFF);
    a = op(a, _mm512_maskz_shuffle_f32x4(all, a, a, 0x4E));  // swap 256-bit halves
    a = op(a, _mm512_maskz_shuffle_f32x4(all, a, a, 0xB1));  // swap 128-bit lanes
    a = op(a, _mm512_maskz_permute_ps(all, a, 0x4E));        // swap 64-bit pairs
    a = op(a, _mm512_maskz_permute_ps(all, a, 0xB1));        // swap neighbours
    return _mm512_cvtss_f32(a);
  }
  static T hsum(reg a) { return reduce(a, [](reg u, reg v) { return add(u, v); }); }
  static T hmax(reg a) { return reduce(a, [](reg u, reg v) { return max(u, v); }); }
};

struct VecF64x8 {
  using T = double;
  using reg = __m512d;
  using mask = __mmask8;
  static constexpr int W = 8;
  static reg zero() { return _mm512_setzero_pd(); }
  static reg set1(T x) { return _mm512_set1_pd(x); }
  static reg load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, reg v) { _mm512_storeu_pd(p, v); }
  static mask lanes(int n) { return mask((1u << n) - 1u); }
  static reg loadn(const T* p, int n) { return _mm512_maskz_loadu_pd(lanes(n), p); }
  static void storen(T* p, reg v, int n) { _mm512_mask_storeu_pd(p, lanes(n), v); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_pd(a, b); }
  static reg sqrt(reg a) { return _mm512_maskz_sqrt_pd(mask(0xFF), a); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_pd(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_maskz_max_pd(mask(0xFF), a, b); }
  static reg min(reg a, reg b) { return _mm512_maskz_min_pd(mask(0xFF), a, b); }
  static reg abs(reg a) {
    return _mm512_castsi512_pd(
        _mm512_and_si512(_mm512_castpd_si512(a), _mm512_set1_epi64(0x7FFFFFFFFFFFFFFFll)));
  }
  static reg sign(reg a) {
    return _mm512_castsi512_pd(_mm512_and_si512(
        _mm512_castpd_si512(a), _mm512_set1_epi64(std::int64_t(0x8000000000000000ull))));
  }
  static reg bor(reg a, reg b) {
    return _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(a), _mm512_castpd_si512(b)));
  }
  static mask lt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static mask le(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
  static mask gt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static mask ge(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
  static reg select(mask m, reg a, reg b) { return _mm512_mask_blend_pd(m, b, a); }
  static reg round(reg a) {
    return _mm512_maskz_roundscale_pd(mask(0xFF), a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static reg floor(reg a) { return _mm512_maskz_roundscale_pd(mask(0xFF), a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static reg pow2i(reg n) {
    const __m512i e = _mm512_add_epi64(_mm512_maskz_cvtpd_epi64(mask(0xFF), n), _mm512_set1_epi64(1023));
    return _mm512_castsi512_pd(_mm512_maskz_slli_epi64(mask(0xFF), e, 52));
  }
  template <class Op>
  static T reduce(reg a, Op op) {  // as VecF32x16::reduce
    const mask all = mask(0xFF);
    a = op(a, _mm512_maskz_shuffle_f64x2(all, a, a, 0x4E));
    a = op(a, _mm512_maskz_shuffle_f64x2(all, a, a, 0xB1));
    a = op(a, _mm512_maskz_permute_pd(all, a, 0x55));
    return _mm512_cvtsd_f64(a);
  }
  static T hsum(reg a) { return reduce(a, [](reg u, reg v) { return add(u, v); }); }
  static T hmax(reg a) { return reduce(a, [](reg u, reg v) { return max(u, v); }); }
};

template <typename T>
using VecAvx512 = std::conditional_t<sizeof(T) == 4, VecF32x16, VecF64x8>;

}  // namespace
}  // namespace fastdl
