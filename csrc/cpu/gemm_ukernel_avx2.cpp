// gemm_ukernel_avx2.cpp: AVX2+FMA GEMM micro-kernels (fp32 6x16, fp64 6x8) and packing.
// Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include <immintrin.h>

#include "cpu/gemm_ukernel_simd.h"

namespace fastdl {
namespace {

struct F32x8 {
  using T = float;
  using reg = __m256;
  using mask = __m256i;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(T x) { return _mm256_set1_ps(x); }
  static reg load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static mask lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg maskload(mask m, const T* p) { return _mm256_maskload_ps(p, m); }
  static void maskstore(T* p, mask m, reg v) { _mm256_maskstore_ps(p, m, v); }
};

struct F64x4 {
  using T = double;
  using reg = __m256d;
  using mask = __m256i;
  static constexpr int W = 4;
  static reg zero() { return _mm256_setzero_pd(); }
  static reg set1(T x) { return _mm256_set1_pd(x); }
  static reg load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, reg v) { _mm256_storeu_pd(p, v); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_pd(a, b); }
  static mask lanes(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static reg maskload(mask m, const T* p) { return _mm256_maskload_pd(p, m); }
  static void maskstore(T* p, mask m, reg v) { _mm256_maskstore_pd(p, m, v); }
};

}  // namespace

const GemmTable<float> gemm_table_avx2_f32 = make_simd_table<F32x8, gemm_config::Avx2F32>();
const GemmTable<double> gemm_table_avx2_f64 = make_simd_table<F64x4, gemm_config::Avx2F64>();

}  // namespace fastdl
