// optim_avx2.cpp: AVX2+FMA bodies of the fused optimizer steps and gradient-norm kernels
// (8 floats / 4 doubles a vector). Compiled with -mavx2 -mfma; entered only when cpu_isa()
// reports avx2 or better. The equations are in optim.cpp, the loops in optim_simd.h.
#include <immintrin.h>

#include "cpu/optim_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
namespace {

inline double hsum_pd(__m256d s) {  // ((s0 + s2) + (s1 + s3)): a fixed order
  const __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

struct F32x8 : VecF32x8 {
  struct acc {  // the 8 lanes squared and summed as two halves of 4 doubles
    __m256d lo, hi;
  };
  static acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static acc acc_sq(acc s, reg x) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    return {_mm256_fmadd_pd(lo, lo, s.lo), _mm256_fmadd_pd(hi, hi, s.hi)};
  }
  static double acc_sum(acc s) { return hsum_pd(_mm256_add_pd(s.lo, s.hi)); }
};

struct F64x4 : VecF64x4 {
  using acc = __m256d;
  static acc acc_zero() { return _mm256_setzero_pd(); }
  static acc acc_sq(acc s, reg x) { return _mm256_fmadd_pd(x, x, s); }
  static double acc_sum(acc s) { return hsum_pd(s); }
};

}  // namespace

const OptimTable<float> optim_table_avx2_f32 = make_optim_table<F32x8>();
const OptimTable<double> optim_table_avx2_f64 = make_optim_table<F64x4>();

}  // namespace fastdl
