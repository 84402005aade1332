// optim_avx512.cpp: AVX-512 bodies of the fused optimizer steps and gradient-norm kernels
// (16 floats / 8 doubles a vector). Compiled with -mavx512f/bw/dq/vl; entered only when
// cpu_isa() reports avx512. The equations are in optim.cpp, the loops in optim_simd.h.
#include <immintrin.h>

#include "cpu/optim_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
namespace {

// The vector operations come from the shared traits (vec_avx512.h); this file adds the float64
// accumulators of the gradient norms. maskz_ forms with all lanes set avoid the plain
// intrinsics' "undefined" passthrough, which trips GCC 12's -W(maybe-)uninitialized.
inline __m256d low_half(__m512d x) { return _mm512_maskz_extractf64x4_pd(__mmask8(0xF), x, 0); }
inline __m256d high_half(__m512d x) { return _mm512_maskz_extractf64x4_pd(__mmask8(0xF), x, 1); }
inline double hsum_pd(__m512d s) {  // (lo + hi) halves, then ((s0 + s2) + (s1 + s3)): a fixed order
  const __m256d q = _mm256_add_pd(low_half(s), high_half(s));
  const __m128d t = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

struct F32x16 : VecF32x16 {
  struct acc {  // the 16 lanes squared and summed as two halves of 8 doubles
    __m512d lo, hi;
  };
  static acc acc_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static acc acc_sq(acc s, reg x) {
    const __m512d xd = _mm512_castps_pd(x);
    const __m512d lo = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_castpd_ps(low_half(xd)));
    const __m512d hi = _mm512_maskz_cvtps_pd(__mmask8(0xFF), _mm256_castpd_ps(high_half(xd)));
    return {_mm512_fmadd_pd(lo, lo, s.lo), _mm512_fmadd_pd(hi, hi, s.hi)};
  }
  static double acc_sum(acc s) { return hsum_pd(_mm512_add_pd(s.lo, s.hi)); }
};

struct F64x8 : VecF64x8 {
  using acc = __m512d;
  static acc acc_zero() { return _mm512_setzero_pd(); }
  static acc acc_sq(acc s, reg x) { return _mm512_fmadd_pd(x, x, s); }
  static double acc_sum(acc s) { return hsum_pd(s); }
};

}  // namespace

const OptimTable<float> optim_table_avx512_f32 = make_optim_table<F32x16>();
const OptimTable<double> optim_table_avx512_f64 = make_optim_table<F64x8>();

}  // namespace fastdl
